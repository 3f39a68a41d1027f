// The key layout: one key per session with the count inside it, the keys that live with a session
// in its Redis Cluster hash slot, and the earlier layouts still read and folded into the current one:
// the separate {sess:<id>}:count of the layout just before, and with one Redis count:<id>, idem:<id>.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import { sessionIdOf } from "../../../test/session-cookie.ts";
import { keys, sessionSerializer } from "./session.ts";
import { keySlot } from "./session-id.ts";

let app: TestApp;
beforeAll(async () => {
  app = await startApp();
});
afterAll(() => app?.close());

const FP_BY_1 = createHash("sha256").update("POST /api/counter by=1").digest("base64url").slice(0, 22);

/** The count stored inside the session's own value (undefined: none, or no session). */
async function countInSession(sid: string): Promise<number | undefined> {
  const text = await app.redis!.admin.get(keys.session(sid));
  return text === null ? undefined : sessionSerializer.parse(text).count;
}

/** The session's value as the previous releases stored it: createdAt only, the cookie left out. */
async function writeOldSession(sid: string): Promise<void> {
  await app.redis!.admin.set(keys.session(sid), JSON.stringify({ createdAt: Date.now() }), "KEEPTTL");
}

/** As the release before stored a session's count and one Idempotency-Key result (by=1, count n). */
async function writeSeparateCounter(sid: string, count: number, key: string): Promise<void> {
  const admin = app.redis!.admin;
  await writeOldSession(sid);
  await admin.set(keys.separateCounter(sid), String(count), "EX", 1800);
  await admin.hset(keys.idempotency(sid), key, `${FP_BY_1} ${count} ${Date.now() + 3_600_000}`);
  await admin.expire(keys.idempotency(sid), 1800);
}

/** As the release before hash tags stored them (one Redis only). */
async function writeOldLayout(sid: string, count: number, key: string): Promise<void> {
  const admin = app.redis!.admin;
  await writeOldSession(sid);
  await admin.del(keys.separateCounter(sid), keys.idempotency(sid));
  await admin.set(`count:${sid}`, String(count), "EX", 1800);
  await admin.hset(`idem:${sid}`, key, `${FP_BY_1} ${count} ${Date.now() + 3_600_000}`);
  await admin.expire(`idem:${sid}`, 1800);
}

