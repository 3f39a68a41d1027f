// Security round 2 for sessions and the counter, each through nginx against real redis-server,
// nginx and Node replicas (LocalCluster): the per-session cap on Idempotency-Keys, exactly-once
// across a login, logins racing logouts and increments, the app's own new-session limit, and
// the tutorial's memory-store and redis-store routes.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { waitFor } from "../infra/cluster/wait.ts";
import { Visitor, type Reply, type RequestOptions } from "../loadtest/client/visitor.ts";
import { sessionLabel } from "../services/app/src/session.ts";
import { sessionIdOf } from "./session-cookie.ts";

const newDir = (name: string) => mkdtempSync(join(tmpdir(), `security-sessions-${name}-`));
const jsonBody = (value: unknown): RequestOptions => ({
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify(value),
});

/** What a browser does with a reply: every Set-Cookie in it replaces the jar's cookie. */
function takeCookies(v: Visitor, r: Reply): void {
  for (const c of r.headers.getSetCookie()) v.cookie = c.split(";")[0];
}

const redisKeys = async (cluster: LocalCluster, pattern: string) =>
  (await cluster.redisCommand("KEYS", pattern)).split("\n").filter(Boolean);

describe("sessions and keys, through nginx (local processes, 3 replicas, IDEMPOTENCY_MAX_KEYS=5)", () => {
  let cluster: LocalCluster;
  let base: string;
  beforeAll(async () => {
    cluster = LocalCluster.create({
      dir: newDir("main"),
      replicas: 3,
      // A long command timeout: the race tests hold Redis writes back with CLIENT PAUSE.
      appEnv: { IDEMPOTENCY_MAX_KEYS: "5", NEW_SESSION_LIMIT: "0", REDIS_COMMAND_TIMEOUT_MS: "10000" },
    });
    await cluster.start();
    base = cluster.baseUrl();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("caps a session's live Idempotency-Keys: a new key past it gets 429, no count; held keys replay", async () => {
    const v = new Visitor(base);
    const held = Array.from({ length: 5 }, () => randomUUID());
    for (const [i, key] of held.entries()) expect((await v.increment(key)).json?.count).toBe(i + 1);
    const id = sessionIdOf(v.cookie);

    for (let i = 0; i < 3; i++) {
      const refused = await v.increment(randomUUID());
      expect(refused.status).toBe(429);
      expect(refused.json?.error).toBe("too_many_idempotency_keys");
      expect(String(refused.json?.message).length).toBeGreaterThan(10);
      // Seconds until the oldest key expires: within IDEMPOTENCY_TTL_SECONDS (3600).
      const retryAfter = Number(refused.headers.get("retry-after"));
      expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 3600).toBe(true);
      expect(refused.headers.getSetCookie()).toEqual([]);
    }
    expect((await v.get("/api/session")).json?.count).toBe(5);

    const replay = await v.increment(held[2]);
    expect(replay.status).toBe(200);
    expect(replay.json?.count).toBe(3);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    // Requests without a key are not capped; other sessions are not affected.
    expect((await v.increment()).json?.count).toBe(6);
    expect((await new Visitor(base).increment(randomUUID())).status).toBe(200);

    // One hash per session, holding exactly the capped number of records.
    expect(Number(await cluster.redisCommand("HLEN", `{sess:${id}}:idem`))).toBe(5);
    expect(await redisKeys(cluster, `idem:${id}:*`)).toEqual([]);
  });

  it("still honours an Idempotency-Key stored in the layout before the per-session hash", async () => {
    const v = new Visitor(base);
    expect((await v.increment()).json?.count).toBe(1);
    const id = sessionIdOf(v.cookie);
    // As the previous release stored it: one hash per key, {fp, count}, the fingerprint of by=1.
    const fp = createHash("sha256").update("POST /api/counter by=1").digest("base64url").slice(0, 22);
    await cluster.redisCommand("HSET", `idem:${id}:old-key`, "fp", fp, "count", "1");
    await cluster.redisCommand("EXPIRE", `idem:${id}:old-key`, "3600");
    const replay = await v.increment("old-key");
    expect(replay.json?.count).toBe(1);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect((await v.get("/api/session")).json?.count).toBe(1);
  });

  it("keeps exactly-once across a login: a key used before it replays after it, on the new session id", async () => {
    const v = new Visitor(base);
    const key = randomUUID();
    expect((await v.increment(key)).json?.count).toBe(1);
    const oldId = sessionIdOf(v.cookie);
    expect((await v.post("/api/login", jsonBody({ name: "ada" }))).status).toBe(200);
    const newId = sessionIdOf(v.cookie);
    expect(newId).not.toBe(oldId);

    const retry = await v.increment(key);
    expect(retry.status).toBe(200);
    expect(retry.json?.count).toBe(1);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "ada" }, count: 1 });
    expect(Number(await cluster.redisCommand("EXISTS", `{sess:${oldId}}:idem`))).toBe(0);
    expect(Number(await cluster.redisCommand("HLEN", `{sess:${newId}}:idem`))).toBe(1);
  });

  /** Holds every Redis write (scripts included) until released; reads go on. */
  async function pauseWrites(): Promise<{ waitBlocked(n: number): Promise<void>; release(): Promise<void> }> {
    await cluster.redisCommand("CLIENT", "PAUSE", "8000", "WRITE");
    const blocked = async () =>
      Number(/blocked_clients:(\d+)/.exec(await cluster.redisCommand("INFO", "clients"))?.[1]);
    return {
      waitBlocked: (n) => waitFor(`${n} Redis clients held by the pause`, async () => (await blocked()) >= n, 5000, 20),
      release: async () => void (await cluster.redisCommand("CLIENT", "UNPAUSE")),
    };
  }

  it("refuses a login whose session a logout destroyed while it was logging in (409), and logs no one in", async () => {
    const v = new Visitor(base);
    expect((await v.increment()).json?.count).toBe(1);
    const cookie = v.cookie!;
    const name = `racer-${randomBytes(4).toString("hex")}`;

    // Both requests load the session (reads pass the pause); the logout's delete is held
    // first and the login's rotation second, so Redis runs them in that order.
    const pause = await pauseWrites();
    let logout: Promise<Reply>;
    let login: Promise<Reply>;
    try {
      logout = new Visitor(base, cookie).post("/api/logout");
      await pause.waitBlocked(1);
      login = new Visitor(base, cookie).post("/api/login", jsonBody({ name }));
      await pause.waitBlocked(2);
    } finally {
      await pause.release();
    }
    const [out, inn] = await Promise.all([logout!, login!]);
    expect(out.json).toMatchObject({ loggedOut: true });
    expect(inn.status).toBe(409);
    expect(inn.json?.error).toBe("session_expired");
    expect(inn.headers.getSetCookie()).toEqual([]);
    // No session in Redis holds the user that tried to log in.
    for (const key of await redisKeys(cluster, "sess:*"))
      expect(await cluster.redisCommand("GET", key)).not.toContain(name);
  });

  it("never answers a request with the pre-login cookie with a Set-Cookie that logs the user out", async () => {
    const v = new Visitor(base);
    expect((await v.increment()).json?.count).toBe(1);
    const before = v.cookie!;
    expect((await v.post("/api/login", jsonBody({ name: "grace" }))).status).toBe(200);

    // Requests the browser sent before the login's answer came back, answered after it: each
    // of their Set-Cookies would replace the logged-in cookie in the browser.
    for (const send of [
      (x: Visitor) => x.increment(),
      (x: Visitor) => x.get("/counter"),
      (x: Visitor) => x.increment(randomUUID()),
      (x: Visitor) => x.startSession(),
    ]) {
      const late = await send(new Visitor(base, before));
      expect(late.status).toBe(409);
      expect(late.json?.error).toBe("session_replaced");
      expect(late.headers.getSetCookie()).toEqual([]);
      takeCookies(v, late);
    }
    expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "grace" }, count: 1 });
    expect(await redisKeys(cluster, `sess:${sessionIdOf(before)}`)).toEqual([]);
  });

  it("keeps a browser logged in when increments race its login (one cookie jar, answered in order)", async () => {
    for (let round = 0; round < 3; round++) {
      const v = new Visitor(base);
      expect((await v.increment()).json?.count).toBe(1);
      const replies = await Promise.all([
        v.post("/api/login", jsonBody({ name: "lin" })),
        ...Array.from({ length: 20 }, (_, i) => (i % 2 ? v.increment() : v.get("/counter"))),
      ]);
      expect(replies[0].status).toBe(200);
      for (const r of replies.slice(1)) expect([200, 409]).toContain(r.status);
      const me = await v.get("/api/me");
      expect(me.status).toBe(200);
      // Every increment acknowledged on either id is in the logged-in session's count.
      const counted = replies.slice(1).filter((r) => r.status === 200).length;
      expect(me.json?.count).toBe(1 + counted);
    }
  });

  it("serves the tutorial's /redis-store-counter and /radis-store-counter as GET /counter: one count", async () => {
    const v = new Visitor(base);
    const seen = new Set<string>();
    const paths = ["/redis-store-counter", "/radis-store-counter", "/counter"];
    for (let n = 1; n <= 6; n++) {
      const r = await v.get(paths[n % 3]!);
      expect(r.status).toBe(200);
      expect(r.text).toBe(`count is ${n}`);
      expect(r.headers.get("cache-control")).toBe("no-store");
      seen.add(r.replica!);
    }
    expect(seen.size).toBe(3);
    expect((await v.get("/api/session")).json).toMatchObject({
      count: 6,
      session: sessionLabel(sessionIdOf(v.cookie)),
    });
  });

  it("shows the MemoryStore lesson at /memory-store-counter: sessions per replica, so counts diverge", async () => {
    const v = new Visitor(base);
    const replies: Reply[] = [];
    for (let i = 0; i < 6; i++) replies.push(await v.get("/memory-store-counter"));
    for (const r of replies) {
      expect(r.status).toBe(200);
      expect(r.text).toMatch(/^count is \d+$/);
    }
    expect(new Set(replies.map((r) => r.replica)).size).toBe(3);
    expect(v.cookie).toMatch(/^sid-memory=s%3A/);
    // Six requests on one cookie jar, yet the count never reaches 6: each replica only knows
    // the sessions it made itself (round-robin: never the one the previous request made).
    expect(replies.map((r) => r.text)).not.toEqual([1, 2, 3, 4, 5, 6].map((n) => `count is ${n}`));
    expect(replies.every((r) => r.text === "count is 1")).toBe(true);

    // The control: on one replica, the same route counts on.
    const [replica] = await cluster.replicas();
    const direct = new Visitor(replica!.url);
    for (let n = 1; n <= 3; n++) expect((await direct.get("/memory-store-counter")).text).toBe(`count is ${n}`);
    // Nothing of it is in Redis.
    expect(await redisKeys(cluster, "sess:*")).not.toContain(`sess:${sessionIdOf(direct.cookie)}`);
  });
});

