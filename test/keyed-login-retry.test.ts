// nginx retries a login sent with an Idempotency-Key on the next replica when the one holding it
// dies, as it does a keyed increment (nginx/locations.conf): the client gets its one new session
// with the count carried over once. A login without a key is never resent once it was sent.
// Real nginx, three real replicas and a real Redis (the local-process cluster).
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { Visitor, type Reply } from "../loadtest/client/visitor.ts";
import { keys } from "../services/app/src/session.ts";
import { upstreamsOf } from "./nginx-access-log.ts";
import { sessionIdOf } from "./session-cookie.ts";

const FAULT_PREFIX = "sigkill-";

let cluster: LocalCluster;
beforeAll(async () => {
  cluster = LocalCluster.create({
    dir: mkdtempSync(join(tmpdir(), "keyed-login-retry-")),
    replicas: 3,
    port: 0,
    clientLimits: false,
    // The fault hook fires only for keys that start with FAULT_PREFIX.
    appEnv: { NODE_ENV: "test", FAULT_SIGKILL_AFTER_INCREMENT: FAULT_PREFIX },
  });
  await cluster.start(); // stops what it started if it fails
});
afterAll(async () => {
  await cluster?.stop();
});

/** A visitor (through nginx, or straight to the replica at `url`) whose stored session holds a count of 3. */
async function visitorWithCount(url = cluster.baseUrl()): Promise<Visitor> {
  const v = new Visitor(url);
  expect((await v.startSession()).status).toBe(201);
  expect((await v.post("/api/counter", { body: JSON.stringify({ by: 3 }) })).json?.count).toBe(3);
  return new Visitor(cluster.baseUrl(), v.cookie);
}

const login = (v: Visitor, key?: string) =>
  v.post("/api/login", {
    body: JSON.stringify({ name: "ada" }),
    headers: key === undefined ? {} : { "Idempotency-Key": key },
  });

/** Whether a request waits, unread, on a connection to `port` (Linux's /proc/net/tcp rx_queue). */
function requestQueuedOn(port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .some((f) => f[1] === local && f[3] === "01" && parseInt(f[4]!.split(":")[1]!, 16) > 0);
}

/**
 * Sends a login (from a fresh visitor holding a count of 3) while replica 1 is frozen, until nginx
 * hands one to it; then SIGKILLs it, so nginx sees the connection cut with the login sent and
 * unanswered. Returns what the client got, and the visitor.
 */
async function loginHeldByKilledReplica(key: () => string | undefined): Promise<[Reply, Visitor]> {
  const [frozen, other] = await cluster.replicas();
  const port = Number(new URL(frozen!.url).port);
  for (let attempt = 0; attempt < 20; attempt++) {
    // Made on another replica directly: through nginx, these requests would move round-robin on
    // in step with the attempts, and the login could land on the same replica every time.
    const v = await visitorWithCount(other!.url);
    cluster.signalReplica(frozen!.index, "SIGSTOP");
    let settled: Reply | Error | undefined;
    const sent = login(v, key()).then(
      (r) => (settled = r),
      (err: Error) => (settled = err),
    );
    // Until it is answered (another replica had it) or waits unread on replica 1; bounded at 30 s.
    for (let i = 0; i < 1200 && settled === undefined && !requestQueuedOn(port); i++) await sleep(25);
    if (settled === undefined && !requestQueuedOn(port)) {
      cluster.signalReplica(frozen!.index, "SIGCONT");
      throw new Error("the login was neither answered nor queued on replica 1 within 30 s");
    }
    if (settled !== undefined) {
      // Another replica answered it: thaw and send the next one. Round-robin reaches replica 1
      // within three logins, once nginx has stopped skipping a replica that just failed (fail_timeout 2 s).
      cluster.signalReplica(frozen!.index, "SIGCONT");
      await sleep(300);
      continue;
    }
    try {
      await cluster.killReplica(frozen!.index, "SIGKILL");
      const r = await sent;
      if (r instanceof Error) throw r;
      return [r, v];
    } finally {
      await cluster.startReplica(frozen!.index);
    }
  }
  throw new Error("nginx never sent a login to the frozen replica");
}

describe("a keyed login whose replica dies while holding it", () => {
  it("is retried on the next replica after its rotation applied: a replay of its one new session", async () => {
    const v = await visitorWithCount();
    const oldId = sessionIdOf(v.cookie);
    const running = (await cluster.replicas()).filter((r) => r.running).length;
    const r = await login(v, `${FAULT_PREFIX}${randomUUID()}`);
    try {
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.json).toMatchObject({ user: { name: "ada" }, count: 3 });
      // The replica that rotated the session died before answering; the next one replayed its login.
      expect((await cluster.replicas()).filter((x) => x.running)).toHaveLength(running - 1);
      expect(r.headers.get("idempotent-replayed")).toBe("true");
      expect(await upstreamsOf(cluster, r.requestId)).toHaveLength(2);
      // One new session: the one the first attempt made (the id it marked the old one replaced by).
      expect(sessionIdOf(v.cookie)).toBe(await cluster.redisCommand("GET", keys.replaced(oldId)));
      expect(await cluster.redisCommand("EXISTS", keys.session(oldId))).toBe("0");
      expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "ada" }, count: 3 });
      expect((await v.increment()).json?.count).toBe(4);
    } finally {
      for (const x of await cluster.replicas()) if (!x.running) await cluster.startReplica(x.index);
    }
  });

  it("is retried on the next replica when it died before applying it: logged in, the count carried once", async () => {
    const [r, v] = await loginHeldByKilledReplica(() => randomUUID());
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toMatchObject({ user: { name: "ada" }, count: 3 });
    expect(await upstreamsOf(cluster, r.requestId)).toHaveLength(2);
    expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "ada" }, count: 3 });
    expect((await v.increment()).json?.count).toBe(4);
  });
});

describe("a login without a key whose replica dies while holding it", () => {
  it("is not resent to another replica: a 502, and the session is as it was", async () => {
    const [r, v] = await loginHeldByKilledReplica(() => undefined);
    expect(r.status).toBe(502);
    expect(r.json?.error).toBe("no_replica");
    expect(await upstreamsOf(cluster, r.requestId)).toHaveLength(1);
    // No replica logged it in: the old session is there, not logged in, with its count.
    expect((await v.get("/api/me")).status).toBe(401);
    expect((await v.get("/api/session")).json?.count).toBe(3);
  });
});
