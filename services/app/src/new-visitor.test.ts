// A new visitor's first increment: the counter's script stores the new session itself with its first
// count (one script after the new-session limit, no write of express-session's), and counts exactly
// once, also when Redis runs the script and its answer is lost.
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { Command } from "ioredis";
// The RESP parser ioredis itself uses: the proxy reads the app's commands and Redis's answers with it.
import RedisParser from "redis-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../../infra/cluster/wait.ts";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import { startTestRedis, type TestRedis } from "../../../test/redis-server.ts";
import type { RedisClient } from "./redis.ts";
import { keys } from "./session.ts";

// Every script the app's client sends: the new-session limit's (a key not under sess:), the session
// store's write (one key, sess:<id>) or the counter's (more keys).
type Sent = "limit" | "write" | "counter";
let sent: Sent[] = [];
function observe(client: RedisClient): void {
  const send = client.sendCommand.bind(client);
  client.sendCommand = ((command: Command, ...rest: unknown[]) => {
    if (command.name === "evalsha" || command.name === "eval") {
      const [, numKeys, key] = command.args.map(String);
      sent.push(!key!.startsWith("sess:") ? "limit" : numKeys === "1" ? "write" : "counter");
    }
    return (send as (...a: unknown[]) => unknown)(command, ...rest);
  }) as RedisClient["sendCommand"];
}

let app: TestApp;
beforeAll(async () => {
  app = await startApp({ onRedis: observe });
});
afterAll(async () => {
  await app?.close();
});

describe("a new visitor's first increment", () => {
  it("stores the session and its first count in the counter's one script, after the limit", async () => {
    sent = [];
    const v = app.visitor();
    const r = await v.increment("first-key");
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json?.count).toBe(1);
    expect(sent).toEqual(["limit", "counter"]);
    // The session is stored as express-session reads it: its cookie loads it, with the count.
    const replay = await v.increment("first-key");
    expect(replay.json).toMatchObject({ count: 1 });
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect((await v.get("/api/session")).json?.count).toBe(1);
    expect((await v.increment("second-key")).json).toMatchObject({ count: 2 });
    // Stored with the idle timeout as its TTL, as the store's own write would.
    const admin = app.redis!.admin;
    const stored = await admin.keys("sess:*");
    expect(stored.length).toBeGreaterThan(0);
    for (const k of stored) expect(await admin.ttl(k)).toBeGreaterThan(0);
  });

  it("counts exactly once when Redis has forgotten the script (NOSCRIPT, then EVAL)", async () => {
    await app.redis!.admin.script("FLUSH");
    sent = [];
    const v = app.visitor();
    const r = await v.increment("k");
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json?.count).toBe(1);
    expect(sent).toEqual(["limit", "limit", "counter", "counter"]);
    expect((await v.increment("k")).json).toMatchObject({ count: 1 });
    expect((await v.get("/api/session")).json?.count).toBe(1);
  });

  it("counts once when Redis runs the script but its answer is lost (503, then a replay)", async () => {
    await using redis = await startTestRedis({ kind: "process" });
    await using proxy = await CuttingProxy.to(redis.port);
    // The app reaches Redis through the proxy; the test's admin client goes straight to it.
    await using own = await startApp({ redis: { ...redis, url: `redis://127.0.0.1:${proxy.port}` } });
    // Both scripts loaded: otherwise the cut would fall on NOSCRIPT answers, with nothing applied.
    expect((await own.visitor().increment("warm-up")).status).toBe(200);

    const v = own.visitor();
    proxy.cutAfterCounter();
    const r = await v.increment("lost-answer");
    expect(proxy.cuts).toBe(1);
    expect(r.status, JSON.stringify(r.json)).toBe(503);
    expect(r.json?.error).toBe("store_timeout");
    // The hazard really happened: Redis holds the new session, counted once under the key.
    const records = await idempotencyRecords(redis, "lost-answer");
    expect(records).toHaveLength(1);
    expect(records[0]).toMatch(/^\S+ 1 \d+$/);
    // The 503 still gave the visitor its new session's cookie (express-session sets it for a
    // modified session whatever the status), so the retry names the session that was counted.
    expect(v.cookie).toBeDefined();

    await waitFor("the app to serve again", async () => (await own.visitor().increment()).status === 200, 15_000, 100);
    const retry = await v.increment("lost-answer");
    expect(retry.status, JSON.stringify(retry.json)).toBe(200);
    expect(retry.json?.count).toBe(1);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect((await v.increment("next")).json?.count).toBe(2);
    expect((await v.get("/api/session")).json?.count).toBe(2);
    expect(await idempotencyRecords(redis, "lost-answer")).toEqual(records);
  });
});

/** The records of Idempotency-Key `key` in every session's idempotency hash. */
async function idempotencyRecords(redis: TestRedis, key: string): Promise<string[]> {
  const hashes = await redis.admin.keys(keys.idempotency("*"));
  const records = await Promise.all(hashes.map((h) => redis.admin.hget(h, key)));
  return records.filter((r): r is string => r !== null);
}

/**
 * A TCP proxy in front of a real Redis that can lose one answer: armed, it forwards a new session's
 * counter script (EVALSHA or EVAL on several keys, the first sess:<id>) and what was pipelined with it,
 * lets Redis run them all, then closes the app's connection instead of forwarding the answer.
 */
class CuttingProxy implements AsyncDisposable {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #armed = false;
  cuts = 0;
  port = 0;

  private constructor(redisPort: number) {
    this.#server = createServer((app) => {
      const redis = connect(redisPort, "127.0.0.1");
      for (const s of [app, redis]) {
        this.#sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => {
          this.#sockets.delete(s);
          app.destroy();
          redis.destroy();
        });
      }
      // Commands the app sent and answers Redis gave on this connection, counted to know when the
      // counter's answer (number `cutAt`) has come back.
      let sent = 0;
      let answered = 0;
      let cutAt: number | undefined;
      const commands = new RedisParser({
        returnReply: (args: unknown) => {
          sent++;
          const [name, , numKeys, firstKey] = (args as Buffer[]).map(String);
          const script = name?.toLowerCase() === "evalsha" || name?.toLowerCase() === "eval";
          if (this.#armed && script && Number(numKeys) > 1 && firstKey?.startsWith("sess:")) {
            this.#armed = false;
            cutAt = sent;
          }
        },
        returnError: () => app.destroy(),
        returnBuffers: true,
      });
      const answers = new RedisParser({
        returnReply: () => void answered++,
        returnError: () => void answered++,
        returnBuffers: true,
      });
      app.on("data", (chunk: Buffer) => {
        commands.execute(chunk);
        redis.write(chunk);
      });
      redis.on("data", (chunk: Buffer) => {
        answers.execute(chunk);
        if (cutAt !== undefined && answered >= cutAt) {
          this.cuts++;
          app.destroy();
          return;
        }
        app.write(chunk);
      });
    });
  }

  static async to(redisPort: number): Promise<CuttingProxy> {
    const proxy = new CuttingProxy(redisPort);
    await new Promise<void>((resolve) => proxy.#server.listen(0, "127.0.0.1", resolve));
    proxy.port = (proxy.#server.address() as AddressInfo).port;
    return proxy;
  }

  /** Loses the answer to the next new session's counter script (and to what came with it). */
  cutAfterCounter(): void {
    this.#armed = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