describe("key layout", () => {
  it("keeps every key of one session in the session's hash slot", () => {
    const sid = "AbC-123_xyz";
    const slot = keySlot(keys.session(sid));
    for (const k of [keys.idempotency(sid), keys.replaced(sid), keys.login(sid), keys.separateCounter(sid)])
      expect(keySlot(k)).toBe(slot);
  });

  it("stores a visitor without Idempotency-Keys as one key, the count inside its value", async () => {
    const v = app.visitor();
    await v.increment();
    await v.increment();
    const sid = sessionIdOf(v.cookie);
    const admin = app.redis!.admin;
    expect(await admin.get(keys.session(sid))).toMatch(/^\{"c":\d{13},"n":2\}$/);
    expect(await admin.exists(keys.separateCounter(sid), keys.idempotency(sid))).toBe(0);
    expect(await admin.ttl(keys.session(sid))).toBeGreaterThan(0);
    // A key adds the session's idempotency hash, and only then.
    await v.increment("first-key");
    expect(await admin.exists(keys.idempotency(sid))).toBe(1);
    expect(await countInSession(sid)).toBe(3);
  });

  it("stores the value in an allocation of its own size, whatever the Lua arguments before it", async () => {
    const v = app.visitor();
    await v.increment(`a-long-idempotency-key-${"x".repeat(40)}`); // a long argument just before the write
    await v.increment();
    const sid = sessionIdOf(v.cookie);
    const admin = app.redis!.admin;
    const copy = keys.session("c".repeat(sid.length));
    await admin.set(copy, (await admin.get(keys.session(sid)))!, "EX", 60);
    const usage = (key: string) => admin.call("MEMORY", "USAGE", key, "SAMPLES", "0");
    expect(await usage(keys.session(sid))).toBe(await usage(copy));
  });

  it("reads a count in the separate key of the layout before, and folds it and its keys in on increment", async () => {
    const v = app.visitor();
    await v.increment();
    const sid = sessionIdOf(v.cookie);
    await writeSeparateCounter(sid, 41, "old-key");
    const admin = app.redis!.admin;

    expect((await v.get("/api/session")).json?.count).toBe(41);
    const replay = await v.increment("old-key");
    expect(replay.json?.count).toBe(41);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    // The replay folded the count in already; the next increment counts on from it.
    expect(await admin.exists(keys.separateCounter(sid))).toBe(0);
    expect(await countInSession(sid)).toBe(41);
    expect((await v.increment()).json?.count).toBe(42);
    expect(await countInSession(sid)).toBe(42);
    expect(await admin.ttl(keys.session(sid))).toBeGreaterThan(0);
  });

  it("reads a count in the layout before hash tags, and folds it and its keys into the current one", async () => {
    const v = app.visitor();
    await v.increment();
    const sid = sessionIdOf(v.cookie);
    await writeOldLayout(sid, 41, "old-key");
    const admin = app.redis!.admin;

    expect((await v.get("/api/session")).json?.count).toBe(41);
    const replay = await v.increment("old-key");
    expect(replay.json?.count).toBe(41);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect((await v.increment()).json?.count).toBe(42);

    expect(await admin.exists(`count:${sid}`, `idem:${sid}`)).toBe(0);
    expect(await countInSession(sid)).toBe(42);
    expect(await admin.hexists(keys.idempotency(sid), "old-key")).toBe(1);
  });

  it("adds what an old-version replica wrote during a rolling deploy instead of losing it", async () => {
    const v = app.visitor();
    expect((await v.increment()).json?.count).toBe(1);
    const sid = sessionIdOf(v.cookie);
    // Old replicas incremented the same session meanwhile: one at the separate key, one before hash tags.
    await app.redis!.admin.set(keys.separateCounter(sid), "2", "EX", 1800);
    await app.redis!.admin.set(`count:${sid}`, "3", "EX", 1800);
    expect((await v.get("/api/session")).json?.count).toBe(6);
    expect((await v.increment()).json?.count).toBe(7);
  });

  // What a replica on the release before writes back is a session value whose count is not its last
  // field: it reads {"c":..,"n":..} as unknown fields and appends createdAt after them.
  it("keeps the count when a replica on the release before writes the session back", async () => {
    const v = app.visitor();
    for (let i = 0; i < 5; i++) expect((await v.increment()).status).toBe(200);
    const sid = sessionIdOf(v.cookie);
    const admin = app.redis!.admin;
    const stored = (await admin.get(keys.session(sid)))!;
    expect(stored).toMatch(/"n":5\}$/);
    // The release before (4afcc4c) parses {"c":..,"n":5} as a session without createdAt, so its
    // counter takes the new-session path: it sets createdAt, saves the session with its own
    // serializer (the unknown fields kept, createdAt appended) and INCRs {sess:<id>}:count.
    const old = { ...(JSON.parse(stored) as object), createdAt: Date.now() };
    await admin.set(keys.session(sid), JSON.stringify(old), "KEEPTTL");
    await admin.incr(keys.separateCounter(sid));
    expect((await v.get("/api/session")).json?.count).toBe(6); // read() still sees both
    // The next increment on this release: 5 + 1 + 1.
    expect((await v.increment()).json?.count).toBe(7);
    expect((await v.get("/api/session")).json?.count).toBe(7);
  });

  it('counts on from a session the seed\'s counter stored, its count under "count"', async () => {
    const v = app.visitor();
    await v.startSession();
    const sid = sessionIdOf(v.cookie);
    const createdAt = Date.now();
    const user = { name: 'a "count": 9}', loginAt: createdAt };
    await app.redis!.admin.set(keys.session(sid), JSON.stringify({ createdAt, count: 5, user }), "KEEPTTL");
    expect((await v.increment()).json?.count).toBe(6);
    const stored = sessionSerializer.parse((await app.redis!.admin.get(keys.session(sid)))!);
    expect(stored).toMatchObject({ createdAt, count: 6, user });
    expect((await v.increment()).json?.count).toBe(7);
  });

  it("carries a count stored under either earlier layout across a login", async () => {
    for (const write of [writeSeparateCounter, writeOldLayout]) {
      const v = app.visitor();
      await v.increment();
      const oldId = sessionIdOf(v.cookie);
      await write(oldId, 7, "before-login");
      const login = await v.post("/api/login", {
        body: JSON.stringify({ name: "ada" }),
        headers: { "content-type": "application/json" },
      });
      expect(login.status).toBe(200);
      expect(login.json?.count).toBe(7);
      const newId = sessionIdOf(v.cookie);
      expect(newId).not.toBe(oldId);
      expect(keySlot(keys.session(newId))).toBe(keySlot(keys.session(oldId)));
      expect((await v.get("/api/me")).json?.count).toBe(7);
      expect(await countInSession(newId)).toBe(7);
      expect((await v.increment("before-login")).headers.get("idempotent-replayed")).toBe("true");
      expect(
        await app.redis!.admin.exists(
          `count:${oldId}`,
          `idem:${oldId}`,
          keys.separateCounter(oldId),
          keys.session(oldId),
        ),
      ).toBe(0);
    }
  });

  it("refuses the replaced cookie when an old-version replica marked it under the previous layout", async () => {
    const v = app.visitor();
    await v.increment();
    const sid = sessionIdOf(v.cookie);
    const cookie = v.cookie;
    await app.redis!.admin.del(keys.session(sid));
    await app.redis!.admin.set(`replaced:${sid}`, "1", "EX", 60);
    const r = await app.visitor(cookie).increment();
    expect(r.status).toBe(409);
    expect(r.json?.error).toBe("session_replaced");
  });
});
