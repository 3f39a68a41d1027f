// A login whose answer is lost (Redis stalled past the command timeout, then ran the rotation):
// the client keeps its old cookie and reaches its count again by retrying with the same
// Idempotency-Key, while a copy of the old cookie without that key (a planted one) gets nothing.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import { waitFor } from "../../../infra/cluster/wait.ts";
import type { Reply, Visitor } from "../../../loadtest/client/visitor.ts";
import { REPLACED_TTL_SECONDS } from "./login.ts";
import { keys } from "./session.ts";
import { sessionIdOf } from "../../../test/session-cookie.ts";

let app: TestApp;
beforeAll(async () => {
  app = await startApp({ env: { NEW_SESSION_LIMIT: "0" } });
});
afterAll(async () => {
  await app?.close();
});

const login = (v: Visitor, name: string, key?: string) =>
  v.post("/api/login", {
    body: JSON.stringify({ name }),
    headers: key === undefined ? {} : { "Idempotency-Key": key },
  });

/** The name=value of the answer's one Set-Cookie, or undefined when it set none. */
const setCookie = (r: Reply) => r.headers.getSetCookie()[0]?.split(";")[0];

/** A visitor with a session holding `count`. */
async function visitorWithCount(count: number): Promise<Visitor> {
  const v = app.visitor();
  expect((await v.startSession()).status).toBe(201);
  expect((await v.post("/api/counter", { body: JSON.stringify({ by: count }) })).json?.count).toBe(count);
  return v;
}

