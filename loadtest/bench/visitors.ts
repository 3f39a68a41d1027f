// How autocannon connections behave as visitors: "new" ones never send a cookie (a new
// session per request), "returning" ones keep the cookie their connection was given.
import { randomBytes } from "node:crypto";
import type { Client, Request as AcRequest } from "autocannon";

export type VisitorMode = "new" | "returning";

export type BenchRequest = {
  method: "GET" | "POST";
  path: string;
  headers?: Record<string, string>;
  body?: string;
};

function setCookieOf(headers: Record<string, string | string[]>): string | undefined {
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() !== "set-cookie") continue;
    const first = Array.isArray(value) ? value[0] : value;
    return first?.split(";")[0];
  }
  return undefined;
}

export type VisitorOptions = {
  /**
   * A new Idempotency-Key on every request. autocannon's own [<id>] replacement rebuilds the
   * whole request for each one (69-102 µs of the load generator's CPU per request vs 49-51,
   * CPU the system under test then lacks on a shared box); here each connection writes the
   * next number of its key into the already built request bytes, in place.
   */
  uniqueKeys?: boolean;
};

const KEY_DIGITS = 12;
type BuiltRequest = AcRequest & { requestBuffer?: Buffer; headers: Record<string, string> };

/**
 * autocannon's `setupClient` for the mode. For returning visitors each connection is one
 * browser: the cookie lives in a variable of this closure, not in autocannon's per-request
 * `context`, because autocannon resets that context every time the request list loops
 * (with one request, after every response), which would make each request a new visitor.
 */
export function setupClientFor(mode: VisitorMode, requests: readonly BenchRequest[], opts: VisitorOptions = {}): ((client: Client) => void) | undefined {
  if (mode === "new" && !opts.uniqueKeys) return undefined;
  return (client: Client) => {
    let cookie: string | undefined;
    // This connection's keys: a random prefix and a fixed-width count.
    const prefix = `${randomBytes(8).toString("hex")}-`;
    let n = 0;
    const key = () => `${prefix}${String(n).padStart(KEY_DIGITS, "0")}`;
    // Requests are rebuilt only when the cookie changes (once per connection), so the load
    // generator pays nothing per request for the jar.
    const build = (): AcRequest[] =>
      requests.map((r) => {
        const req: BuiltRequest = {
          method: r.method,
          path: r.path,
          body: r.body,
          headers: { ...r.headers, ...(cookie && mode === "returning" ? { cookie } : {}), ...(opts.uniqueKeys ? { "idempotency-key": key() } : {}) },
          // Only a returning visitor reads its responses (autocannon parses the headers for it).
          ...(mode === "returning" && {
            onResponse: (_status: number, _body: string, _context: unknown, headers: Record<string, string | string[]>) => {
              const next = setCookieOf(headers);
              if (next !== undefined && next !== cookie) {
                cookie = next;
                current = build();
                client.setRequests(current);
              }
            },
          }),
        } as BuiltRequest;
        return req;
      });
    let current = build();
    client.setRequests(current);
    if (!opts.uniqueKeys) return;
    // Every response's headers, also the one autocannon answers by reconnecting (reconnectRate),
    // which skips onResponse: the key must move on for each, or the next request is a replay.
    // The response came back before this connection sends again (no pipelining), so the bytes
    // are free to change: the count is the key's last KEY_DIGITS bytes.
    client.on("headers", () => {
      n++;
      for (const req of current as BuiltRequest[]) {
        const buf = req.requestBuffer;
        if (!buf) continue; // not built yet: it will be built with the current key
        const at = buf.indexOf(prefix, 0, "latin1") + prefix.length;
        buf.write(String(n).padStart(KEY_DIGITS, "0"), at, "latin1");
      }
    });
  };
}
