// A new visitor's first increment: the session's write and the counter's script leave together
// (one Redis round trip, not two), and the count stays exact when Redis runs them out of order.
import type { Command } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../../infra/cluster/wait.ts";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import type { RedisClient } from "./redis.ts";

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

  it("answers 503 when Redis fails under the write and the script together, and the retry counts once", async () => {
    // No new-session limit: its own Redis call would fail first and keep the pair from running.
    await using own = await startApp({ env: { NEW_SESSION_LIMIT: "0" } });
    await own.redis!.down();
    const v = own.visitor();
    const r = await v.increment("during");
    expect(r.status).toBe(503);
    expect(["store_unavailable", "store_timeout"]).toContain(r.json?.error);
    await own.redis!.up();
    await waitFor("the app to serve again", async () => (await own.visitor().increment()).status === 200, 15_000, 100);
    expect((await v.increment("during")).json?.count).toBe(1);
    expect((await v.increment("during")).json?.count).toBe(1);
    expect((await v.get("/api/session")).json?.count).toBe(1);
  });
});