describe("a login whose 503 answer hides that Redis applied it", () => {
  it("is replayed for the same cookie and Idempotency-Key: the new session, with the count carried once", async () => {
    const v = await visitorWithCount(5);
    const oldCookie = v.cookie!;
    const key = randomUUID();
    // CLIENT PAUSE WRITE holds the rotation's script (the session's GET, a read, passes) past the
    // app's command timeout: the client gets a 503 store_timeout, then Redis runs the script.
    await app.redis!.admin.call("CLIENT", "PAUSE", "1500", "WRITE");
    const lost = await login(v, "ada", key);
    expect(lost.status).toBe(503);
    expect(lost.json?.error).toBe("store_timeout");
    expect(setCookie(lost)).toBeUndefined();
    expect(v.cookie).toBe(oldCookie);
    // Applied once the pause ends: the old id is marked replaced by the new one.
    const marker = keys.replaced(sessionIdOf(oldCookie));
    await waitFor("Redis to run the stalled rotation", async () => (await app.redis!.admin.exists(marker)) === 1);
    const newId = await app.redis!.admin.get(marker);

    // The old cookie without the key, or with another one (what an attacker who planted it has): no session.
    for (const other of [undefined, randomUUID()]) {
      const planted = await login(app.visitor(oldCookie), "mallory", other);
      expect(planted.status).toBe(409);
      expect(planted.json?.error).toBe("session_replaced");
      expect(setCookie(planted)).toBeUndefined();
    }

    // What the 503 says to do: send it again, same cookie, same key.
    const retry = await login(v, "ada", key);
    expect(retry.status, JSON.stringify(retry.json)).toBe(200);
    expect(retry.json).toMatchObject({ user: { name: "ada" }, count: 5 });
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect(sessionIdOf(setCookie(retry))).toBe(newId);
    const me = await v.get("/api/me");
    expect(me.json).toMatchObject({ user: { name: "ada" }, count: 5, session: retry.json?.session });
    // Carried over once: the next increment counts from 5, and the old id holds nothing.
    expect((await v.increment()).json?.count).toBe(6);
    expect(await app.redis!.admin.exists(keys.session(sessionIdOf(oldCookie)))).toBe(0);
  });

  it("replays the first rotation to a duplicate sent at the same time: one session is made", async () => {
    // A second app on the same Redis with a long command timeout: the pause below only holds both
    // logins' scripts (their session GETs pass) so that the second runs after the first rotated.
    await using patient = await startApp({
      env: { NEW_SESSION_LIMIT: "0", REDIS_COMMAND_TIMEOUT_MS: "10000" },
      redis: app.redis,
    });
    const v = patient.visitor();
    expect((await v.startSession()).status).toBe(201);
    await v.post("/api/counter", { body: JSON.stringify({ by: 3 }) });
    const oldCookie = v.cookie!;
    const key = randomUUID();
    await app.redis!.admin.call("CLIENT", "PAUSE", "300", "WRITE");
    const [a, b] = await Promise.all([
      login(patient.visitor(oldCookie), "ada", key),
      login(patient.visitor(oldCookie), "ada", key),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(a.json?.session).toBe(b.json?.session);
    expect(setCookie(a)).toBe(setCookie(b));
    expect([a.json?.count, b.json?.count]).toEqual([3, 3]);
    const after = patient.visitor(setCookie(a));
    expect((await after.increment()).json?.count).toBe(4);
  });
});

describe("a login sent with an Idempotency-Key", () => {
  it("answers a retry with the old cookie and the same key with the same Set-Cookie and body", async () => {
    const v = await visitorWithCount(2);
    const oldCookie = v.cookie!;
    const key = randomUUID();
    const first = await login(v, "grace", key);
    expect(first.status).toBe(200);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    // The session moves on after the answer; a replay still answers what the login answered.
    expect((await v.increment()).json?.count).toBe(3);

    // The record lives only as long as the replaced marker: the key is a bearer secret for that long.
    const record = keys.login(sessionIdOf(oldCookie));
    const ttl = await app.redis!.admin.ttl(record);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(REPLACED_TTL_SECONDS);
    // The replay reads the record, not the marker.
    await app.redis!.admin.del(keys.replaced(sessionIdOf(oldCookie)));

    const again = await login(app.visitor(oldCookie), "grace", key);
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(setCookie(again)).toBe(setCookie(first));
    expect(again.json).toEqual(first.json);
    expect(first.json?.count).toBe(2);
    // Nothing changed in Redis: the session keeps its count and its user.
    expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "grace" }, count: 3 });
  });

  it("gives the old cookie with another key, once the marker is gone, only a new empty session", async () => {
    const v = await visitorWithCount(4);
    const oldCookie = v.cookie!;
    expect((await login(v, "victim", randomUUID())).status).toBe(200);
    // The 60 s marker, run out.
    await app.redis!.admin.del(keys.replaced(sessionIdOf(oldCookie)));
    const attacker = app.visitor(oldCookie);
    const r = await login(attacker, "mallory", randomUUID());
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ user: { name: "mallory" }, count: 0 });
    expect(r.headers.get("idempotent-replayed")).toBeNull();
    expect(setCookie(r)).not.toBe(v.cookie);
    // The victim's session is untouched.
    expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "victim" }, count: 4 });
  });

  it("leaves no record when the login had no key", async () => {
    const v = await visitorWithCount(1);
    const oldId = sessionIdOf(v.cookie);
    expect((await login(v, "ada")).status).toBe(200);
    expect(await app.redis!.admin.exists(keys.login(oldId))).toBe(0);
  });

  it("refuses the same key with another name (422) and sets no cookie", async () => {
    const v = await visitorWithCount(1);
    const oldCookie = v.cookie!;
    const key = randomUUID();
    expect((await login(v, "ada", key)).status).toBe(200);
    const r = await login(app.visitor(oldCookie), "grace", key);
    expect(r.status).toBe(422);
    expect(r.json?.error).toBe("idempotency_key_reused");
    expect(setCookie(r)).toBeUndefined();
    expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "ada" }, count: 1 });
  });

  it("does not bring back a session that was logged out (409 session_expired, no cookie)", async () => {
    const v = await visitorWithCount(1);
    const oldCookie = v.cookie!;
    const key = randomUUID();
    const first = await login(v, "ada", key);
    expect(first.status).toBe(200);
    const newId = sessionIdOf(setCookie(first));
    expect((await v.post("/api/logout")).json?.loggedOut).toBe(true);
    const r = await login(app.visitor(oldCookie), "ada", key);
    expect(r.status).toBe(409);
    expect(r.json?.error).toBe("session_expired");
    expect(setCookie(r)).toBeUndefined();
    expect(await app.redis!.admin.exists(keys.session(newId))).toBe(0);
  });

  it("refuses a key too short to be secret (400) before anything changes", async () => {
    const v = await visitorWithCount(1);
    const r = await login(v, "ada", "k1");
    expect(r.status).toBe(400);
    expect(r.json?.error).toBe("invalid_idempotency_key");
    expect(setCookie(r)).toBeUndefined();
    expect((await v.get("/api/session")).json?.count).toBe(1);
  });
});

