// The key layout: a session's companion keys share its Redis Cluster hash slot, and with one
// Redis the previous layout (count:<id>, idem:<id>) is still read and folded into the new keys.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import { keys } from "./session.ts";
import { keySlot } from "./session-id.ts";

let app: TestApp;
beforeAll(async () => {
  app = await startApp();
});
afterAll(() => app?.close());

function sidOf(cookie: string | undefined): string {
  if (!cookie) throw new Error("the visitor has no session cookie");
  const value = decodeURIComponent(cookie.slice(cookie.indexOf("=") + 1));
  return value.slice(2, value.lastIndexOf("."));
}

/** As the previous release stored a session's count and one Idempotency-Key result (by=1, count n). */
async function writeOldLayout(sid: string, count: number, key: string): Promise<void> {
  const admin = app.redis!.admin;
  const fp = createHash("sha256").update("POST /api/counter by=1").digest("base64url").slice(0, 22);
  await admin.del(keys.counter(sid), keys.idempotency(sid));
  await admin.set(`count:${sid}`, String(count), "EX", 1800);
  await admin.hset(`idem:${sid}`, key, `${fp} ${count} ${Date.now() + 3_600_000}`);
  await admin.expire(`idem:${sid}`, 1800);
}

describe("key layout", () => {
  it("keeps every key of one session in the session's hash slot", () => {
    const sid = "AbC-123_xyz";
    const slot = keySlot(keys.session(sid));
    for (const k of [keys.counter(sid), keys.idempotency(sid), keys.replaced(sid)]) expect(keySlot(k)).toBe(slot);
  });

  it("reads a count in the previous layout, and folds it and its keys into the new one on increment", async () => {
    const v = app.visitor();
    await v.increment();
    const sid = sidOf(v.cookie);
    await writeOldLayout(sid, 41, "old-key");
    const admin = app.redis!.admin;

    expect((await v.get("/api/session")).json?.count).toBe(41);
    const replay = await v.increment("old-key");
    expect(replay.json?.count).toBe(41);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect((await v.increment()).json?.count).toBe(42);

    expect(await admin.exists(`count:${sid}`, `idem:${sid}`)).toBe(0);
    expect(await admin.get(keys.counter(sid))).toBe("42");
    expect(await admin.hexists(keys.idempotency(sid), "old-key")).toBe(1);
    expect(await admin.ttl(keys.counter(sid))).toBeGreaterThan(0);
  });

  it("adds what an old-version replica wrote during a rolling deploy instead of losing it", async () => {
    const v = app.visitor();
    expect((await v.increment()).json?.count).toBe(1);
    const sid = sidOf(v.cookie);
    // An old replica incremented the same session twice at the old key meanwhile.
    await app.redis!.admin.set(`count:${sid}`, "2", "EX", 1800);
    expect((await v.increment()).json?.count).toBe(4);
  });

  it("carries a count stored under the previous layout across a login", async () => {
    const v = app.visitor();
    await v.increment();
    const oldId = sidOf(v.cookie);
    await writeOldLayout(oldId, 7, "before-login");
    const login = await v.post("/api/login", {
      body: JSON.stringify({ name: "ada" }),
      headers: { "content-type": "application/json" },
    });
    expect(login.status).toBe(200);
    const newId = sidOf(v.cookie);
    expect(newId).not.toBe(oldId);
    expect(keySlot(keys.session(newId))).toBe(keySlot(keys.session(oldId)));
    expect((await v.get("/api/me")).json?.count).toBe(7);
    expect((await v.increment("before-login")).headers.get("idempotent-replayed")).toBe("true");
    expect(await app.redis!.admin.exists(`count:${oldId}`, `idem:${oldId}`, keys.counter(oldId))).toBe(0);
  });

  it("refuses the replaced cookie when an old-version replica marked it under the previous layout", async () => {
    const v = app.visitor();
    await v.increment();
    const sid = sidOf(v.cookie);
    const cookie = v.cookie;
    await app.redis!.admin.del(keys.session(sid));
    await app.redis!.admin.set(`replaced:${sid}`, "1", "EX", 60);
    const r = await app.visitor(cookie).increment();
    expect(r.status).toBe(409);
    expect(r.json?.error).toBe("session_replaced");
  });
});
