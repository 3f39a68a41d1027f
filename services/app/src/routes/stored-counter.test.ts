// The one-round-trip path for returning visitors must be invisible: two apps on one Redis, one
// with the path and one without (every request through express-session), get the same
// requests from two visitors with the same history and must give the same answers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Reply, RequestOptions, Visitor } from "../../../../loadtest/client/visitor.ts";
import { startApp, type TestApp } from "../../../../test/app-fixture.ts";
import { sessionIdOf } from "../../../../test/session-cookie.ts";
import { sessionLabel, sessionSerializer } from "../session.ts";

let fast: TestApp;
let full: TestApp;
beforeAll(async () => {
  fast = await startApp();
  full = await startApp({ redis: fast.redis, fastPath: false });
});
afterAll(async () => {
  await full?.close();
  await fast?.close();
});

/** The session id inside a "sid=s%3A<id>.<sig>" cookie pair. */
const HEADERS = [
  "content-type",
  "content-length",
  "cache-control",
  "idempotent-replayed",
  "allow",
  "x-replica",
  "retry-after",
];

/** What a client can observe of a reply; the visitor's own session label reads "<own>". */
function shape(r: Reply, v: Visitor) {
  const own = v.cookie ? sessionLabel(sessionIdOf(v.cookie)) : undefined;
  const body = r.json
    ? { ...r.json, ...(r.json.session !== undefined && r.json.session === own ? { session: "<own>" } : {}) }
    : r.text;
  return {
    status: r.status,
    headers: Object.fromEntries(HEADERS.map((h) => [h, r.headers.get(h)])),
    setCookie: r.headers.getSetCookie().length,
    body,
  };
}

/**
 * How many GETs Redis ran for `request`. The counter's script reads the session with one GET
 * (commandstats counts commands run inside scripts too); the full path's connect-redis reads it
 * with one more before that.
 */
async function getsFor(request: () => Promise<Reply>): Promise<number> {
  const admin = fast.redis!.admin;
  await admin.config("RESETSTAT");
  expect((await request()).status).toBe(200);
  return Number(/cmdstat_get:calls=(\d+)/.exec(await admin.info("commandstats"))?.[1] ?? 0);
}

describe("the one-round-trip path for returning visitors", () => {
  it("takes a returning visitor's increments (no session read before the script), not the full path", async () => {
    const a = fast.visitor();
    const b = full.visitor();
    await a.startSession();
    await b.startSession();
    expect(await getsFor(() => a.increment())).toBe(1);
    expect(await getsFor(() => a.get("/counter"))).toBe(1);
    expect(await getsFor(() => b.increment())).toBe(2);
    expect(await getsFor(() => b.get("/counter"))).toBe(2);
  });

  it("answers every request exactly as the full path does", async () => {
    const a = fast.visitor();
    const b = full.visitor();
    const steps: [string, string, RequestOptions][] = [
      ["start a session", "/api/session", { method: "POST" }],
      ["increment with no body", "/api/counter", { method: "POST" }],
      ["increment by 5", "/api/counter", { method: "POST", body: '{"by":5}' }],
      ["increment with {}", "/api/counter", { method: "POST", body: "{}" }],
      ["keyed increment", "/api/counter", { method: "POST", headers: { "Idempotency-Key": "k1" } }],
      ["replay", "/api/counter", { method: "POST", headers: { "Idempotency-Key": "k1" } }],
      ["replay, structured-field key", "/api/counter", { method: "POST", headers: { "Idempotency-Key": '"k1"' } }],
      [
        "key reused with another amount",
        "/api/counter",
        { method: "POST", body: '{"by":2}', headers: { "Idempotency-Key": "k1" } },
      ],
      ["bad key", "/api/counter", { method: "POST", headers: { "Idempotency-Key": "a b" } }],
      ["by = 0", "/api/counter", { method: "POST", body: '{"by":0}' }],
      ["by as a string", "/api/counter", { method: "POST", body: '{"by":"1"}' }],
      ["unknown field", "/api/counter", { method: "POST", body: '{"x":1}' }],
      ["invalid JSON", "/api/counter", { method: "POST", body: "{" }],
      ["body over 1 KiB", "/api/counter", { method: "POST", body: JSON.stringify({ pad: "x".repeat(1100) }) }],
      ["text/plain body", "/api/counter", { method: "POST", body: "1", headers: { "content-type": "text/plain" } }],
      [
        "gzip body that does not decompress",
        "/api/counter",
        { method: "POST", body: "{}", headers: { "content-encoding": "gzip" } },
      ],
      ["PUT", "/api/counter", { method: "PUT" }],
      ["OPTIONS", "/api/counter", { method: "OPTIONS" }],
      ["GET /counter", "/counter", { method: "GET" }],
      ["HEAD /counter", "/counter", { method: "HEAD" }],
      ["POST /counter", "/counter", { method: "POST" }],
      ["read the session", "/api/session", { method: "GET" }],
    ];
    for (const [what, path, opts] of steps) {
      const ra = await a.request(path, opts);
      const rb = await b.request(path, opts);
      expect(shape(ra, a), what).toEqual(shape(rb, b));
    }
    // 1 + 5 + 1 + 1 (keyed) + 1 (GET /counter); HEAD /counter is a 405 and counts nothing.
    expect((await a.get("/api/session")).json?.count).toBe(9);
    expect(sessionSerializer.parse((await fast.redis!.admin.get(`sess:${sessionIdOf(a.cookie)}`))!).count).toBe(9);
  });

  it("hands a session gone or past its absolute timeout to the full path: a new session, as there", async () => {
    const admin = fast.redis!.admin;
    for (const spoil of [
      (sid: string) => admin.del(`sess:${sid}`),
      // express-session's JSON with a createdAt older than SESSION_ABSOLUTE_TIMEOUT_SECONDS.
      (sid: string) => admin.set(`sess:${sid}`, JSON.stringify({ createdAt: 1 }), "KEEPTTL"),
      // The same, as this release's serializer writes it (createdAt as "c", the count last).
      (sid: string) => admin.set(`sess:${sid}`, JSON.stringify({ c: 1, n: 4 }), "KEEPTTL"),
    ]) {
      const a = fast.visitor();
      const b = full.visitor();
      await a.increment();
      await b.increment();
      const [oldA, oldB] = [a.cookie, b.cookie];
      await spoil(sessionIdOf(oldA));
      await spoil(sessionIdOf(oldB));
      const ra = await a.increment();
      const rb = await b.increment();
      expect(shape(ra, a)).toEqual(shape(rb, b));
      expect(ra.json?.count).toBe(1);
      expect(ra.headers.getSetCookie()).toHaveLength(1);
      expect(a.cookie).not.toBe(oldA);
    }
  });
});
