// A new visitor's first increment: the session's write and the counter's script leave together
// (one Redis round trip, not two), and the count stays exact when Redis runs them out of order or
// runs them and their answer is lost.
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

// Every script the app's client sends: which (the new-session limit's, the session's write: one
// key, sess:<id>; the counter's: more) and whether the session's write had been answered by then.
type Sent = { script: "limit" | "write" | "counter"; writeAnswered: boolean };
let sent: Sent[] = [];
let writeAnswered = true;
function observe(client: RedisClient): void {
  const send = client.sendCommand.bind(client);
  client.sendCommand = ((command: Command, ...rest: unknown[]) => {
    if (command.name === "evalsha" || command.name === "eval") {
      const [, numKeys, key] = command.args.map(String);
      const script = !key!.startsWith("sess:") ? "limit" : numKeys === "1" ? "write" : "counter";
      sent.push({ script, writeAnswered });
      if (script === "write") {
        writeAnswered = false;
        command.promise.finally(() => (writeAnswered = true)).catch(() => {});
      }
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
  it("sends the counter's script before the session's write is answered, and counts 1", async () => {
    sent = [];
    const v = app.visitor();
    const r = await v.increment("first-key");
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json?.count).toBe(1);
    expect(sent).toEqual([
      { script: "limit", writeAnswered: true },
      { script: "write", writeAnswered: true },
      { script: "counter", writeAnswered: false },
    ]);
    expect((await v.increment("first-key")).json).toMatchObject({ count: 1 });
    expect((await v.get("/api/session")).json?.count).toBe(1);
  });

  it("counts exactly once when the script runs before the session's write lands (NOSCRIPT retry)", async () => {
    const admin = app.redis!.admin;
    const returning = app.visitor();
    expect((await returning.increment("a")).status).toBe(200);
    // After a Redis restart or failover: Redis knows the counter's script again (a returning
    // visitor's increment loaded it) but not the session's write, whose EVALSHA fails and is sent
    // again as EVAL, behind the counter's script, which finds no session yet and changes nothing.
    await admin.script("FLUSH");
    expect((await returning.increment("b")).json).toMatchObject({ count: 2 });
    sent = [];
    const v = app.visitor();
    const r = await v.increment("k");
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json?.count).toBe(1);
    // The limit (NOSCRIPT, then EVAL), the write and the counter together, the write again (EVAL),
    // then the counter again once the write is answered.
    expect(sent.map((s) => s.script)).toEqual(["limit", "limit", "write", "counter", "write", "counter"]);
    expect((await v.increment("k")).json).toMatchObject({ count: 1 });
    expect((await v.get("/api/session")).json?.count).toBe(1);
  });

  it("counts once when Redis runs the write and the script but their answer is lost (503, then a replay)", async () => {
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
