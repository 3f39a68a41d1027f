// How autocannon connections behave as visitors: "new" ones never send a cookie (a new
// session per request), "returning" ones keep the cookie their connection was given.
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

/**
 * autocannon's `setupClient` for the mode. For returning visitors each connection is one
 * browser: the cookie lives in a variable of this closure, not in autocannon's per-request
 * `context`, because autocannon resets that context every time the request list loops
 * (with one request, after every response), which would make each request a new visitor.
 */
export function setupClientFor(mode: VisitorMode, requests: readonly BenchRequest[]): ((client: Client) => void) | undefined {
  if (mode === "new") return undefined;
  return (client: Client) => {
    let cookie: string | undefined;
    // Requests are rebuilt only when the cookie changes (once per connection), so the load
    // generator pays nothing per request for the jar.
    const build = (): AcRequest[] =>
      requests.map((r) => ({
        method: r.method,
        path: r.path,
        body: r.body,
        headers: cookie ? { ...r.headers, cookie } : { ...r.headers },
        onResponse: (_status: number, _body: string, _context: unknown, headers: Record<string, string | string[]>) => {
          const next = setCookieOf(headers);
          if (next !== undefined && next !== cookie) {
            cookie = next;
            client.setRequests(build());
          }
        },
      }) as AcRequest);
    client.setRequests(build());
  };
}