describe("the app's new-session limit (2 replicas, NEW_SESSION_LIMIT=6 a minute; 2 keys a session, for 2 s)", () => {
  let cluster: LocalCluster;
  let base: string;
  beforeAll(async () => {
    cluster = LocalCluster.create({
      dir: newDir("limit"),
      replicas: 2,
      appEnv: {
        NEW_SESSION_LIMIT: "6",
        NEW_SESSION_WINDOW_SECONDS: "60",
        IDEMPOTENCY_MAX_KEYS: "2",
        IDEMPOTENCY_TTL_SECONDS: "2",
      },
    });
    await cluster.start();
    base = cluster.baseUrl();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  // First: it takes one of the six new sessions.
  it("frees a place under the key cap once the oldest key expires, as its Retry-After said", async () => {
    const v = new Visitor(base);
    expect((await v.increment("k1")).json?.count).toBe(1);
    expect((await v.increment("k2")).json?.count).toBe(2);
    const refused = await v.increment("k3");
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get("retry-after"));
    expect(retryAfter >= 1 && retryAfter <= 2).toBe(true);
    await sleep(retryAfter * 1000 + 200);
    const admitted = await v.increment("k3");
    expect(admitted.status).toBe(200);
    expect(admitted.json?.count).toBe(3);
    // The expired keys were pruned when the cap was reached; k1 counts anew.
    expect(Number(await cluster.redisCommand("HLEN", `{sess:${sessionIdOf(v.cookie)}}:idem`))).toBeLessThanOrEqual(2);
  });

  it("counts every new session per client address in Redis, whatever the cookie, on every such route", async () => {
    const keeper = new Visitor(base);
    expect((await keeper.increment()).status).toBe(200);

    const forged = () => `sid=s%3A${randomBytes(24).toString("base64url")}.${randomBytes(32).toString("base64url")}`;
    const attempts: (() => Promise<Reply>)[] = [
      () => new Visitor(base).increment(),
      () => new Visitor(base, forged()).increment(),
      () => new Visitor(base, `SID=${keeper.cookie!.slice(4)}`).increment(),
      () => new Visitor(base).startSession(),
      () => new Visitor(base).post("/api/login", jsonBody({ name: "ada" })),
      () => new Visitor(base).get("/counter"),
      () => new Visitor(base).get("/memory-store-counter"),
      () =>
        new Visitor(base).increment(undefined, {
          headers: { "X-Forwarded-For": `198.51.100.${Math.floor(Math.random() * 250)}` },
        }),
    ];
    const replies: Reply[] = [];
    for (let i = 0; i < 24; i++) replies.push(await attempts[i % attempts.length]!());
    const admitted = replies.filter((r) => r.status === 200 || r.status === 201);
    const refused = replies.filter((r) => r.status === 429);
    expect(admitted.length + refused.length).toBe(replies.length);
    // The test above and the keeper took two of the six.
    expect(admitted.length).toBe(4);
    for (const r of refused) {
      expect(r.json?.error).toBe("too_many_new_sessions");
      const retryAfter = Number(r.headers.get("retry-after"));
      expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true);
      expect(r.headers.getSetCookie()).toEqual([]);
    }
    // Every kind of request was refused once the allowance was spent.
    expect(new Set(replies.slice(8).map((r) => r.status))).toEqual(new Set([429]));
    // Redis holds only the admitted sessions (the memory-store one lives in its replica).
    const redisSessions = admitted.filter((r) => r.headers.getSetCookie().some((c) => c.startsWith("sid=")));
    expect((await cluster.redisCommand("KEYS", "sess:*")).split("\n").filter(Boolean).length).toBe(
      2 + redisSessions.length,
    );

    // A visitor that keeps its cookie is not limited.
    for (let n = 2; n <= 8; n++) expect((await keeper.increment()).json?.count).toBe(n);
  });

  it("answers a fast 503 while Redis is down, never an open door, and admits again once it is back", async () => {
    await cluster.stopRedis("SIGKILL");
    try {
      for (const send of [
        () => new Visitor(base).increment(),
        () => new Visitor(base).startSession(),
        () => new Visitor(base).post("/api/login", jsonBody({ name: "ada" })),
      ]) {
        const r = await send();
        expect(r.status).toBe(503);
        // store_timeout when a replica sent the command before it saw the connection drop.
        expect(["store_unavailable", "store_timeout"]).toContain(r.json?.error);
        expect(r.headers.getSetCookie()).toEqual([]);
      }
    } finally {
      await cluster.startRedis();
    }
    // The window's count survived the restart (AOF): once the replicas have reconnected, still
    // refused, with a clear 429.
    let after: Reply | undefined;
    await waitFor(
      "the replicas to reconnect",
      async () => (after = await new Visitor(base).increment()).status !== 503,
      15_000,
    );
    expect(after!.status).toBe(429);
    expect(after!.json?.error).toBe("too_many_new_sessions");
  });
});
