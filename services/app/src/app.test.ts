// The app's request-level rules, in-process (createApp on port 0, a local redis-server): every
// 4xx it answers, the login's session rotation and exactly-once increments with an Idempotency-Key.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../../infra/cluster/wait.ts";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import { sessionIdOf } from "../../../test/session-cookie.ts";
import type { Reply, RequestOptions } from "../../../loadtest/client/visitor.ts";
import { sessionSerializer } from "./session.ts";

const json = (value: unknown) => ({ body: JSON.stringify(value) });
const keyed = (key: string, by?: number) => ({
  headers: { "Idempotency-Key": key },
  ...(by === undefined ? {} : json({ by })),
});

/** The JSON error the app answers with: status, code, and a message for a person. */
function expectError(r: Reply, status: number, error: string): void {
  expect({ status: r.status, error: r.json?.error }).toEqual({ status, error });
  expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  expect(r.json?.message).toEqual(expect.any(String));
}

let app: TestApp;
beforeAll(async () => {
  app = await startApp();
});
afterAll(() => app?.close());

/** How many increments Redis holds, summed over all sessions (the count lives in each session's value). */
async function storedCounts(): Promise<number> {
  const admin = app.redis!.admin;
  const keys = await admin.keys("sess:*");
  const values = keys.length ? await admin.mget(...keys) : [];
  return values.reduce((sum, v) => sum + (v === null ? 0 : (sessionSerializer.parse(v).count ?? 0)), 0);
}

