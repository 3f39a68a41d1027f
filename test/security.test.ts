// The README's "Sessions and security" checklist, one test per item, each through nginx
// against real redis-server, nginx and Node replicas (LocalCluster).
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { appLogLines, type AppLogLine } from "./app-logs.ts";
import { rawRequest } from "./raw-http.ts";
import { waitFor } from "../infra/cluster/wait.ts";
import { Visitor, type Reply, type RequestOptions } from "../loadtest/client/visitor.ts";
import { sessionLabel, sessionSerializer } from "../services/app/src/session.ts";
import { sessionIdOf } from "./session-cookie.ts";

const newDir = (name: string) => mkdtempSync(join(tmpdir(), `security-${name}-`));
const jsonBody = (value: unknown): RequestOptions => ({
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify(value),
});

/** Every session id any visitor in this file was given: none may appear in any log. */
const issuedIds = new Set<string>();

/** True when the cookie's signature is `secret`'s (cookie-signature, as express-session signs). */
function signedWith(cookie: string | undefined, secret: string): boolean {
  const value = decodeURIComponent(cookie!.slice(cookie!.indexOf("=") + 1));
  const id = value.slice(2, value.lastIndexOf("."));
  return (
    value.slice(value.lastIndexOf(".") + 1) ===
    createHmac("sha256", secret).update(id).digest("base64").replace(/=+$/, "")
  );
}

/** A Visitor that remembers every session id it is given. */
class TrackedVisitor extends Visitor {
  override async request(path: string, opts: RequestOptions = {}): Promise<Reply> {
    const reply = await super.request(path, opts);
    if (this.cookie?.startsWith("sid=s%3A")) issuedIds.add(sessionIdOf(this.cookie));
    return reply;
  }
}

type LogLine = AppLogLine;

async function logLine(cluster: LocalCluster, match: (l: LogLine) => boolean): Promise<LogLine> {
  let found: LogLine | undefined;
  await waitFor("the log line", () => (found = appLogLines(cluster).find(match)) !== undefined, 5000);
  return found!;
}

function isJsonError(contentType: string, text: string): boolean {
  try {
    return (
      contentType.startsWith("application/json") && typeof (JSON.parse(text) as { error?: unknown }).error === "string"
    );
  } catch {
    return false;
  }
}

/** The count stored inside the session's value (the one key a session has; undefined: none). */
const storedCount = async (cluster: LocalCluster, id: string) => {
  const text = await cluster.redisCommand("GET", `sess:${id}`);
  return text === "" ? undefined : sessionSerializer.parse(text).count;
};
const redisExists = async (cluster: LocalCluster, ...keys: string[]) =>
  Number(await cluster.redisCommand("EXISTS", ...keys));
const dbsize = async (cluster: LocalCluster) => Number(await cluster.redisCommand("DBSIZE"));

