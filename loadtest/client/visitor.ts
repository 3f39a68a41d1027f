// A visitor with its own cookie jar: one session per visitor, like one browser.
// Used by the integration tests and by the consistency harness.

export type Reply = {
  status: number;
  replica: string | undefined;
  requestId: string | undefined;
  text: string;
  /** Parsed body when the reply was JSON. */
  json: Record<string, unknown> | undefined;
  headers: Headers;
  ms: number;
};

export type RequestOptions = {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs?: number;
};

export class Visitor {
  readonly baseUrl: string;
  cookie: string | undefined;
  constructor(baseUrl: string, cookie?: string) {
    this.baseUrl = baseUrl;
    this.cookie = cookie;
  }

  async request(path: string, opts: RequestOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...opts.headers };
    if (this.cookie) headers.cookie = this.cookie;
    const t0 = performance.now();
    const res = await fetch(this.baseUrl + path, {
      method: opts.method ?? "GET",
      headers,
      body: opts.body,
      signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
      redirect: "manual",
    });
    const text = await res.text();
    for (const c of res.headers.getSetCookie()) {
      const pair = c.split(";")[0] ?? "";
      // An expired cookie (clearCookie) empties the jar.
      if (/expires=Thu, 01 Jan 1970/i.test(c) || pair.endsWith("=")) this.cookie = undefined;
      else this.cookie = pair;
    }
    let json: Record<string, unknown> | undefined;
    if ((res.headers.get("content-type") ?? "").includes("json")) {
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
    }
    return {
      status: res.status,
      replica: res.headers.get("x-replica") ?? undefined,
      requestId: res.headers.get("x-request-id") ?? undefined,
      text,
      json,
      headers: res.headers,
      ms: performance.now() - t0,
    };
  }

  get(path: string, opts: RequestOptions = {}): Promise<Reply> {
    return this.request(path, { ...opts, method: "GET" });
  }

  post(path: string, opts: RequestOptions = {}): Promise<Reply> {
    return this.request(path, { ...opts, method: "POST" });
  }

  /** POST /api/counter, optionally with an Idempotency-Key. */
  increment(key?: string, opts: RequestOptions = {}): Promise<Reply> {
    return this.post("/api/counter", { ...opts, headers: { ...opts.headers, ...(key ? { "Idempotency-Key": key } : {}) } });
  }
}