describe("4xx answers", () => {
  it("answers 404 not_found for an unknown path and an unknown asset", async () => {
    const v = app.visitor();
    expectError(await v.get("/nope"), 404, "not_found");
    expectError(await v.post("/api/nope"), 404, "not_found");
    expectError(await v.get("/assets/nope.js"), 404, "not_found");
  });

  it.each([
    ["PUT", "/", "GET, HEAD"],
    ["POST", "/counter", "GET"],
    ["POST", "/session-destroy", "GET"],
    ["GET", "/api/counter", "POST"],
    ["DELETE", "/api/counter", "POST"],
    ["PUT", "/api/session", "GET, HEAD, POST, DELETE"],
    ["GET", "/api/login", "POST"],
    ["GET", "/api/logout", "POST"],
    ["POST", "/api/me", "GET, HEAD"],
    ["POST", "/assets/app.js", "GET, HEAD"],
    ["DELETE", "/assets/nope.js", "GET, HEAD"],
  ])("answers 405 method_not_allowed to %s %s, with Allow: %s", async (method, path, allow) => {
    const r = await app.visitor().request(path, { method });
    expectError(r, 405, "method_not_allowed");
    expect(r.headers.get("allow")).toBe(allow);
  });

  it.each([
    ["POST", "/COUNTER"],
    ["HEAD", "/counter/"],
    ["OPTIONS", "/Session-Destroy"],
    ["DELETE", "/memory-store-counter/"],
  ])("answers %s %s, no route in another spelling, with 404 as its GET gets, not a 405", async (method, path) => {
    const v = app.visitor();
    const r = await v.request(path, { method });
    expect({ status: r.status, allow: r.headers.get("allow") }).toEqual({ status: 404, allow: null });
    if (method !== "HEAD") expectError(r, 404, "not_found");
    expect((await v.request(path)).status).toBe(404);
  });

  it("answers 405 to a returning visitor's PUT and OPTIONS on /api/counter (the stored path passes them)", async () => {
    const v = app.visitor();
    expect((await v.increment()).status).toBe(200);
    for (const method of ["PUT", "OPTIONS"]) {
      const r = await v.request("/api/counter", { method });
      expectError(r, 405, "method_not_allowed");
      expect(r.headers.get("allow")).toBe("POST");
    }
  });

  it.each([
    ["invalid JSON", { body: "{by: 1" }, 400, "invalid_json"],
    ["a JSON string (strict JSON bodies are objects or arrays)", { body: '"1"' }, 400, "invalid_json"],
    ["an array", json([1]), 400, "invalid_body"],
    ["by = 0", json({ by: 0 }), 400, "invalid_body"],
    ["by = 1001", json({ by: 1001 }), 400, "invalid_body"],
    ["a fractional by", json({ by: 1.5 }), 400, "invalid_body"],
    ["by as a string", json({ by: "2" }), 400, "invalid_body"],
    ["an unknown field", json({ by: 1, extra: true }), 400, "invalid_body"],
    ["a body over 1 KiB", json({ by: 1, pad: "x".repeat(1100) }), 413, "body_too_large"],
    ["a text/plain body", { body: "by=1", headers: { "content-type": "text/plain" } }, 415, "unsupported_media_type"],
    [
      "a form body",
      { body: "by=1", headers: { "content-type": "application/x-www-form-urlencoded" } },
      415,
      "unsupported_media_type",
    ],
    [
      "a latin1 charset",
      { body: "{}", headers: { "content-type": "application/json; charset=latin1" } },
      415,
      "unsupported_encoding",
    ],
    [
      "a UTF-16 body (body-parser would decode it)",
      {
        body: Buffer.from('\ufeff{"by":3}', "utf16le"),
        headers: { "content-type": "application/json; charset=utf-16" },
      },
      415,
      "unsupported_encoding",
    ],
    [
      "a utf-16 charset and an empty body (Content-Length: 0), as a latin1 one gets",
      { body: "", headers: { "content-type": "application/json; charset=utf-16" } },
      415,
      "unsupported_encoding",
    ],
    [
      "a utf-32 charset",
      { body: "{}", headers: { "content-type": "application/json; charset=utf-32" } },
      415,
      "unsupported_encoding",
    ],
    [
      "an unknown Content-Encoding",
      { body: "{}", headers: { "content-encoding": "x-unknown" } },
      415,
      "unsupported_encoding",
    ],
    [
      "a gzip body that does not decompress",
      { body: "not gzip", headers: { "content-encoding": "gzip" } },
      400,
      "invalid_body",
    ],
    ["an Idempotency-Key with a space", { headers: { "Idempotency-Key": "a b" } }, 400, "invalid_idempotency_key"],
    [
      "an Idempotency-Key of 129 characters",
      { headers: { "Idempotency-Key": "k".repeat(129) } },
      400,
      "invalid_idempotency_key",
    ],
    ["an empty Idempotency-Key", { headers: { "Idempotency-Key": "" } }, 400, "invalid_idempotency_key"],
  ])("refuses POST /api/counter with %s, and stores nothing", async (_what, opts, status, error) => {
    const before = await storedCounts();
    const v = app.visitor();
    expectError(await v.post("/api/counter", opts), status, error);
    expect(v.cookie).toBeUndefined();
    expect(await storedCounts()).toBe(before);
  });

  it("answers 422 idempotency_key_reused when a key comes back with another amount, and applies nothing", async () => {
    const v = app.visitor();
    expect((await v.increment("reuse-1")).json?.count).toBe(1);
    expectError(await v.post("/api/counter", keyed("reuse-1", 2)), 422, "idempotency_key_reused");
    expect((await v.get("/api/session")).json?.count).toBe(1);
  });

  it.each([
    ["no body", {}],
    ["an empty object", json({})],
    ["an array", json(["ada"])],
    ["an empty name", json({ name: "" })],
    ["a name of spaces", json({ name: "   " })],
    ["a name of 65 characters", json({ name: "a".repeat(65) })],
    ["a control character", json({ name: "a\u0000da" })],
    ["a line separator inside it", json({ name: "a\u2028da" })],
    ["a number", json({ name: 7 })],
    ["an unknown field", json({ name: "ada", admin: true })],
  ])("refuses POST /api/login with %s (400 invalid_body) and logs no one in", async (_what, opts) => {
    const v = app.visitor();
    expectError(await v.post("/api/login", opts), 400, "invalid_body");
    expectError(await v.get("/api/me"), 401, "not_logged_in");
  });

  it("answers 401 not_logged_in on /api/me without a session, with one before login, and after logout", async () => {
    const v = app.visitor();
    expectError(await v.get("/api/me"), 401, "not_logged_in");
    expect((await v.increment()).status).toBe(200);
    expectError(await v.get("/api/me"), 401, "not_logged_in");
    expect((await v.post("/api/login", json({ name: "ada" }))).status).toBe(200);
    expect((await v.get("/api/me")).status).toBe(200);
    expect((await v.post("/api/logout")).json).toMatchObject({ loggedOut: true });
    expectError(await v.get("/api/me"), 401, "not_logged_in");
  });

  it.each([
    ["STORE=redis COUNTER=session", { COUNTER: "session" }],
    ["STORE=memory", { STORE: "memory" }],
  ])("answers 400 idempotency_unsupported to a keyed increment with %s (the seed's counter)", async (_what, env) => {
    await using seed = await startApp({ env, redis: app.redis });
    const v = seed.visitor();
    expectError(await v.increment("k1"), 400, "idempotency_unsupported");
    expect((await v.increment()).json?.count).toBe(1);
  });
});