describe("a keyed login's replay after what the user did next", () => {
  it("is logged out, server-side, by a logout sent with the cookie from before the login", async () => {
    const v = await visitorWithCount(5);
    const oldCookie = v.cookie!;
    const key = randomUUID();
    // The login is applied; its answer (the new cookie) is late, or lost: v still holds the old one.
    const late = await login(app.visitor(oldCookie), "ada", key);
    expect(late.status).toBe(200);
    const newCookie = setCookie(late)!;
    expect((await v.post("/api/logout")).status).toBe(200);
    // The late answer's cookie names nothing, and no queued retry gets the session back.
    expect((await app.visitor(newCookie).get("/api/me")).status).toBe(401);
    expect(await app.redis!.admin.exists(keys.session(sessionIdOf(newCookie)))).toBe(0);
    expect(await app.redis!.admin.exists(keys.login(sessionIdOf(oldCookie)))).toBe(0);
    const retry = await login(app.visitor(oldCookie), "ada", key);
    expect(retry.status).toBe(409);
    expect(retry.headers.get("idempotent-replayed")).toBeNull();
    expect(setCookie(retry)).toBeUndefined();
  });

  it("is logged out even when a replay on another replica reads the record while the logout is held", async () => {
    // Two replicas on one Redis, as behind nginx: the logout reaches one, the replay the other.
    await using other = await startApp({ env: { NEW_SESSION_LIMIT: "0" }, redis: app.redis });
    const v = await visitorWithCount(1);
    const oldCookie = v.cookie!;
    const key = randomUUID();
    expect((await login(app.visitor(oldCookie), "ada", key)).status).toBe(200); // its answer lost
    // Writes held for a moment (well under the 500 ms command timeout): the logout's writes wait,
    // the replay only reads, so it can hand out the session before the logout lands.
    await app.redis!.admin.call("CLIENT", "PAUSE", "300", "WRITE");
    const out = v.post("/api/logout");
    await new Promise((r) => setTimeout(r, 50));
    const replay = await login(other.visitor(oldCookie), "ada", key);
    expect((await out).status).toBe(200);
    // Whatever the replay answered, once the logout has answered no cookie it gave is logged in.
    const me = replay.status === 200 ? await app.visitor(setCookie(replay)).get("/api/me") : undefined;
    expect([replay.status, me?.status], JSON.stringify({ replay: replay.json, me: me?.json })).not.toEqual([200, 200]);
  });

  it("says so when a second login replaced the session the replayed login made", async () => {
    const v = await visitorWithCount(1);
    const oldCookie = v.cookie!;
    const k1 = randomUUID();
    expect((await login(v, "ada", k1)).status).toBe(200);
    expect((await login(v, "ada", randomUUID())).status).toBe(200);
    const r = await login(app.visitor(oldCookie), "ada", k1);
    expect(r.status).toBe(409);
    expect(r.json?.error).toBe("session_replaced");
    expect(r.json?.message).toMatch(/replaced by another login/);
    expect(setCookie(r)).toBeUndefined();
  });
});

describe("a login, seen from another tab that still holds the old cookie", () => {
  it.each([
    ["DELETE /api/session", (v: Visitor) => v.request("/api/session", { method: "DELETE" })],
    ["GET /session-destroy", (v: Visitor) => v.get("/session-destroy")],
  ])("ends with %s sent with the old cookie, as with a logout", async (_route, end) => {
    const v = await visitorWithCount(5);
    const oldCookie = v.cookie!;
    // Another tab still holds the old cookie when this one logs in.
    const done = await login(v, "ada");
    expect(done.status).toBe(200);
    const newCookie = v.cookie!;
    expect((await end(app.visitor(oldCookie))).status).toBe(200);
    // The browser's cookie was cleared: the session it named must not live on.
    expect((await app.visitor(newCookie).get("/api/me")).status).toBe(401);
    expect(await app.redis!.admin.exists(keys.session(sessionIdOf(newCookie)))).toBe(0);
  });

  it("ends only the session that login made, not one a later login made from it", async () => {
    const v = await visitorWithCount(5);
    const oldCookie = v.cookie!;
    expect((await login(v, "ada")).status).toBe(200);
    expect((await login(v, "grace")).status).toBe(200);
    expect((await app.visitor(oldCookie).request("/api/session", { method: "DELETE" })).status).toBe(200);
    expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "grace" }, count: 5 });
  });
});
