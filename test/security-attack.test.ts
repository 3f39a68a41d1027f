// Hostile requests a second review found, through nginx against real redis-server, nginx and
// Node replicas (LocalCluster): each one once cost a replica far more than the client, or got
// an answer that was not the API's JSON error.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { AddressClient, rawConnection } from "./address-client.ts";
import { Visitor } from "../loadtest/client/visitor.ts";

/** Sends `text` on a new connection from `localAddress` and reads until nginx closes it. */
async function rawExchange(port: number, text: string, localAddress = "127.0.0.1"): Promise<string> {
  const s = await rawConnection(port, localAddress);
  return new Promise((resolve, reject) => {
    let out = "";
    s.setEncoding("latin1");
    s.on("data", (d: string) => (out += d));
    s.on("error", reject);
    s.on("close", () => resolve(out));
    s.setTimeout(10_000, () => s.destroy(new Error("no answer within 10 s")));
    s.write(text);
  });
}

/** Status, Content-Type and body of a raw HTTP/1.x answer. */
function parseAnswer(raw: string): { status: number; type: string | undefined; body: string } {
  const [head = "", body = ""] = raw.split("\r\n\r\n", 2);
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
  const type = /^content-type: *(.*)$/im.exec(head)?.[1];
  return { status, type, body };
}

describe("hostile requests through nginx (local processes, 2 replicas)", () => {
  let cluster: LocalCluster;
  let base: string;
  let port: number;
  beforeAll(async () => {
    cluster = LocalCluster.create({ dir: mkdtempSync(join(tmpdir(), "security-attack-")), replicas: 2 });
    await cluster.start();
    base = cluster.baseUrl();
    port = Number(new URL(base).port);
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 120_000);

  it("answers 60 requests for an 8 KB path of slashes cheaply; a bystander's increments all succeed", async () => {
    // A path of ~8 KB of "/" and one letter (the longest request line nginx takes) once cost a
    // replica ~0.45 s of CPU in a trailing-slash regex that backtracks quadratically; 60 of them
    // from one address held both replicas for seconds, and other clients' requests timed out.
    const flooder = new AddressClient(base, "127.0.0.2", { maxSockets: 60 });
    const bystander = new AddressClient(base, "127.0.0.3");
    try {
      expect((await bystander.request("/api/session", { method: "POST" })).status).toBe(201);
      const path = `${"/".repeat(8000)}a`;
      const flood = Promise.all(Array.from({ length: 60 }, () => flooder.request(path)));
      const answers: number[] = [];
      for (let i = 0; i < 5; i++) answers.push((await bystander.increment(`bystander-${i}`)).status);
      const floodStatuses = (await flood).map((a) => a.status);
      expect(new Set(floodStatuses)).toEqual(new Set([404]));
      expect(answers).toEqual([200, 200, 200, 200, 200]);
    } finally {
      flooder.close();
      bystander.close();
    }
  });
  it("answers an unsatisfiable Range or a failed precondition on an asset with a JSON 4xx, not a 500", async () => {
    const v = new Visitor(base);
    for (const [headers, status, error] of [
      [{ range: "bytes=999999-" }, 416, "range_not_satisfiable"],
      [{ "if-match": '"nope"' }, 412, "precondition_failed"],
      [{ "if-unmodified-since": "Mon, 01 Jan 1990 00:00:00 GMT" }, 412, "precondition_failed"],
    ] as const) {
      const r = await v.get("/assets/favicon.svg", { headers });
      const cache = r.headers.get("cache-control");
      expect({ status: r.status, type: r.headers.get("content-type"), cache, error: r.json?.error }).toEqual({
        status,
        type: "application/json; charset=utf-8",
        cache: "no-store",
        error,
      });
    }
    expect((await v.get("/assets/favicon.svg", { headers: { range: "bytes=0-3" } })).status).toBe(206);
  });
  it("serves an HTTP/1.0 request that names no Host like any other", async () => {
    // nginx passes no Host header on when the client sent none, and Node refuses a request
    // without one before the app sees it: an empty, untyped 400.
    const r = parseAnswer(await rawExchange(port, "GET /counter HTTP/1.0\r\n\r\n"));
    expect(r).toEqual({ status: 200, type: "text/plain; charset=utf-8", body: "count is 1" });
    const api = parseAnswer(await rawExchange(port, "POST /api/counter HTTP/1.0\r\nContent-Length: 0\r\n\r\n"));
    expect({ status: api.status, type: api.type }).toEqual({ status: 200, type: "application/json; charset=utf-8" });
  });
  it("answers a request line over 8 KB (414) and a Transfer-Encoding it cannot decode (501) in JSON", async () => {
    for (const [request, status, error] of [
      [`GET /${"a".repeat(9000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 414, "uri_too_long"],
      [
        "POST /api/counter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n",
        501,
        "not_implemented",
      ],
      [
        "POST /api/counter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n" +
          "Connection: close\r\n\r\n0\r\n\r\n",
        501,
        "not_implemented",
      ],
    ] as const) {
      const r = parseAnswer(await rawExchange(port, request));
      const json = r.type === "application/json" ? (JSON.parse(r.body) as { error?: string }) : undefined;
      expect({ status: r.status, type: r.type, error: json?.error }).toEqual({
        status,
        type: "application/json",
        error,
      });
    }
  });
  it("never leaves a user logged in after a logout that raced the login and answered loggedOut: true", async () => {
    // The logout loads the session, the login replaces it (new id, count carried over), then
    // the logout destroys the old id, already gone: it said "logged out" while the new session
    // stayed logged in. Neither order of the two alone gives that: logout first, and the login
    // finds no session (it is refused, or logs in afresh with a count of 0); login first, and
    // the logout finds no session (loggedOut: false).
    const outcomes: string[] = [];
    for (let i = 0; i < 30; i++) {
      const v = new Visitor(base);
      expect((await v.increment()).status).toBe(200);
      const old = v.cookie!;
      const [login, logout] = await Promise.all([
        new Visitor(base, old).request("/api/login", { method: "POST", body: '{"name":"ada"}' }),
        new Visitor(base, old).request("/api/logout", { method: "POST" }),
      ]);
      const fresh = login.headers.getSetCookie()[0]?.split(";")[0];
      const me = fresh ? (await new Visitor(base, fresh).get("/api/me")).status : 0;
      const rotated = login.status === 200 && login.json?.count === 1;
      outcomes.push(
        `login ${rotated ? "rotated" : login.status}, loggedOut ${String(logout.json?.loggedOut)}, me ${me}`,
      );
    }
    expect(outcomes.filter((o) => o === "login rotated, loggedOut true, me 200")).toEqual([]);
  });
});