describe("sessions and security, through nginx (local processes, 3 replicas)", () => {
  let cluster: LocalCluster;
  let base: string;
  beforeAll(async () => {
    // The fuzz and the cases make far more sessions from 127.0.0.1 than NEW_SESSION_LIMIT allows
    // (test/security-sessions.test.ts tests the limit).
    cluster = LocalCluster.create({ dir: newDir("main"), replicas: 3, appEnv: { NEW_SESSION_LIMIT: "0" } });
    await cluster.start();
    base = cluster.baseUrl();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("issues a host-only, HttpOnly, SameSite=Lax browser-session cookie sid, and Cache-Control: no-store", async () => {
    const v = new TrackedVisitor(base);
    const r = await v.increment();
    const [setCookie] = r.headers.getSetCookie();
    expect(setCookie).toMatch(/^sid=s%3A[\w-]{32}\./);
    // No Domain (host-only), no Expires/Max-Age (gone with the browser; the server-side
    // lifetimes are the Redis TTL and the absolute timeout), no Secure over plain HTTP.
    const attributes = setCookie!
      .split(";")
      .slice(1)
      .map((a) => a.trim().toLowerCase())
      .sort();
    expect(attributes).toEqual(["httponly", "path=/", "samesite=lax"]);
    expect(r.headers.get("cache-control")).toBe("no-store");
  });

  it("replaces the session id on login: old id gone from Redis, count moved, a planted old id: nothing", async () => {
    const victim = new TrackedVisitor(base);
    for (let i = 0; i < 3; i++) await victim.increment();
    const planted = victim.cookie!; // what an attacker who fixed this id in the victim's browser holds
    const oldId = sessionIdOf(planted);
    expect(await redisExists(cluster, `sess:${oldId}`)).toBe(1);
    expect(await storedCount(cluster, oldId)).toBe(3);

    const login = await victim.post("/api/login", jsonBody({ name: "ada" }));
    expect(login.status).toBe(200);
    expect(login.json).toMatchObject({ user: { name: "ada" }, count: 3 });
    expect(login.headers.get("cache-control")).toBe("no-store");
    const newId = sessionIdOf(victim.cookie);
    expect(newId).not.toBe(oldId);
    expect(await redisExists(cluster, `sess:${oldId}`)).toBe(0);
    expect(await storedCount(cluster, newId)).toBe(3);

    const attacker = new TrackedVisitor(base, planted);
    const me = await attacker.get("/api/me");
    expect(me.status).toBe(401);
    expect(me.json?.error).toBe("not_logged_in");
    expect((await attacker.get("/api/session")).json?.count).toBe(0);

    expect((await victim.increment()).json?.count).toBe(4);
    expect((await victim.get("/api/me")).json).toMatchObject({ user: { name: "ada" }, count: 4 });
  });

  it("moves every increment acknowledged on the old id to the new one when increments race the login", async () => {
    const v = new TrackedVisitor(base);
    await v.increment();
    const oldCookie = v.cookie!;
    const oldLabel = sessionLabel(sessionIdOf(oldCookie));
    const racing = Promise.all(Array.from({ length: 40 }, () => new Visitor(base, oldCookie).increment()));
    await sleep(10);
    expect((await v.post("/api/login", jsonBody({ name: "racer" }))).status).toBe(200);
    const replies = await racing;
    // Each racer either counted on the old session before the move (carried over), found it
    // moved mid-request (409 session_expired, nothing applied), or came after with the replaced
    // cookie (409 session_replaced: a new session's Set-Cookie would log the user out).
    const carried = replies.filter((r) => r.status === 200 && r.json?.session === oldLabel).length;
    const moved = replies.filter((r) => r.status === 409 && r.json?.error === "session_expired").length;
    const replaced = replies.filter(
      (r) => r.status === 409 && r.json?.error === "session_replaced" && r.headers.getSetCookie().length === 0,
    ).length;
    console.log(`login race: ${carried} carried, ${moved} moved mid-request (409), ${replaced} after the login (409)`);
    expect(carried + moved + replaced).toBe(replies.length);
    expect(await storedCount(cluster, sessionIdOf(v.cookie))).toBe(1 + carried);
    expect((await v.get("/api/me")).json?.count).toBe(1 + carried);
  });

  it("keeps counting a session whose JSON Redis's Lua cannot decode (a name with a lone surrogate)", async () => {
    const v = new TrackedVisitor(base);
    expect((await v.increment()).json?.count).toBe(1);
    // Valid JSON for Node, refused by Redis's cjson: the one-round-trip path must hand the
    // request on, and the full path must not ask Redis to decode it again.
    const login = await v.post("/api/login", {
      headers: { "Content-Type": "application/json" },
      body: '{"name":"ada\\ud800"}',
    });
    expect(login.status).toBe(200);
    for (const n of [2, 3, 4]) expect((await v.increment(randomUUID())).json?.count).toBe(n);
  });

  it("answers OPTIONS and other methods on the counter routes with the route's JSON 405, session or not", async () => {
    const v = new TrackedVisitor(base);
    await v.increment();
    for (const visitor of [v, new TrackedVisitor(base)]) {
      for (const [path, allow] of [
        ["/api/counter", "POST"],
        ["/counter", "GET"],
      ] as const) {
        for (const method of ["OPTIONS", "PUT"]) {
          const r = await visitor.request(path, { method });
          expect(r.status, `${method} ${path}`).toBe(405);
          expect(r.headers.get("allow")).toBe(allow);
          expect(r.json?.error).toBe("method_not_allowed");
        }
      }
    }
    expect((await v.increment()).json?.count).toBe(2);
  });

  it("starts a logged-in session at count 0 when logging in without a session", async () => {
    const v = new TrackedVisitor(base);
    const login = await v.post("/api/login", jsonBody({ name: "  Grace Hopper " }));
    expect(login.json).toMatchObject({ user: { name: "Grace Hopper" }, count: 0 });
    expect((await v.increment()).json?.count).toBe(1);
  });

  it("destroys the session in Redis on logout, clears the cookie; a replayed old cookie gets a new one", async () => {
    const v = new TrackedVisitor(base);
    await v.post("/api/login", jsonBody({ name: "lin" }));
    await v.increment();
    await v.increment();
    const saved = v.cookie!;
    const id = sessionIdOf(saved);

    const out = await v.post("/api/logout");
    expect(out.status).toBe(200);
    expect(out.json).toMatchObject({ loggedOut: true });
    expect(out.headers.get("cache-control")).toBe("no-store");
    expect(out.headers.getSetCookie()[0]).toMatch(
      /^sid=; Path=\/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax$/,
    );
    expect(v.cookie).toBeUndefined();
    expect(await redisExists(cluster, `sess:${id}`, `{sess:${id}}:idem`)).toBe(0);

    const replay = new TrackedVisitor(base, saved);
    expect((await replay.get("/api/me")).status).toBe(401);
    const r = await replay.increment();
    expect(r.json?.count).toBe(1);
    expect(sessionIdOf(replay.cookie)).not.toBe(id);
  });

  it("ignores a forged X-Forwarded-Proto: over plain HTTP through nginx the cookie is never Secure", async () => {
    const forged: Record<string, string>[] = [
      { "X-Forwarded-Proto": "https" },
      { "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "bank.example" },
      { Forwarded: "for=203.0.113.9;proto=https" },
    ];
    for (const headers of forged) {
      const r = await new TrackedVisitor(base).increment(undefined, { headers });
      expect(r.status).toBe(200);
      expect(r.headers.getSetCookie()[0]).not.toMatch(/;\s*secure/i);
    }
    // The control: a replica does trust its one proxy hop, so what nginx sends for a request
    // that came over HTTPS ($scheme = https) gets a Secure cookie.
    const [replica] = await cluster.replicas();
    const direct = await new TrackedVisitor(replica!.url).increment(undefined, {
      headers: { "X-Forwarded-Proto": "https" },
    });
    expect(direct.headers.getSetCookie()[0]).toMatch(/;\s*Secure/);
  });

  it("ignores a session id in the query string", async () => {
    const victim = new TrackedVisitor(base);
    for (let i = 0; i < 5; i++) await victim.increment();
    const id = sessionIdOf(victim.cookie);
    const signed = victim.cookie!.slice("sid=".length);
    for (const query of [`sid=${id}`, `sid=${signed}`, `connect.sid=${signed}`, `sessionID=${id}`]) {
      const other = new TrackedVisitor(base);
      const r = await other.post(`/api/counter?${query}`);
      expect(r.status).toBe(200);
      expect(r.json?.count).toBe(1);
      expect(r.json?.session).not.toBe(sessionLabel(id));
    }
    expect((await victim.get("/api/session")).json?.count).toBe(5);
  });

  it("logs a tampered, unsigned or unknown session cookie at warn with the id's hash; uses a new session", async () => {
    const v = new TrackedVisitor(base);
    await v.increment();
    const id = sessionIdOf(v.cookie);
    const signed = decodeURIComponent(v.cookie!.slice("sid=".length)); // s:<id>.<signature>
    const gone = new TrackedVisitor(base);
    await gone.increment();
    const goneCookie = gone.cookie!;
    await gone.post("/api/logout");

    const cases = [
      {
        reason: "bad_signature",
        cookie: `sid=${encodeURIComponent(signed.slice(0, -1) + (signed.endsWith("A") ? "B" : "A"))}`,
        id,
      },
      { reason: "unsigned", cookie: `sid=${id}`, id },
      { reason: "unknown", cookie: goneCookie, id: sessionIdOf(goneCookie) },
    ];
    for (const c of cases) {
      const r = await new TrackedVisitor(base, c.cookie).increment();
      expect(r.status).toBe(200);
      expect(r.json?.count).toBe(1);
      const line = await logLine(cluster, (l) => l.event === "session_cookie_rejected" && l.req?.id === r.requestId);
      expect(line).toMatchObject({ level: 40, reason: c.reason, cookie: sessionLabel(c.id) });
      expect(JSON.stringify(line)).not.toContain(c.id);
    }
    expect((await v.increment()).json?.count).toBe(2);
  });

  describe("bad input: a clear 4xx JSON error, and nothing stored changes", () => {
    const big = (n: number) => "x".repeat(n);
    type Case = {
      name: string;
      method: string;
      path: string;
      headers?: Record<string, string>;
      body?: BodyInit;
      status: number;
      error: string;
      allow?: string;
    };
    const json = { "Content-Type": "application/json" };
    const cases: Case[] = [
      {
        name: "malformed JSON",
        method: "POST",
        path: "/api/counter",
        headers: json,
        body: '{"by":',
        status: 400,
        error: "invalid_json",
      },
      {
        name: "JSON that is not an object",
        method: "POST",
        path: "/api/counter",
        headers: json,
        body: "[1,2]",
        status: 400,
        error: "invalid_body",
      },
      {
        name: "an unknown field",
        method: "POST",
        path: "/api/counter",
        headers: json,
        body: '{"by":1,"admin":true}',
        status: 400,
        error: "invalid_body",
      },
      {
        name: "a count step out of range",
        method: "POST",
        path: "/api/counter",
        headers: json,
        body: '{"by":1001}',
        status: 400,
        error: "invalid_body",
      },
      {
        name: "a count step that is a string",
        method: "POST",
        path: "/api/counter",
        headers: json,
        body: '{"by":"1"}',
        status: 400,
        error: "invalid_body",
      },
      {
        name: "a text/plain body",
        method: "POST",
        path: "/api/counter",
        headers: { "Content-Type": "text/plain" },
        body: "by=1",
        status: 415,
        error: "unsupported_media_type",
      },
      {
        name: "a form post",
        method: "POST",
        path: "/api/counter",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: "by=1",
        status: 415,
        error: "unsupported_media_type",
      },
      {
        name: "a body without Content-Type",
        method: "POST",
        path: "/api/counter",
        body: new TextEncoder().encode('{"by":1}'),
        status: 415,
        error: "unsupported_media_type",
      },
      {
        name: "a charset other than UTF-8",
        method: "POST",
        path: "/api/counter",
        headers: { "Content-Type": "application/json; charset=latin1" },
        body: '{"by":1}',
        status: 415,
        error: "unsupported_encoding",
      },
      {
        name: "a gzip body that does not decompress",
        method: "POST",
        path: "/api/counter",
        headers: { ...json, "Content-Encoding": "gzip" },
        body: "not gzip",
        status: 400,
        error: "invalid_body",
      },
      {
        name: "a body over the API's 1 KiB",
        method: "POST",
        path: "/api/counter",
        headers: json,
        body: JSON.stringify({ by: 1, pad: big(2000) }),
        status: 413,
        error: "body_too_large",
      },
      {
        name: "a body over nginx's 16 KiB",
        method: "POST",
        path: "/api/counter",
        headers: json,
        body: JSON.stringify({ by: 1, pad: big(20_000) }),
        status: 413,
        error: "body_too_large",
      },
      {
        name: "an overlong Idempotency-Key",
        method: "POST",
        path: "/api/counter",
        headers: { "Idempotency-Key": big(129) },
        status: 400,
        error: "invalid_idempotency_key",
      },
      {
        name: "a malformed Idempotency-Key",
        method: "POST",
        path: "/api/counter",
        headers: { "Idempotency-Key": "two words" },
        status: 400,
        error: "invalid_idempotency_key",
      },
      {
        name: "an empty Idempotency-Key",
        method: "POST",
        path: "/api/counter",
        headers: { "Idempotency-Key": "" },
        status: 400,
        error: "invalid_idempotency_key",
      },
      { name: "a login without a body", method: "POST", path: "/api/login", status: 400, error: "invalid_body" },
      {
        name: "a login with an empty name",
        method: "POST",
        path: "/api/login",
        headers: json,
        body: '{"name":"   "}',
        status: 400,
        error: "invalid_body",
      },
      {
        name: "a login with a 65-character name",
        method: "POST",
        path: "/api/login",
        headers: json,
        body: JSON.stringify({ name: big(65) }),
        status: 400,
        error: "invalid_body",
      },
      {
        name: "a login name with a control character",
        method: "POST",
        path: "/api/login",
        headers: json,
        body: '{"name":"ada\\u001b[31m"}',
        status: 400,
        error: "invalid_body",
      },
      {
        name: "a login as a form post (login CSRF)",
        method: "POST",
        path: "/api/login",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: "name=mallory",
        status: 415,
        error: "unsupported_media_type",
      },
      { name: "an unknown route", method: "GET", path: "/nope", status: 404, error: "not_found" },
      { name: "an unknown API route", method: "POST", path: "/api/nope", status: 404, error: "not_found" },
      { name: "/metrics through nginx", method: "GET", path: "/metrics", status: 404, error: "not_found" },
      {
        name: "PUT on the counter",
        method: "PUT",
        path: "/api/counter",
        status: 405,
        error: "method_not_allowed",
        allow: "POST",
      },
      {
        name: "GET on login",
        method: "GET",
        path: "/api/login",
        status: 405,
        error: "method_not_allowed",
        allow: "POST",
      },
      {
        name: "DELETE on me",
        method: "DELETE",
        path: "/api/me",
        status: 405,
        error: "method_not_allowed",
        allow: "GET, HEAD",
      },
      {
        name: "PATCH on the session",
        method: "PATCH",
        path: "/api/session",
        status: 405,
        error: "method_not_allowed",
        allow: "GET, HEAD, POST, DELETE",
      },
      {
        name: "a header line over 8 KiB",
        method: "GET",
        path: "/api/session",
        headers: { "X-Padding": big(9000) },
        status: 431,
        error: "headers_too_large",
      },
      {
        name: "a Cookie header over 8 KiB",
        method: "GET",
        path: "/api/session",
        headers: { Cookie: `pad=${big(9000)}` },
        status: 431,
        error: "headers_too_large",
      },
    ];

    let owner: TrackedVisitor;
    beforeAll(async () => {
      owner = new TrackedVisitor(base);
      await owner.increment();
    });

    async function send(c: Case, cookie: string | undefined) {
      const headers: Record<string, string> = { ...(cookie ? { Cookie: cookie } : {}), ...c.headers };
      const res = await fetch(base + c.path, {
        method: c.method,
        headers,
        body: c.body,
        signal: AbortSignal.timeout(5000),
      });
      return { status: res.status, headers: res.headers, text: await res.text() };
    }

    it.each(cases)("answers $name with $status $error", async (c) => {
      const before = { keys: await dbsize(cluster), count: (await owner.get("/api/session")).json?.count };
      // Once on the owner's session, once as a new visitor.
      for (const cookie of [owner.cookie, undefined]) {
        const r = await send(c, cookie);
        expect(r.status).toBe(c.status);
        expect(r.headers.get("content-type")).toMatch(/^application\/json/);
        const body = JSON.parse(r.text) as { error: string; message: string };
        expect(body.error).toBe(c.error);
        expect(body.message.length).toBeGreaterThan(10);
        if (c.allow) expect(r.headers.get("allow")).toBe(c.allow);
        expect(r.headers.getSetCookie()).toEqual([]);
      }
      expect(await dbsize(cluster)).toBe(before.keys);
      expect((await owner.get("/api/session")).json?.count).toBe(before.count);
    });

    it("answers malformed HTTP with a JSON error: nginx's, or the replica's where only Node refuses", async () => {
      const port = Number(new URL(base).port);
      const raw = [
        { text: "GARBAGE\r\n\r\n", status: 400, error: "bad_request" },
        { text: "GET /api/session HTTP/1.1\r\n\r\n", status: 400, error: "bad_request" },
        {
          text: "GET /api/session HTTP/1.1\r\nHost: x\r\nContent-Length: twelve\r\nConnection: close\r\n\r\n",
          status: 400,
          error: "bad_request",
        },
        { text: "GET /%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", status: 400, error: "bad_request" },
        { text: "TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", status: 405, error: "method_not_allowed" },
        {
          text: "PROPFIND /api/session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
          status: 405,
          error: "method_not_allowed",
        },
        {
          text: "FOO /api/counter HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
          status: 405,
          error: "method_not_allowed",
        },
        // nginx passes a DEL byte in a header value on; the replica's parser refuses it.
        {
          text: "GET /api/session HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\nConnection: close\r\n\r\n",
          status: 400,
          error: "bad_request",
        },
        {
          text:
            `GET /api/session HTTP/1.1\r\nHost: x\r\nConnection: ` +
            `close\r\n${Array.from({ length: 5 }, (_, i) => `X-Pad-${i}: ${big(7500)}\r\n`).join("")}\r\n`,
          status: 431,
          error: "headers_too_large",
        },
        {
          text: "GET / HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n",
          status: 505,
          error: "http_version_not_supported",
        },
      ];
      const keys = await dbsize(cluster);
      for (const c of raw) {
        const r = await rawRequest(port, c.text);
        expect({ request: c.text.slice(0, 40), status: r.status }).toEqual({
          request: c.text.slice(0, 40),
          status: c.status,
        });
        expect(r.headers).toMatch(/\r\nContent-Type: application\/json/);
        expect((JSON.parse(r.body) as { error: string }).error).toBe(c.error);
        if (c.status === 405) expect(r.headers).toMatch(/\r\nAllow: GET, HEAD, POST, DELETE\r\n/);
      }
      expect(await dbsize(cluster)).toBe(keys);
    });
  });

  it("survives a bounded fuzz of methods, paths, headers, cookies, bodies: no 5xx, JSON errors, all up", async () => {
    // A small seeded generator, so a failure can be replayed with the printed seed.
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    let state = seed;
    // mulberry32
    const rnd = () => {
      state = (state + 0x6d2b79f5) | 0;
      let t = Math.imul(state ^ (state >>> 15), 1 | state);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
    };
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const printable = (n: number) =>
      Array.from({ length: n }, () => String.fromCharCode(32 + Math.floor(rnd() * 95))).join("");

    const owner = new TrackedVisitor(base);
    await owner.increment();
    const valid = owner.cookie!;
    const methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"];
    const paths = [
      "/",
      "/counter",
      "/session-destroy",
      "/api/counter",
      "/api/session",
      "/api/login",
      "/api/logout",
      "/api/me",
      "/healthz",
      "/readyz",
      "/metrics",
      "/nginx-health",
      "/_keyed/api/counter",
      "/_errors/400",
      "/api",
      "/API/COUNTER",
    ];
    // Most requests hit a real route, so the headers and bodies reach a handler.
    const suffixes = () =>
      rnd() < 0.6
        ? ""
        : pick([
            "/",
            "/x",
            `?sid=${encodeURIComponent(printable(10))}`,
            "/%2e%2e/%2e%2e/etc/passwd",
            "/%ZZ",
            "//",
            `/${encodeURIComponent(printable(20))}`,
            `/${"a".repeat(Math.floor(rnd() * 3000))}`,
          ]);
    const cookies = () =>
      pick([
        undefined,
        valid,
        `${valid.slice(0, -2)}xx`,
        "sid=garbage",
        `sid=s%3A${printable(5)}`,
        `sid=${encodeURIComponent(printable(40))}; other=1`,
        `a=1; sid=; sid=${encodeURIComponent(printable(8))}`,
        `sid=${"s".repeat(Math.floor(rnd() * 6000))}`,
      ]);
    const types = [
      "application/json",
      "application/json; charset=utf-8",
      "application/json; charset=latin1",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "",
      "garbage/",
      printable(12),
    ];
    const bodies = () =>
      pick<BodyInit | undefined>([
        undefined,
        "",
        '{"by":1}',
        `{"by":${Math.floor(rnd() * 3000) - 1000}}`,
        `{"name":${JSON.stringify(printable(Math.floor(rnd() * 80)))}}`,
        "null",
        "[]",
        '"str"',
        "{",
        "[".repeat(500),
        JSON.stringify({ by: 1, pad: "x".repeat(Math.floor(rnd() * 20_000)) }),
        Uint8Array.from({ length: Math.floor(rnd() * 2000) }, () => Math.floor(rnd() * 256)),
      ]);
    const optionalHeaders: [string, () => string][] = [
      ["Content-Type", () => pick(types)],
      [
        "Idempotency-Key",
        () =>
          pick([
            "k-" + Math.floor(rnd() * 1e9),
            "",
            printable(Math.floor(rnd() * 200)),
            '"quoted-key"',
            "a".repeat(129),
          ]),
      ],
      ["Content-Encoding", () => pick(["gzip", "deflate", "br", "identity", "compress", printable(6)])],
      ["X-Forwarded-Proto", () => pick(["https", "http", "ftp", printable(10)])],
      ["X-Forwarded-For", () => pick(["203.0.113.1", "1.1.1.1, 2.2.2.2", printable(30)])],
      ["X-Request-ID", () => pick(["", printable(300), "abc"])],
      ["Accept", () => pick(["application/json", "*/*", printable(20)])],
      ["Origin", () => pick(["https://evil.example", "null"])],
      [`X-${Math.floor(rnd() * 1000)}`, () => printable(Math.floor(rnd() * 2000))],
    ];

    const failures: string[] = [];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 400; i++) {
      const method = pick(methods);
      const path = pick(paths) + suffixes();
      const headers: Record<string, string> = {};
      const cookie = cookies();
      if (cookie !== undefined) headers.Cookie = cookie;
      for (const [name, value] of optionalHeaders) if (rnd() < 0.3) headers[name] = value();
      const body = method === "GET" || method === "HEAD" ? undefined : bodies();
      let status: number;
      let text: string;
      let type: string;
      try {
        const res = await fetch(base + path, { method, headers, body, signal: AbortSignal.timeout(5000) });
        status = res.status;
        type = res.headers.get("content-type") ?? "";
        text = await res.text();
      } catch (err) {
        failures.push(`#${i} ${method} ${path.slice(0, 80)}: ${(err as Error).message}`);
        continue;
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      const what =
        `#${i} ${method} ${path.slice(0, 80)} (${Object.keys(headers).join(",")}) -> ${status} ` +
        `${text.slice(0, 120)}`;
      if (status >= 500) failures.push(what);
      else if (status >= 400 && method !== "HEAD" && !isJsonError(type, text))
        failures.push(`not a JSON error: ${what}`);
    }
    console.log(`fuzz seed ${seed}: statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
    expect(failures, `seed ${seed}\n${failures.length > 0 ? await cluster.logs(15) : ""}`).toEqual([]);

    for (const r of await cluster.replicas()) {
      expect(r.running).toBe(true);
      expect((await fetch(`${r.opsUrl}/readyz`)).status).toBe(200);
    }
    expect(appLogLines(cluster).filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
    // The fuzz may have logged the owner out (its cookie went to /api/logout too); a fresh
    // visitor still counts from 1 without gaps.
    const after = new TrackedVisitor(base);
    for (let i = 1; i <= 3; i++) expect((await after.increment()).json?.count).toBe(i);
  });

  // Last in this describe: it reads every log line the tests above caused.
  it("never writes a session id to any log: not the replicas', not nginx's access or error log", async () => {
    expect(issuedIds.size).toBeGreaterThan(20);
    const dir = join(cluster.dir, "logs");
    const logs = readdirSync(dir).map((f) => ({ file: f, text: readFileSync(join(dir, f), "utf8") }));
    expect(logs.map((l) => l.file)).toEqual(expect.arrayContaining(["app-1.log", "nginx-access.log"]));
    const leaks = [...issuedIds].flatMap((id) =>
      logs.filter((l) => l.text.includes(id)).map((l) => `${l.file}: ${id}`),
    );
    expect(leaks).toEqual([]);
  });
});

describe("secrets and lifetimes (local processes, 2 replicas restarted with new config)", () => {
  const secretA = randomBytes(32).toString("base64url");
  const secretB = randomBytes(32).toString("base64url");
  let cluster: LocalCluster;
  let base: string;
  beforeAll(async () => {
    cluster = LocalCluster.create({ dir: newDir("lifetimes"), replicas: 2, appEnv: { SESSION_SECRETS: secretA } });
    await cluster.start();
    base = cluster.baseUrl();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("rotates secrets: a cookie signed with the old secret works while listed, is refused once removed", async () => {
    const old = new TrackedVisitor(base);
    await old.increment();
    expect(signedWith(old.cookie, secretA)).toBe(true);

    cluster.setAppEnv({ SESSION_SECRETS: `${secretB},${secretA}` });
    await cluster.restartReplicas();
    // Both replicas accept the old cookie (round-robin alternates them).
    expect((await old.increment()).json?.count).toBe(2);
    expect((await old.increment()).json?.count).toBe(3);
    const fresh = new TrackedVisitor(base);
    await fresh.increment();
    expect(signedWith(fresh.cookie, secretB)).toBe(true);

    cluster.setAppEnv({ SESSION_SECRETS: secretB });
    await cluster.restartReplicas();
    const oldId = sessionIdOf(old.cookie);
    const refused = await old.increment();
    expect(refused.json?.count).toBe(1);
    expect(signedWith(old.cookie, secretB)).toBe(true);
    const line = await logLine(
      cluster,
      (l) => l.event === "session_cookie_rejected" && l.req?.id === refused.requestId,
    );
    expect(line).toMatchObject({ reason: "bad_signature", cookie: sessionLabel(oldId) });
    expect((await fresh.increment()).json?.count).toBe(2);
  });

  describe("with SESSION_IDLE_TIMEOUT_SECONDS=2 and SESSION_ABSOLUTE_TIMEOUT_SECONDS=4", () => {
    beforeAll(async () => {
      cluster.setAppEnv({
        SESSION_SECRETS: secretB,
        SESSION_IDLE_TIMEOUT_SECONDS: "2",
        SESSION_ABSOLUTE_TIMEOUT_SECONDS: "4",
      });
      await cluster.restartReplicas();
    });

    it("expires an idle session through the Redis TTL", async () => {
      const v = new TrackedVisitor(base);
      await v.increment();
      await v.increment();
      const id = sessionIdOf(v.cookie);
      expect(Number(await cluster.redisCommand("TTL", `sess:${id}`))).toBeLessThanOrEqual(2);
      await waitFor(
        "Redis to expire the idle session",
        async () => (await redisExists(cluster, `sess:${id}`)) === 0,
        5000,
      );
      const r = await v.increment();
      expect(r.json?.count).toBe(1);
      expect(sessionIdOf(v.cookie)).not.toBe(id);
    });

    it("keeps the count alive through replays: a replayed key extends the session and its keys together", async () => {
      const v = new TrackedVisitor(base);
      const key = randomUUID();
      expect((await v.increment(key)).json?.count).toBe(1);
      const id = sessionIdOf(v.cookie);
      await sleep(1200);
      // Answered from the stored result, in the same Redis call that extends both TTLs.
      const replay = await v.increment(key);
      expect(replay.headers.get("idempotent-replayed")).toBe("true");
      expect(Number(await cluster.redisCommand("TTL", `sess:${id}`))).toBeGreaterThan(1);
      expect(Number(await cluster.redisCommand("TTL", `{sess:${id}}:idem`))).toBeGreaterThan(1);
      await sleep(1200); // past the first increment's 2 s TTL
      expect((await v.increment()).json?.count).toBe(2);
      expect(sessionIdOf(v.cookie)).toBe(id);
    });

    it("replaces an active session at the absolute timeout, though every request refreshed its idle TTL", async () => {
      const v = new TrackedVisitor(base);
      const t0 = Date.now();
      const seen: { ms: number; count: number; id: string }[] = [];
      while (Date.now() - t0 < 8000) {
        const r = await v.increment();
        expect(r.status).toBe(200);
        seen.push({ ms: Date.now() - t0, count: r.json?.count as number, id: sessionIdOf(v.cookie) });
        if (seen.length > 1 && r.json?.count === 1) break;
        await sleep(250);
      }
      const reset = seen.findIndex((s, i) => i > 0 && s.count === 1);
      expect(reset).toBeGreaterThan(0);
      // Every request before the reset continued the same session, past the 2 s idle timeout...
      expect(seen.slice(0, reset).map((s) => s.count)).toEqual(seen.slice(0, reset).map((_, i) => i + 1));
      expect(seen[reset - 1]!.ms).toBeGreaterThan(2500);
      // ...and the reset came no earlier than 4 s after the session was created.
      expect(seen[reset]!.ms).toBeGreaterThanOrEqual(4000);
      const oldId = seen[0]!.id;
      expect(seen[reset]!.id).not.toBe(oldId);
      expect(await redisExists(cluster, `sess:${oldId}`)).toBe(0);
      await logLine(cluster, (l) => l.event === "session_absolute_timeout" && l.session === sessionLabel(oldId));
    });
  });
});
