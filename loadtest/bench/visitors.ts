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
  /** A new Idempotency-Key on every request (the exactly-once path). */
  uniqueKeys?: boolean;
};

/**
 * autocannon's `setupClient` for the mode. For returning visitors each connection is one
 * browser: the cookie lives in a variable of this closure, not in autocannon's per-request
 * `context`, because autocannon resets that context every time the request list loops
 * (with one request, after every response), which would make each request a new visitor.
 */
export function setupClientFor(
  mode: VisitorMode,
  requests: readonly BenchRequest[],
  opts: VisitorOptions = {},
): ((client: Client) => void) | undefined {
  if (mode === "new" && !opts.uniqueKeys) return undefined;
  return (client: Client) => {
    let cookie: string | undefined;
    // This connection's keys: a random prefix and a count.
    const prefix = `${randomBytes(8).toString("hex")}-`;
    let n = 0;
    const withCookie = (headers: Record<string, string> | undefined) =>
      cookie && mode === "returning" ? { ...headers, cookie } : { ...headers };
    // Only a returning visitor reads its responses (autocannon parses the headers for it).
    type Headers = Record<string, string | string[]>;
    const onResponse = (_status: number, _body: string, _context: unknown, headers: Headers) => {
      const next = setCookieOf(headers);
      if (next === undefined || next === cookie) return;
      cookie = next;
      // With keys, setupRequest reads the cookie on each build; without, the requests are
      // rebuilt here, once per connection, so the jar costs nothing per request.
      if (!opts.uniqueKeys) client.setRequests(build());
    };
    const build = (): AcRequest[] =>
      requests.map(
        (r) =>
          ({
            method: r.method,
            path: r.path,
            body: r.body,
            headers: withCookie(r.headers),
            ...(mode === "returning" && { onResponse }),
            // autocannon calls setupRequest right before each request it sends, also the first
            // one after a reconnect (reconnectRate), so no two requests carry the same key.
            ...(opts.uniqueKeys && {
              setupRequest: (req: AcRequest) => {
                req.headers = withCookie(req.headers as Record<string, string>);
                req.headers["idempotency-key"] = `${prefix}${n++}`;
                return req;
              },
            }),
          }) as AcRequest,
      );
    client.setRequests(build());
  };
}
