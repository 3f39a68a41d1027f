// The benchmark's visitors against a tiny cookie-issuing server: returning visitors must give
// exactly one session per connection, new visitors one per request.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import autocannon from "autocannon";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseIdempotencyKey } from "../../services/app/src/counter.ts";
import { setupClientFor, type BenchRequest } from "./visitors.ts";

// Gives a new `sid` to every request that does not bring a known one, and counts.
function sessionServer() {
  const seen = new Map<string, number>();
  const keys: string[] = [];
  let issued = 0;
  let withoutCookie = 0;
  const server: Server = createServer((req, res) => {
    const key = req.headers["idempotency-key"];
    if (typeof key === "string") keys.push(key);
    const sid = /(?:^|;\s*)sid=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];
    if (sid !== undefined && seen.has(sid)) {
      seen.set(sid, seen.get(sid)! + 1);
    } else {
      if (sid === undefined) withoutCookie++;
      const fresh = `s${++issued}`;
      seen.set(fresh, 1);
      res.setHeader("Set-Cookie", `sid=${fresh}; Path=/; HttpOnly`);
    }
    res.end("ok");
  });
  return { server, seen, keys, stats: () => ({ issued, withoutCookie }) };
}

const request: BenchRequest[] = [
  { method: "POST", path: "/api/counter", headers: { "content-type": "application/json" }, body: "{}" },
];

async function run(
  url: string,
  mode: "new" | "returning",
  connections: number,
  amount: number,
  uniqueKeys = false,
  reconnectRate?: number,
) {
  const setupClient = setupClientFor(mode, request, { uniqueKeys });
  return autocannon({
    url,
    connections,
    amount,
    requests: request,
    ...(setupClient ? { setupClient } : {}),
    ...(reconnectRate ? { reconnectRate } : {}),
  });
}

describe("benchmark visitors", { timeout: 30_000 }, () => {
  let s: ReturnType<typeof sessionServer>;
  let url: string;
  beforeAll(async () => {
    s = sessionServer();
    await new Promise<void>((r) => s.server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => s.server.close(() => r())));

  it("gives N returning-visitor connections exactly N sessions, each reused to the end", async () => {
    const before = s.stats().issued;
    const result = await run(url, "returning", 7, 7 * 30);
    expect(result.non2xx).toBe(0);
    expect(result.requests.total).toBe(210);
    const after = s.stats();
    expect(after.issued - before).toBe(7);
    // 7 first requests without a cookie, 203 with the one their connection got.
    const counts = [...s.seen.entries()].filter(([k]) => Number(k.slice(1)) > before).map(([, n]) => n);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(210);
  });

  it("sends a new Idempotency-Key the app accepts on every request, returning or new, across reconnects", async () => {
    for (const mode of ["returning", "new"] as const) {
      s.keys.length = 0;
      const before = s.stats().issued;
      // make bench reconnects every 900 requests; autocannon skips onResponse for that response.
      const result = await run(url, mode, 7, 7 * 30, true, 4);
      // autocannon does not count the response it answers by reconnecting; the server saw all.
      expect(result.requests.total).toBeGreaterThan(100);
      expect(s.keys.length).toBe(210);
      expect(new Set(s.keys).size).toBe(210);
      for (const k of s.keys) expect(parseIdempotencyKey(k)).toBe(k);
      // Keys or not, a returning connection keeps its one session.
      expect(s.stats().issued - before).toBe(mode === "returning" ? 7 : 210);
    }
  });

  it("gives new visitors a new session on every request", async () => {
    const before = s.stats();
    await run(url, "new", 5, 50);
    const after = s.stats();
    expect(after.issued - before.issued).toBe(50);
    expect(after.withoutCookie - before.withoutCookie).toBe(50);
  });
});
