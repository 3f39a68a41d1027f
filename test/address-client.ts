// An HTTP client whose connections leave from one loopback address of its own: Linux routes
// all of 127.0.0.0/8 to lo, so one test can be several clients to nginx's per-address limits
// (127.0.0.2 a flooder, 127.0.0.3 a bystander). Keeps one session cookie, as a browser would.
import { Agent, request } from "node:http";
import { connect, type Socket } from "node:net";

export type Answer = {
  status: number;
  error: string | undefined;
  body: string;
  headers: Record<string, string | string[] | undefined>;
};

export class AddressClient {
  readonly #url: URL;
  readonly #agent: Agent;
  readonly localAddress: string;
  cookie: string | undefined;

  constructor(baseUrl: string, localAddress: string, opts: { maxSockets?: number; cookie?: string } = {}) {
    this.#url = new URL(baseUrl);
    this.localAddress = localAddress;
    this.cookie = opts.cookie;
    this.#agent = new Agent({ keepAlive: true, localAddress, maxSockets: opts.maxSockets ?? 8 });
  }

  request(
    path: string,
    opts: { method?: string; headers?: Record<string, string>; body?: string; keepCookie?: boolean } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = { ...opts.headers };
    if (this.cookie && headers.cookie === undefined) headers.cookie = this.cookie;
    if (opts.body !== undefined) {
      headers["content-type"] ??= "application/json";
      headers["content-length"] = String(Buffer.byteLength(opts.body));
    }
    return new Promise((resolve, reject) => {
      const req = request(
        {
          agent: this.#agent,
          host: this.#url.hostname,
          port: this.#url.port,
          path,
          method: opts.method ?? "GET",
          headers,
          timeout: 10_000,
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (body += d));
          res.on("error", reject);
          res.on("end", () => {
            const set = res.headers["set-cookie"]?.[0];
            if (set && opts.keepCookie !== false) this.cookie = set.split(";")[0];
            let error: string | undefined;
            try {
              error = (JSON.parse(body) as { error?: string }).error;
            } catch {
              error = undefined;
            }
            resolve({ status: res.statusCode ?? 0, error, body, headers: res.headers });
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
      req.on("error", reject);
      req.end(opts.body);
    });
  }

  /** POST /api/counter with an Idempotency-Key (the exactly-once path). */
  increment(key: string, extra: Record<string, string> = {}): Promise<Answer> {
    return this.request("/api/counter", {
      method: "POST",
      headers: { "idempotency-key": key, ...extra },
      body: '{"by":1}',
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** A raw TCP connection to `port` on 127.0.0.1 from `localAddress`, once connected. */
export function rawConnection(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: "127.0.0.1", localAddress }, () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}
