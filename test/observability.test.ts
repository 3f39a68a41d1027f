// /metrics on each replica and request ids through nginx, checked against a real local
// cluster (redis-server, 3 Node replicas, nginx) after traffic whose effects are known.
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { waitFor } from "../infra/cluster/wait.ts";
import { Visitor } from "../loadtest/client/visitor.ts";
import { accessLogLine } from "./nginx-access-log.ts";
import { rawRequest } from "./raw-http.ts";
import { parsePrometheus, sum, type Sample } from "./prometheus-text.ts";

let cluster: LocalCluster;

beforeAll(async () => {
  cluster = LocalCluster.create({ dir: mkdtempSync(join(tmpdir(), "observability-")), replicas: 3, port: 0 });
  await cluster.start();
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
}, 120_000);

/** Every replica's /metrics, scraped on its operator listener (nginx never proxies to it). */
async function scrape(): Promise<Sample[]> {
  const all: Sample[] = [];
  for (const r of await cluster.replicas()) {
    if (!r.running || !r.opsUrl) continue;
    const res = await fetch(`${r.opsUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    all.push(...parsePrometheus(await res.text()));
  }
  return all;
}

describe("GET /metrics on each replica", () => {
  it("counts requests by route template, increments and replays exactly as sent", async () => {
    const before = await scrape();
    const v = new Visitor(cluster.baseUrl());
    const keys = Array.from({ length: 12 }, () => randomUUID());
    for (const key of keys) expect((await v.increment(key)).status).toBe(200);
    // The same keys again: answered from the stored result, not counted again.
    for (const key of keys.slice(0, 3)) {
      const r = await v.increment(key);
      expect(r.headers.get("idempotent-replayed")).toBe("true");
    }
    for (let i = 0; i < 2; i++) expect((await v.request("/api/counter", { method: "PUT" })).status).toBe(405);
    expect(
      (await v.increment(undefined, { headers: { "Content-Type": "application/json" }, body: '{"by":0}' })).status,
    ).toBe(400);
    const probe = `/no-such-page-${randomUUID()}`;
    for (let i = 0; i < 2; i++) expect((await v.get(probe)).status).toBe(404);
    const session = await v.get("/api/session");
    expect(session.json?.count).toBe(12);
    const after = await scrape();

    const delta = (name: string, labels: Record<string, string> = {}) =>
      sum(after, name, labels) - sum(before, name, labels);
    const requests = (method: string, route: string, status: string) =>
      delta("http_requests_total", { method, route, status });
    expect(requests("POST", "/api/counter", "200")).toBe(15);
    // A 405 and a 400 are raised inside the /api router and rendered by the app's error
    // handler; they still carry the route's full template.
    expect(requests("PUT", "/api/counter", "405")).toBe(2);
    expect(requests("POST", "/api/counter", "400")).toBe(1);
    expect(requests("GET", "unmatched", "404")).toBe(2);
    expect(requests("GET", "/api/session", "200")).toBe(1);
    expect(after.some((s) => Object.values(s.labels).some((l) => l.includes("no-such-page")))).toBe(false);
    expect(delta("http_request_duration_seconds_count", { method: "POST", route: "/api/counter", status: "200" })).toBe(
      15,
    );

    expect(delta("counter_increments_total")).toBe(12);
    expect(delta("counter_idempotent_replays_total")).toBe(3);
    expect(delta("session_store_operation_duration_seconds_count", { op: "counter_increment" })).toBe(15);
    expect(delta("session_store_operation_duration_seconds_count", { op: "counter_read" })).toBe(1);
    // The first request had no cookie. The 14 keyed increments with a valid cookie took the
    // stored-session path (routes/stored-counter.ts: the counter's script checks the session,
    // express-session loads nothing); the 400 fell through to the full path, and it and the
    // other 5 requests each loaded the session once.
    expect(delta("session_store_operation_duration_seconds_count", { op: "get" })).toBe(6);
    expect(delta("session_store_errors_total")).toBe(0);

    // Every replica took a share (round-robin), and labels each series with its name.
    const names = (await cluster.replicas()).map((r) => r.replicaId);
    for (const name of names)
      expect(sum(after, "http_requests_total", { replica: name, route: "/api/counter" })).toBeGreaterThan(0);
    // The default process metrics are there too.
    for (const name of ["process_cpu_seconds_total", "nodejs_eventloop_lag_seconds", "nodejs_heap_size_used_bytes"]) {
      expect(
        after
          .filter((s) => s.name === name)
          .map((s) => s.labels.replica)
          .sort(),
      ).toEqual([...names].sort());
    }
  });

  it("reports Redis going down and coming back: store errors, the connection gauge, lost connections", async () => {
    const v = new Visitor(cluster.baseUrl());
    expect((await v.increment()).status).toBe(200);
    const before = await scrape();
    expect(sum(before, "redis_connected")).toBe(3);
    await cluster.stopRedis("SIGKILL");
    let down: Sample[];
    try {
      // Two requests, two replicas: each fails loading the session and answers 503.
      for (let i = 0; i < 2; i++) {
        const r = await v.get("/api/session");
        expect(r.status).toBe(503);
        // store_unavailable, or store_timeout if the command left before the socket closed.
        expect(r.json?.error).toMatch(/^store_/);
      }
      down = await scrape();
    } finally {
      await cluster.startRedis();
    }
    expect(sum(down, "redis_connected")).toBe(0);
    expect(
      sum(down, "session_store_errors_total", { op: "get" }) - sum(before, "session_store_errors_total", { op: "get" }),
    ).toBe(2);
    // The session failed to load before routing, so no route template applies.
    expect(
      sum(down, "http_requests_total", { route: "unmatched", status: "503" }) -
        sum(before, "http_requests_total", { route: "unmatched", status: "503" }),
    ).toBe(2);
    const up = await scrape();
    expect(sum(up, "redis_connected")).toBe(3);
    expect(sum(up, "redis_connection_lost_total") - sum(before, "redis_connection_lost_total")).toBe(3);
  });

  it("is not reachable through nginx", async () => {
    const r = await new Visitor(cluster.baseUrl()).get("/metrics");
    expect(r.status).toBe(404);
    expect(r.replica).toBeUndefined();
    expect(r.text).not.toContain("http_requests_total");
  });
});

describe("request ids through nginx", () => {
  it("uses nginx's $request_id in the replica's log line and the response, ignoring the client's", async () => {
    const v = new Visitor(cluster.baseUrl());
    const r = await v.get("/api/session", { headers: { "X-Request-ID": "client-chosen-id" } });
    expect(r.status).toBe(200);
    // nginx is the edge: a client-sent id could be forged or reused, so nginx assigns its own.
    expect(r.requestId).toMatch(/^[0-9a-f]{32}$/);
    const id = r.requestId!;

    let joined: string[] = [];
    // Both components write their line after answering; give them a moment.
    await waitFor(
      `log lines with request id ${id}`,
      async () => {
        joined = (await cluster.logs(200)).split("\n").filter((l) => l.includes(id));
        return joined.some((l) => l.startsWith("nginx-access")) && joined.some((l) => l.startsWith(r.replica!));
      },
      5000,
    );

    const body = (line: string) => JSON.parse(line.slice(line.indexOf(" | ") + 3)) as Record<string, unknown>;
    const appLine = body(joined.find((l) => l.startsWith(r.replica!))!);
    expect(appLine).toMatchObject({
      replica: r.replica,
      req: { id, method: "GET", path: "/api/session" },
      res: { status: 200 },
    });
    expect(typeof appLine.ms).toBe("number");
    const nginxLine = body(joined.find((l) => l.startsWith("nginx-access"))!);
    expect(nginxLine).toMatchObject({
      request_id: id,
      method: "GET",
      uri: "/api/session",
      status: 200,
      upstream_status: "200",
    });
    expect((await cluster.logs(200)).includes("client-chosen-id")).toBe(false);
  });

  it("writes no cookie, session id, credential, query string or body to any log line, errors included", async () => {
    const base = cluster.baseUrl();
    const idOf = (cookie: string) => /^sid=s%3A([^.]+)\./.exec(cookie)![1]!;
    const v = new Visitor(base);
    const first = await v.increment();
    const issued = v.cookie!;
    const asked = await v.get("/api/session?token=query-secret-7c1", {
      headers: { Authorization: "Bearer auth-secret-5e2" },
    });
    const login = await v.post("/api/login", { body: JSON.stringify({ name: "body-secret-9a4" }) });
    // The same session id under a signature that fails its check.
    const signed = decodeURIComponent(issued.slice("sid=".length));
    const forged = `sid=${encodeURIComponent(`${signed.slice(0, -4)}${signed.endsWith("AAAA") ? "BBBB" : "AAAA"}`)}`;
    const tampered = await new Visitor(base, forged).get("/api/session");
    // A Redis error the app does not expect (the session's key turned into a hash): a 500, an error line.
    const current = idOf(v.cookie!);
    await cluster.redisCommand("DEL", `sess:${current}`);
    await cluster.redisCommand("HSET", `sess:${current}`, "user", "body-secret-9a4");
    const failed = await v.increment("key-secret-3b8");
    const replies = [first, asked, login, tampered, failed];
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 500]);
    expect(v.cookie).not.toBe(issued);

    // Every reply's line is written (a tampered cookie's adds a warn line): then read them all.
    let logs = "";
    await waitFor(
      "the replicas' lines for these requests",
      async () => {
        logs = await cluster.logs(500);
        return replies.every((r) => logs.split("\n").some((l) => l.startsWith(r.replica!) && l.includes(r.requestId!)));
      },
      5000,
    );
    expect(logs).toContain("session_cookie_rejected");
    expect(logs).toMatch(/"err":\{"type":"ReplyError","message":"[^"]*WRONGTYPE/);
    const secrets = [issued, v.cookie!, forged, "query-secret-7c1", "auth-secret-5e2", "body-secret-9a4"];
    secrets.push("key-secret-3b8", idOf(issued), current, signed);
    for (const s of secrets) expect(logs).not.toContain(s);
  });

  it("logs the method the client sent for an answer nginx makes itself", async () => {
    // nginx refuses PROPFIND itself (405, its error page), and error_page turns $request_method into GET.
    const r = await fetch(`${cluster.baseUrl()}/api/counter`, { method: "PROPFIND" });
    expect(r.status).toBe(405);
    expect(r.headers.get("x-replica")).toBeNull();
    const id = r.headers.get("x-request-id");
    expect(await accessLogLine(cluster, id)).toMatchObject({
      request_id: id,
      method: "PROPFIND",
      uri: "/api/counter",
      status: 405,
    });
  });

  it("logs no method for a request line nginx cannot parse", async () => {
    const r = await rawRequest(Number(new URL(cluster.baseUrl()).port), "G@T /x HTTP/1.1\r\nHost: x\r\n\r\n");
    expect(r.status).toBe(400);
    const id = /^x-request-id: (\S+)/im.exec(r.headers)?.[1];
    expect(await accessLogLine(cluster, id)).toMatchObject({ request_id: id, method: "", status: 400 });
  });

  it("puts a request id on answers nginx makes itself", async () => {
    const r = await new Visitor(cluster.baseUrl()).get("/metrics");
    expect(r.status).toBe(404);
    expect(r.requestId).toMatch(/^[0-9a-f]{32}$/);
  });
});