describe("the one body guard: every state-changing /api route takes JSON of at most 1 KiB, or no body", () => {
  // Its own app without the new-session limit: every case below makes a session of its own.
  let guarded: TestApp;
  beforeAll(async () => {
    guarded = await startApp({ env: { NEW_SESSION_LIMIT: "0" }, redis: app.redis });
  });
  afterAll(() => guarded?.close());

  const typed = (type: string, body: string): RequestOptions => ({ body, headers: { "content-type": type } });
  const BODIES: [string, RequestOptions, number, string][] = [
    [
      "a 15 KB form",
      typed("application/x-www-form-urlencoded", `x=${"a".repeat(15 * 1024)}`),
      415,
      "unsupported_media_type",
    ],
    [
      "a multipart body",
      typed("multipart/form-data; boundary=b", '--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n'),
      415,
      "unsupported_media_type",
    ],
    ["a text/plain body", typed("text/plain", "{}"), 415, "unsupported_media_type"],
    ["JSON over 1 KiB", json({ pad: "x".repeat(2000) }), 413, "body_too_large"],
    ["an unknown JSON field", json({ admin: true }), 400, "invalid_body"],
  ];
  const ROUTES = [
    ["POST", "/api/logout"],
    ["POST", "/api/session"],
    ["DELETE", "/api/session"],
    ["POST", "/api/counter"], // a returning visitor's: the one-round-trip path
  ];
  const sessionKeys = async () => (await app.redis!.admin.keys("sess:*")).length;

  it.each(ROUTES.flatMap(([method, path]) => BODIES.map((b) => [method!, path!, ...b] as const)))(
    "refuses %s %s with %s, and the logged-in session keeps its user, count and cookie",
    async (method, path, _what, opts, status, error) => {
      const v = guarded.visitor();
      expect((await v.post("/api/login", json({ name: "ada" }))).status).toBe(200);
      expect((await v.increment()).json?.count).toBe(1);
      const cookie = v.cookie;
      const r = await v.request(path, { ...opts, method });
      expectError(r, status, error);
      expect(r.headers.getSetCookie()).toEqual([]);
      expect(v.cookie).toBe(cookie);
      expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "ada" }, count: 1 });
    },
  );

  it.each(BODIES)("refuses a new visitor's POST /api/session with %s, and stores no session", async (...c) => {
    const [, opts, status, error] = c;
    const before = await sessionKeys();
    const v = guarded.visitor();
    expectError(await v.post("/api/session", opts), status, error);
    expect(v.cookie).toBeUndefined();
    expect(await sessionKeys()).toBe(before);
  });

  it("still takes no body, an empty one, or {} on the routes that need none", async () => {
    const v = guarded.visitor();
    expect((await v.post("/api/session", json({}))).status).toBe(201);
    expect((await v.post("/api/session")).status).toBe(200);
    expect((await v.post("/api/logout", json({}))).json).toMatchObject({ loggedOut: true });
    expect((await v.post("/api/session", typed("application/json", ""))).status).toBe(201);
    expect((await v.request("/api/session", { method: "DELETE", ...json({}) })).json).toMatchObject({
      destroyed: true,
    });
  });

  it("guards a path no route answers yet the same way (a route added later is covered)", async () => {
    const v = guarded.visitor();
    expectError(await v.post("/api/nope", BODIES[0]![1]), 415, "unsupported_media_type");
    expectError(await v.request("/api/later", { method: "PATCH", ...BODIES[3]![1] }), 413, "body_too_large");
    expectError(await v.post("/api/nope"), 404, "not_found");
  });

  it("leaves GET routes alone, the page and the tutorial's included, whatever body they carry", async () => {
    const v = guarded.visitor();
    const form = BODIES[0]![1];
    expect((await v.get("/counter", form)).text).toBe("count is 1");
    expect((await v.get("/redis-store-counter", typed("text/plain", "x"))).text).toBe("count is 2");
    const page = await v.get("/", form);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect((await v.get("/api/session", form)).json?.count).toBe(2);
    expect((await v.get("/session-destroy", form)).text).toBe("session destroyed");
  });
});

