// The session store (SessionStore over connect-redis) and the Redis client against a real Redis
// (a testcontainers container when Docker answers, else a local redis-server): a session and its counter live and die
// together, and a Redis that stalls or is unreachable gives a 503, never a hang.
import { setTimeout as sleep } from "node:timers/promises";
import { createRedis, type RedisClient } from "./redis.ts";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../../infra/cluster/wait.ts";
import { startTestRedis, type TestRedis } from "../../../test/redis-server.ts";
import { loadConfig } from "./config.ts";
import { StoreUnavailableError } from "./errors.ts";

import { createStore, keys, type SessionStore } from "./session.ts";

const TTL = 600;
// express-session's cookie as serialized when nothing about it is per session: left out of Redis.
const DEFAULT_COOKIE = {
  originalMaxAge: null,
  expires: null,
  secure: false,
  httpOnly: true,
  path: "/",
  sameSite: "lax",
};

function call<T>(fn: (cb: (err?: Error | null, data?: T) => void) => unknown): Promise<T> {
  return new Promise((resolve, reject) => void fn((err, data) => (err ? reject(err) : resolve(data as T))));
}

describe("SessionStore on a real Redis", () => {
  let server: TestRedis;
  let redis: RedisClient;
  let store: SessionStore;
  const session = () => ({ cookie: { originalMaxAge: null }, createdAt: Date.now() }) as never;

  beforeAll(async () => {
    server = await startTestRedis();
    const config = loadConfig({
      REDIS_URL: server.url,
      REDIS_PASSWORD: server.password,
      REPLICA_ID: "session-test",
      SESSION_IDLE_TIMEOUT_SECONDS: String(TTL),
    });
    redis = createRedis(config, pino({ level: "silent" }));
    await waitFor("the app's Redis client to be ready", () => redis.status === "ready", 10_000);
    store = createStore(config, redis);
  }, 300_000);

  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  const source =
    process.env.REQUIRE_DOCKER === "1"
      ? "a container (REQUIRE_DOCKER=1)"
      : "a container when Docker answers, else a local redis-server";
  it(`gets its Redis from ${source}`, () => {
    if (process.env.REQUIRE_DOCKER === "1") expect(server.kind).toBe("container");
    expect(["container", "process"]).toContain(server.kind);
  });

  it("stores a session under sess:<sid> with the idle timeout as its TTL", async () => {
    await call((cb) => store.set("s1", session(), cb));
    expect(await server.admin.exists(keys.session("s1"))).toBe(1);
    const ttl = await server.admin.ttl(keys.session("s1"));
    expect(ttl).toBeGreaterThan(TTL - 5);
    expect(ttl).toBeLessThanOrEqual(TTL);
  });

  it("leaves express-session's default cookie out of Redis and gives it back on read; keeps a custom one", async () => {
    const t = Date.now(); // within the absolute timeout
    const cookie = { originalMaxAge: null, expires: null, secure: false, httpOnly: true, path: "/", sameSite: "lax" };
    await call((cb) => store.set("c1", { cookie, createdAt: t + 1 } as never, cb));
    expect(await server.admin.get(keys.session("c1"))).toBe(`{"c":${t + 1}}`);
    expect(await call((cb) => store.get("c1", cb))).toEqual({ cookie, createdAt: t + 1 });

    const secure = { ...cookie, secure: true };
    await call((cb) => store.set("c2", { cookie: secure, createdAt: t + 2 } as never, cb));
    expect(JSON.parse((await server.admin.get(keys.session("c2")))!)).toEqual({ cookie: secure, c: t + 2 });
    expect(await call((cb) => store.get("c2", cb))).toEqual({ cookie: secure, createdAt: t + 2 });

    // A session written before the cookie was left out reads as it always did.
    await server.admin.set(keys.session("c3"), JSON.stringify({ cookie, createdAt: t + 3 }));
    expect(await call((cb) => store.get("c3", cb))).toEqual({ cookie, createdAt: t + 3 });
  });

  it("extends the session, its counter and its idempotency keys together on touch", async () => {
    await call((cb) => store.set("s2", session(), cb));
    await server.admin.set(keys.separateCounter("s2"), "7", "EX", 5);
    await server.admin.hset(keys.idempotency("s2"), "k", "fp 7 1");
    await server.admin.expire(keys.idempotency("s2"), 5);
    await server.admin.expire(keys.session("s2"), 5);
    await call((cb) => store.touch("s2", session(), cb));
    for (const key of [keys.session("s2"), keys.separateCounter("s2"), keys.idempotency("s2")])
      expect(await server.admin.ttl(key)).toBeGreaterThan(TTL - 5);
    expect(await server.admin.get(keys.separateCounter("s2"))).toBe("7");
  });

  it("deletes the session, its counter and its idempotency keys together on destroy", async () => {
    await call((cb) => store.set("s3", session(), cb));
    await server.admin.set(keys.separateCounter("s3"), "3");
    await server.admin.hset(keys.idempotency("s3"), "k", "fp 3 1");
    await call((cb) => store.destroy("s3", cb));
    expect(await server.admin.exists(keys.session("s3"), keys.separateCounter("s3"), keys.idempotency("s3"))).toBe(0);
  });

  it("keeps the count Redis holds when express-session writes back the copy it read earlier", async () => {
    const t = Date.now();
    const session = () => ({ cookie: DEFAULT_COOKIE, createdAt: t }) as never;
    await call((cb) => store.set("k1", { ...(session() as object), createdAt: t, count: 1 } as never, cb));
    // The counter's script counted on meanwhile (as another request would have).
    await server.admin.set(keys.session("k1"), `{"c":${t},"n":5}`, "KEEPTTL");
    const user = { name: "ada", loginAt: t };
    await call((cb) => store.set("k1", { ...(session() as object), createdAt: t, count: 1, user } as never, cb));
    expect(await server.admin.get(keys.session("k1"))).toBe(`{"c":${t},"user":{"name":"ada","loginAt":${t}},"n":5}`);
    expect(await call((cb) => store.get("k1", cb))).toMatchObject({ createdAt: t, count: 5, user });
    expect(await server.admin.ttl(keys.session("k1"))).toBeGreaterThan(TTL - 5);
    // A session no longer stored (destroyed meanwhile) gets no count back from the stale copy.
    await call((cb) => store.set("k2", { ...(session() as object), createdAt: t, count: 3 } as never, cb));
    expect(await server.admin.get(keys.session("k2"))).toBe(`{"c":${t}}`);
  });

  it("writes the count it is given with COUNTER=session, the seed's read-modify-write", async () => {
    const config = loadConfig({
      REDIS_URL: server.url,
      REDIS_PASSWORD: server.password,
      REPLICA_ID: "session-test",
      COUNTER: "session",
    });
    const seedStore = createStore(config, redis);
    const t = Date.now();
    const session = () => ({ cookie: DEFAULT_COOKIE, createdAt: t }) as never;
    await server.admin.set(keys.session("k3"), `{"c":${t},"n":5}`);
    await call((cb) => seedStore.set("k3", { ...(session() as object), createdAt: t, count: 2 } as never, cb));
    expect(await server.admin.get(keys.session("k3"))).toBe(`{"c":${t},"n":2}`);
  });

  it("fails a read with store_timeout (503) at the command timeout while Redis is stalled", async () => {
    // CLIENT PAUSE holds every client's commands for 1.5 s: a stalled Redis, not a dead one.
    await server.admin.call("CLIENT", "PAUSE", "1500", "ALL");
    const t0 = performance.now();
    const err = await call((cb) => store.get("s1", cb)).then(
      () => undefined,
      (e: unknown) => e,
    );
    const ms = performance.now() - t0;
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).code).toBe("store_timeout");
    expect((err as StoreUnavailableError).status).toBe(503);
    expect(ms).toBeLessThan(1500);
    await sleep(1500 - ms + 100);
    expect(await call((cb) => store.get("s1", cb))).toMatchObject({ createdAt: expect.any(Number) as unknown });
  });

  it("fails at once with store_unavailable (503) while Redis is down; the same client recovers after", async () => {
    await server.down();
    try {
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const err = await call((cb) => store.get("s1", cb)).then(
          () => undefined,
          (e: unknown) => e,
        );
        // Offline queue off: refused before anything is sent, so nothing can have been applied.
        expect(err).toBeInstanceOf(StoreUnavailableError);
        expect((err as StoreUnavailableError).code).toBe("store_unavailable");
        expect((err as StoreUnavailableError).applied).toBe("no");
        expect(performance.now() - t0).toBeLessThan(500);
        await sleep(100);
      }
    } finally {
      await server.up();
    }
    await waitFor("the app's client to reconnect on its own", () => redis.status === "ready", 15_000);
    await call((cb) => store.set("s4", session(), cb));
    expect(await server.admin.exists(keys.session("s4"))).toBe(1);
  });
});
