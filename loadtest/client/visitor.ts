// A visitor with its own cookie jar: one session per visitor, like one browser.
// Used by the integration tests and by the consistency harness, so it is built on node:http
// with one shared keep-alive agent: cheap enough to run thousands of requests a second on
// the same two cores as the cluster it measures.
import { Agent, request as httpRequest } from "node:http";

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
  /** Sent as is: a string as UTF-8, bytes for another encoding. */
  body?: string | Uint8Array;
  timeoutMs?: number;
};

/**
 * No answer came back: `code` is ETIMEDOUT for our own deadline, otherwise the socket's
 * error (ECONNRESET, ECONNREFUSED, ...). Only ECONNREFUSED proves the request was never sent.
 */
export class TransportError extends Error {
  readonly code: string;
  readonly ms: number;
  constructor(code: string, message: string, ms: number) {
    super(message);
    this.name = "TransportError";
    this.code = code;
    this.ms = ms;
  }
}

// One pool for every visitor: cookies travel per request, so sockets need not be per user.
const agent = new Agent({ keepAlive: true, keepAliveMsecs: 10_000, maxSockets: 1024, maxFreeSockets: 1024 });

export class Visitor {
  readonly baseUrl: string;
  readonly #url: URL;
  cookie: string | undefined;
  constructor(baseUrl: string, cookie?: string) {
    this.baseUrl = baseUrl;
    this.#url = new URL(baseUrl);
    this.cookie = cookie;
  }

  request(path: string, opts: RequestOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...opts.headers };
    if (this.cookie) headers.cookie = this.cookie;
    if (opts.body !== undefined) {
      headers["content-type"] ??= "application/json";
      headers["content-length"] = String(Buffer.byteLength(opts.body));
    } else if ((opts.method ?? "GET") !== "GET") {
      headers["content-length"] = "0";
    }
    const t0 = performance.now();
    const timeoutMs = opts.timeoutMs ?? 10_000;
    return new Promise<Reply>((resolve, reject) => {
      let settled = false;
      const fail = (code: string, message: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new TransportError(code, message, performance.now() - t0));
      };
      const req = httpRequest(
        {
          agent,
          host: this.#url.hostname,
          port: this.#url.port,
          path,
          method: opts.method ?? "GET",
          headers,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", (err: NodeJS.ErrnoException) => fail(err.code ?? "ECONNRESET", err.message));
          res.on("aborted", () => fail("ECONNRESET", "the response was cut off"));
          res.on("end", () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            const text = Buffer.concat(chunks).toString("utf8");
            const h = new Headers();
            for (const [k, v] of Object.entries(res.headers)) {
              if (Array.isArray(v)) for (const x of v) h.append(k, x);
              else if (v !== undefined) h.set(k, v);
            }
            this.#takeCookies(h.getSetCookie());
            let json: Record<string, unknown> | undefined;
            if ((h.get("content-type") ?? "").includes("json")) {
              try {
                json = JSON.parse(text) as Record<string, unknown>;
              } catch {
                json = undefined;
              }
            }
            resolve({
              status: res.statusCode ?? 0,
              replica: h.get("x-replica") ?? undefined,
              requestId: h.get("x-request-id") ?? undefined,
              text,
              json,
              headers: h,
              ms: performance.now() - t0,
            });
          });
        },
      );
      const timer = setTimeout(() => {
        fail("ETIMEDOUT", `no answer within ${timeoutMs} ms`);
        req.destroy();
      }, timeoutMs);
      req.on("error", (err: NodeJS.ErrnoException) => {
        fail(err.code ?? "ECONNRESET", err.message);
      });
      req.end(opts.body);
    });
  }

  #takeCookies(setCookies: string[]): void {
    for (const c of setCookies) {
      const pair = c.split(";")[0] ?? "";
      // An expired cookie (clearCookie) empties the jar.
      if (/expires=Thu, 01 Jan 1970/i.test(c) || pair.endsWith("=")) this.cookie = undefined;
      else this.cookie = pair;
    }
  }

  get(path: string, opts: RequestOptions = {}): Promise<Reply> {
    return this.request(path, { ...opts, method: "GET" });
  }

  post(path: string, opts: RequestOptions = {}): Promise<Reply> {
    return this.request(path, { ...opts, method: "POST" });
  }

  /** POST /api/session: starts this visitor's session without counting. */
  startSession(opts: RequestOptions = {}): Promise<Reply> {
    return this.post("/api/session", opts);
  }

  /** POST /api/counter, optionally with an Idempotency-Key. */
  increment(key?: string, opts: RequestOptions = {}): Promise<Reply> {
    return this.post("/api/counter", {
      ...opts,
      headers: { ...opts.headers, ...(key !== undefined ? { "Idempotency-Key": key } : {}) },
    });
  }
}