describe("login", () => {
  it("gives the session a new id, carries the count over, and leaves the old cookie an empty session", async () => {
    const v = app.visitor();
    await v.increment();
    await v.post("/api/counter", json({ by: 4 }));
    const before = await v.get("/api/session");
    expect(before.json?.count).toBe(5);
    const oldCookie = v.cookie!;

    const login = await v.post("/api/login", json({ name: " Ada " }));
    expect(login.status).toBe(200);
    expect(login.json).toMatchObject({ user: { name: "Ada" }, count: 5 });
    expect(login.headers.getSetCookie()).toHaveLength(1);
    expect(v.cookie).toBeDefined();
    expect(v.cookie).not.toBe(oldCookie);
    expect(login.json?.session).not.toBe(before.json?.session);

    const me = await v.get("/api/me");
    expect(me.json).toMatchObject({ user: { name: "Ada" }, count: 5, session: login.json?.session });
    expect(me.json?.user).toHaveProperty("loginAt");
    expect((await v.increment()).json?.count).toBe(6);

    // The old cookie (one an attacker could have planted before the login) names nothing now.
    const old = app.visitor(oldCookie);
    expect((await old.get("/api/session")).json).toMatchObject({ count: 0, session: null });
    expectError(await old.get("/api/me"), 401, "not_logged_in");
    expect(
      await app.redis!.admin.exists(`{sess:${sessionIdOf(oldCookie)}}:idem`, `sess:${sessionIdOf(oldCookie)}`),
    ).toBe(0);
    // The logged-in session is unharmed by the old cookie's requests.
    expect((await v.get("/api/me")).json?.count).toBe(6);
  });

  it("logs in a visitor who had no session yet, with a count of 0", async () => {
    const v = app.visitor();
    const r = await v.post("/api/login", json({ name: "grace" }));
    expect(r.json).toMatchObject({ user: { name: "grace" }, count: 0 });
    expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "grace" }, count: 0 });
  });
});

describe("exactly-once increments with an Idempotency-Key", () => {
  it("applies a key once and replays its answer, on the first request and on a returning visitor's", async () => {
    const v = app.visitor();
    const first = await v.increment("once-1");
    expect(first.json?.count).toBe(1);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    const again = await v.increment("once-1");
    expect(again.status).toBe(200);
    expect(again.json).toEqual(first.json);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    // The structured-field form of the same key is the same key.
    expect((await v.increment('"once-1"')).headers.get("idempotent-replayed")).toBe("true");
    expect((await v.get("/api/session")).json?.count).toBe(1);
  });

  it("replays each key with the count it produced, however keys interleave", async () => {
    const v = app.visitor();
    expect((await v.increment("a")).json?.count).toBe(1);
    expect((await v.post("/api/counter", keyed("b", 5))).json?.count).toBe(6);
    expect((await v.increment()).json?.count).toBe(7);
    expect((await v.increment("a")).json?.count).toBe(1);
    expect((await v.post("/api/counter", keyed("b", 5))).json?.count).toBe(6);
    expect((await v.get("/api/session")).json?.count).toBe(7);
  });

  it("scopes keys to the session: another visitor's same key is a new increment", async () => {
    const a = app.visitor();
    const b = app.visitor();
    await a.increment("shared");
    await a.increment("shared");
    const r = await b.increment("shared");
    expect(r.json?.count).toBe(1);
    expect(r.headers.get("idempotent-replayed")).toBeNull();
  });

  it("applies a key once when ten copies arrive at the same time", async () => {
    const v = app.visitor();
    await v.startSession();
    const replies = await Promise.all(Array.from({ length: 10 }, () => v.increment("burst")));
    expect(replies.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(new Set(replies.map((r) => r.json?.count))).toEqual(new Set([1]));
    expect(replies.filter((r) => r.headers.get("idempotent-replayed") === "true")).toHaveLength(9);
    expect((await v.get("/api/session")).json?.count).toBe(1);
  });
});

describe("a Redis outage", () => {
  it("answers 503 store_unavailable with Retry-After while Redis is down, and serves again once back", async () => {
    await using own = await startApp();
    const v = own.visitor();
    expect((await v.increment("before")).json?.count).toBe(1);
    await own.redis!.down();
    const r = await v.increment("during");
    expect(r.status).toBe(503);
    expect(["store_unavailable", "store_timeout"]).toContain(r.json?.error);
    expect(r.headers.get("retry-after")).toBe("1");
    await own.redis!.up();
    // The restarted Redis is empty: the old session is gone and a new one starts.
    await waitFor("the app to serve again", async () => (await own.visitor().increment()).status === 200, 15_000, 100);
    expect((await v.increment("after")).json?.count).toBe(1);
  });
});
