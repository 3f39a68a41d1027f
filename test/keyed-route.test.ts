// nginx's Idempotency-Key route (nginx/locations.conf, /_keyed/) against the unkeyed one: a keyed
// POST is resent to the next replica after a frozen replica's read timeout, an unkeyed GET /counter
// is not; and a keyed request reaches the app with the URI the client sent, as an unkeyed one does.
// Real nginx, three real replicas and a real Redis (the local-process cluster); faults by SIGSTOP only.
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster, type LocalReplicaInfo } from "../infra/cluster/local-cluster.ts";
import { Visitor, type Reply } from "../loadtest/client/visitor.ts";
import { attemptsOf } from "./nginx-access-log.ts";
import { parsePrometheus, sum } from "./prometheus-text.ts";

let cluster: LocalCluster;
beforeAll(async () => {
  cluster = LocalCluster.create({
    dir: mkdtempSync(join(tmpdir(), "keyed-route-")),
    replicas: 3,
    port: 0,
    clientLimits: false,
    appEnv: { NODE_ENV: "test" },
  });
  await cluster.start(); // stops what it started if it fails
});
afterAll(async () => {
  await cluster?.stop();
});

/** One sample summed from a replica's /metrics (its operator listener). */
async function metricOf(replica: LocalReplicaInfo, name: string): Promise<number> {
  const res = await fetch(`${replica.opsUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  return sum(parsePrometheus(await res.text()), name);
}

/** Polls `fn` every 100 ms until it is true; false after `ms`. */
async function eventually(fn: () => Promise<boolean>, ms = 15_000): Promise<boolean> {
  for (const until = Date.now() + ms; Date.now() < until; await sleep(100)) if (await fn()) return true;
  return false;
}

/**
 * Freezes the first replica and sends `send()` one at a time until nginx hands one to it (its
 * access log line names that replica first), then thaws it. Round-robin reaches it within three
 * requests once nginx stops skipping it after an earlier failure (fail_timeout 2 s): at most 40
 * requests, 100 ms apart. Returns the replies that went elsewhere, the one it held, and the replica.
 */
async function sendUntilFrozenHoldsOne(
  send: () => Promise<Reply>,
): Promise<{ others: Reply[]; held: Reply; frozen: LocalReplicaInfo; frozenAddr: string }> {
  const [frozen] = await cluster.replicas();
  const frozenAddr = new URL(frozen!.url).host;
  const others: Reply[] = [];
  cluster.signalReplica(frozen!.index, "SIGSTOP");
  try {
    for (let i = 0; i < 40; i++) {
      const r = await send();
      if ((await attemptsOf(cluster, r.requestId)).addrs[0] === frozenAddr)
        return { others, held: r, frozen: frozen!, frozenAddr };
      others.push(r);
      await sleep(100);
    }
  } finally {
    cluster.signalReplica(frozen!.index, "SIGCONT");
  }
  throw new Error("nginx never sent a request to the frozen replica");
}

describe("a replica that freezes (SIGSTOP) holding a request", () => {
  it("resends a keyed POST /api/counter to the next replica after a read timeout; the late apply replays", async () => {
    const v = new Visitor(cluster.baseUrl());
    expect((await v.startSession()).status).toBe(201);
    const [first] = await cluster.replicas();
    const replaysBefore = await metricOf(first!, "counter_idempotent_replays_total");

    const { others, held, frozen, frozenAddr } = await sendUntilFrozenHoldsOne(() =>
      v.increment(randomUUID(), { timeoutMs: 30_000 }),
    );
    expect(others.map((r) => r.status)).toEqual(others.map(() => 200));
    expect(held.status, JSON.stringify(held.json)).toBe(200);
    expect(held.json?.count).toBe(others.length + 1);
    const attempts = await attemptsOf(cluster, held.requestId);
    expect(attempts.statuses).toEqual(["504", "200"]);
    expect(attempts.addrs[1]).not.toBe(frozenAddr);

    // Thawed, the replica runs the request nginx gave up on: the key is already applied, a replay.
    expect(
      await eventually(async () => (await metricOf(frozen, "counter_idempotent_replays_total")) > replaysBefore),
      "the thawed replica answered the request it held as a replay",
    ).toBe(true);
    expect((await v.get("/api/session")).json?.count).toBe(others.length + 1);
  });

  it('takes "Idempotency-Key: 0" as a key too (nginx\'s if() reads a bare "0" as false)', async () => {
    const v = new Visitor(cluster.baseUrl());
    expect((await v.startSession()).status).toBe(201);
    // The first applies the key, every later one replays it: the same count, whoever answers.
    const { others, held } = await sendUntilFrozenHoldsOne(() => v.increment("0", { timeoutMs: 30_000 }));
    expect([...others, held].map((r) => [r.status, r.json?.count])).toEqual([...others, held].map(() => [200, 1]));
    expect((await attemptsOf(cluster, held.requestId)).statuses).toEqual(["504", "200"]);
  });

  it("does not resend an unkeyed GET /counter after a read timeout: 504, counted once when it wakes", async () => {
    const v = new Visitor(cluster.baseUrl());
    expect((await v.get("/counter")).text).toBe("count is 1");
    const [first] = await cluster.replicas();
    const incrementsBefore = await metricOf(first!, "counter_increments_total");

    const { others, held, frozen, frozenAddr } = await sendUntilFrozenHoldsOne(() =>
      v.get("/counter", { timeoutMs: 30_000 }),
    );
    expect(others.map((r) => r.status)).toEqual(others.map(() => 200));
    expect(held.status).toBe(504);
    expect(held.json?.error).toBe("replica_timeout");
    expect(await attemptsOf(cluster, held.requestId)).toEqual({ addrs: [frozenAddr], statuses: ["504"] });

    // Thawed, the replica counts the GET it held, the one time it is counted.
    expect(
      await eventually(async () => (await metricOf(frozen, "counter_increments_total")) > incrementsBefore),
      "the thawed replica applied the GET it held",
    ).toBe(true);
    expect((await v.get("/api/session")).json?.count).toBe(1 + others.length + 1);
  });
});

describe("a keyed request's path", () => {
  it("reaches the app as the client spelled it, as an unkeyed one does: the same 404 for each", async () => {
    const v = new Visitor(cluster.baseUrl());
    expect((await v.startSession()).status).toBe(201);
    const spellings = ["/api//counter", "/api/%63ounter", "/api/./counter", "/api/x/../counter", "/api//login"];
    for (const path of spellings) {
      const body = path.endsWith("login") ? JSON.stringify({ name: "ada" }) : undefined;
      const plain = await v.post(path, { body });
      const keyed = await v.post(path, { body, headers: { "Idempotency-Key": randomUUID() } });
      expect({ path, plain: [plain.status, plain.json?.error], keyed: [keyed.status, keyed.json?.error] }).toEqual({
        path,
        plain: [404, "not_found"],
        keyed: [404, "not_found"],
      });
    }
    // None of them counted or logged in.
    expect((await v.get("/api/session")).json?.count).toBe(0);
    expect((await v.get("/api/me")).status).toBe(401);

    // The route's own spelling, with a query string, still counts through the keyed route, once.
    const key = randomUUID();
    const withQuery = await v.post("/api/counter?from=test", { headers: { "Idempotency-Key": key } });
    expect([withQuery.status, withQuery.json?.count]).toEqual([200, 1]);
    const again = await v.increment(key);
    expect([again.status, again.json?.count, again.headers.get("idempotent-replayed")]).toEqual([200, 1, "true"]);
  });
});

describe("the retry budgets in nginx/proxy.conf and the /_keyed/ location", () => {
  const read = (f: string) => readFileSync(join(import.meta.dirname, "..", "nginx", f), "utf8");
  const seconds = (conf: string, directive: string) => {
    const m = new RegExp(`^\\s*${directive} (\\d+)s;`, "m").exec(conf);
    if (!m) throw new Error(`${directive} not found`);
    return Number(m[1]);
  };
  const proxy = read("proxy.conf");
  const keyed = /location \/_keyed\/ \{[^}]*\}/.exec(read("locations.conf"))![0];
  const connect = seconds(proxy, "proxy_connect_timeout");
  const readTimeout = seconds(proxy, "proxy_read_timeout");
  const sendTimeout = seconds(proxy, "proxy_send_timeout");

  it("ends an unkeyed request's budget before a send or read timeout, after two connect timeouts", () => {
    const budget = seconds(proxy, "proxy_next_upstream_timeout");
    expect(budget).toBeLessThanOrEqual(Math.min(readTimeout, sendTimeout));
    expect(budget).toBeGreaterThan(2 * connect);
  });

  it("leaves a keyed request room for one resend after a read timeout (after a connect timeout too), not two", () => {
    expect(keyed).toMatch(/proxy_next_upstream error timeout non_idempotent;/);
    const budget = seconds(keyed, "proxy_next_upstream_timeout");
    expect(budget).toBeGreaterThan(connect + readTimeout);
    expect(budget).toBeLessThanOrEqual(2 * readTimeout);
  });
});
