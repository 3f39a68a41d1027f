// A new visitor's first increment: the counter's script stores the new session itself with its first
// count (one script after the new-session limit, no write of express-session's), and counts exactly once.
import type { Command } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../../infra/cluster/wait.ts";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import type { RedisClient } from "./redis.ts";

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

  it("answers 503 when Redis fails under the script, and the retry counts once", async () => {
    // No new-session limit: its own Redis call would fail first and keep the script from running.
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
