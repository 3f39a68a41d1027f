// The load balancer and Redis as a client, an attacker or a local user meets them (issue 14):
// nginx's per-client limits and timeouts, TLS termination and Secure cookies, Redis's ACL
// users and memory cap, and no password in any process's argv. Real nginx, redis-server and
// Node replicas (LocalCluster); several client addresses through 127.0.0.x (address-client.ts).
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientLimitsConf, clientLimitsFrom, DEFAULT_CLIENT_LIMITS } from "../infra/cluster/client-limits.ts";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { AddressClient, rawConnection } from "./address-client.ts";

const run = promisify(execFile);
const newDir = (name: string) => mkdtempSync(join(tmpdir(), `security-proxy-${name}-`));

/** A self-signed certificate for 127.0.0.1, made with openssl for this run. */
async function selfSignedCert(dir: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  await run(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { timeout: 30_000 },
  );
  return { cert, key };
}

/** One https request, trusting only `ca`; the status and the session cookie's Set-Cookie. */
function httpsGet(
  url: string,
  ca: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; setCookie: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, headers, timeout: 10_000 }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, setCookie: res.headers["set-cookie"]?.[0] }));
    });
    req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
    req.on("error", reject);
    req.end();
  });
}

/** redis-cli as `user` against the cluster's Redis, the password in the environment; stdout or the error text. */
async function redisAs(cluster: LocalCluster, user: string, password: string, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run(
      "redis-cli",
      ["-h", "127.0.0.1", "-p", String(cluster.redisPort), "--user", user, ...args],
      {
        timeout: 5000,
        env: { ...process.env, REDISCLI_AUTH: password },
      },
    );
    return stdout.trim();
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? err).trim();
  }
}

describe("nginx's per-client limits (a cluster with 5 requests a second, burst 10, 4 in flight)", () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = LocalCluster.create({
      dir: newDir("limits"),
      replicas: 2,
      clientLimits: { rate: 5, burst: 10, connections: 4 },
    });
    await cluster.start();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("answers one address beyond its rate with nginx's JSON 429, and keeps serving another address", async () => {
    // One connection, so only the rate decides (limit_conn is the next test's).
    const flooder = new AddressClient(cluster.baseUrl(), "127.0.0.2", { maxSockets: 1 });
    const bystander = new AddressClient(cluster.baseUrl(), "127.0.0.3");
    try {
      const answers = await Promise.all(
        Array.from({ length: 40 }, () => flooder.request("/api/session", { keepCookie: false })),
      );
      const limited = answers.filter((a) => a.status === 429);
      const served = answers.filter((a) => a.status === 200);
      // The first request and the burst (10), plus what 5 a second refills while 40 go out.
      expect(served.length).toBeGreaterThanOrEqual(11);
      expect(served.length).toBeLessThan(20);
      expect(limited.length + served.length).toBe(40);
      for (const a of limited) {
        expect(a.error).toBe("too_many_requests");
        expect(a.headers["retry-after"]).toBe("1");
        expect(a.headers["content-type"]).toMatch(/^application\/json/);
      }
      // Another address has an allowance of its own.
      for (let i = 1; i <= 5; i++)
        expect(JSON.parse((await bystander.increment(randomUUID())).body)).toMatchObject({ count: i });
      // nginx's own liveness probe is never counted.
      for (let i = 0; i < 15; i++) expect((await flooder.request("/nginx-health")).status).toBe(200);
    } finally {
      flooder.close();
      bystander.close();
    }
  });

  it("answers a 5th request in flight from one client with 429; ends a stalled body (body timeout)", async () => {
    await sleep(2500); // the previous test's allowance refills (5 a second)
    // Four requests whose head is complete and whose body never comes: each holds a slot.
    const stalled: Socket[] = await Promise.all(
      Array.from({ length: 4 }, () => rawConnection(Number(new URL(cluster.baseUrl()).port), "127.0.0.2")),
    );
    const closedAt: number[] = [];
    const t0 = Date.now();
    try {
      for (const s of stalled) {
        s.on("error", () => {});
        s.on("close", () => closedAt.push(Date.now() - t0));
        s.write(
          "POST /api/counter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        );
      }
      await sleep(300);
      const fifth = new AddressClient(cluster.baseUrl(), "127.0.0.2");
      const other = new AddressClient(cluster.baseUrl(), "127.0.0.3");
      try {
        const a = await fifth.request("/api/session");
        expect(a.status).toBe(429);
        expect(a.error).toBe("too_many_requests");
        expect((await other.request("/api/session")).status).toBe(200);
      } finally {
        fifth.close();
        other.close();
      }
      // nginx gives up on each body (client_body_timeout 5s); the old default waited 60 s.
      const deadline = Date.now() + 20_000;
      while (closedAt.length < stalled.length && Date.now() < deadline) await sleep(100);
      expect(closedAt.length).toBe(stalled.length);
    } finally {
      for (const s of stalled) s.destroy();
    }
  });
});

describe("slow clients (slowloris) against the default limits", () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = LocalCluster.create({ dir: newDir("slowloris"), replicas: 2 });
    await cluster.start();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("closes 200 connections trickling a header byte a second, while another client keeps being answered", async () => {
    const port = Number(new URL(cluster.baseUrl()).port);
    const slow: Socket[] = [];
    const closedByNginx = new Set<Socket>();
    let trickling = true;
    const bystander = new AddressClient(cluster.baseUrl(), "127.0.0.3");
    const answers: number[] = [];
    try {
      for (let i = 0; i < 200; i++) {
        const s = await rawConnection(port, "127.0.0.2");
        s.on("error", () => {});
        s.on("close", () => {
          if (trickling) closedByNginx.add(s);
        });
        s.write("GET /api/session HTTP/1.1\r\nHost: x\r\n");
        slow.push(s);
      }
      // At most 25 s: one header byte a second on every open connection, and meanwhile the
      // bystander's requests. nginx's header deadline (5 s) should close all of them long before.
      const until = Date.now() + 25_000;
      while (Date.now() < until && closedByNginx.size < slow.length) {
        for (const s of slow) if (!s.destroyed) s.write("X");
        answers.push((await bystander.request("/api/session")).status);
        await sleep(1000);
      }
      trickling = false;
      console.log(
        `slowloris: ${closedByNginx.size}/${slow.length} slow connections closed by nginx; bystander ` +
          `answers ${JSON.stringify(answers)}`,
      );
      expect(closedByNginx.size).toBe(slow.length);
      expect(answers.length).toBeGreaterThan(0);
      expect(answers.every((s) => s === 200)).toBe(true);
    } finally {
      trickling = false;
      for (const s of slow) s.destroy();
      bystander.close();
    }
  });
});

describe("TLS at nginx: Secure session cookies over https only", () => {
  let cluster: LocalCluster;
  let ca: string;
  beforeAll(async () => {
    const dir = newDir("tls");
    const tls = await selfSignedCert(dir);
    ca = readFileSync(tls.cert, "utf8");
    cluster = LocalCluster.create({ dir: join(dir, "cluster"), replicas: 2, tls });
    await cluster.start();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("marks the session cookie Secure when the client came over https", async () => {
    const r = await httpsGet(`${cluster.httpsUrl()}/counter`, ca);
    expect(r.status).toBe(200);
    expect(r.setCookie).toMatch(/^sid=s%3A/);
    expect(r.setCookie).toMatch(/;\s*Secure/i);
  });

  it("gives no Secure cookie over plain http, even with a forged X-Forwarded-Proto: https", async () => {
    const client = new AddressClient(cluster.baseUrl(), "127.0.0.1");
    try {
      const r = await client.request("/counter", {
        headers: { "x-forwarded-proto": "https", forwarded: "proto=https" },
      });
      expect(r.status).toBe(200);
      const setCookie = (r.headers["set-cookie"] as string[] | undefined)?.[0];
      expect(setCookie).toMatch(/^sid=s%3A/);
      expect(setCookie).not.toMatch(/;\s*Secure/i);
    } finally {
      client.close();
    }
  });
});

describe("Redis: ACL users, a memory cap, and no password in argv", () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = LocalCluster.create({ dir: newDir("redis"), replicas: 2 });
    await cluster.start();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("lets the app's user touch only the app's keys with the app's commands", async () => {
    const pw = cluster.redisPassword("app");
    // The cluster works as the app user: a session and its count.
    const v = new AddressClient(cluster.baseUrl(), "127.0.0.1");
    try {
      expect(JSON.parse((await v.increment(randomUUID())).body)).toMatchObject({ count: 1 });
    } finally {
      v.close();
    }
    expect(await redisAs(cluster, "app", pw, "SET", "sess:probe", "x", "EX", "60")).toBe("OK");
    expect(await redisAs(cluster, "app", pw, "GET", "sess:probe")).toBe("x");
    for (const args of [
      ["FLUSHALL"],
      ["CONFIG", "GET", "maxmemory"],
      ["KEYS", "sess:*"],
      ["SCAN", "0"],
      ["SHUTDOWN"],
      ["ACL", "LIST"],
    ]) {
      expect(await redisAs(cluster, "app", pw, ...args), args.join(" ")).toMatch(/^NOPERM/);
    }
    // Keys outside sess:, count:, idem: are out of reach, inside a script too.
    expect(await redisAs(cluster, "app", pw, "SET", "other", "1")).toMatch(/^NOPERM/);
    expect(await redisAs(cluster, "app", pw, "EVAL", "return redis.call('SET', KEYS[1], '1')", "1", "other")).toMatch(
      /NOPERM|no permissions/,
    );
    // The health-check user can PING and nothing else; without a user there is no access.
    const health = cluster.redisPassword("health");
    expect(await redisAs(cluster, "health", health, "PING")).toBe("PONG");
    expect(await redisAs(cluster, "health", health, "GET", "sess:probe")).toMatch(/^NOPERM/);
    const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(cluster.redisPort), "PING"], {
      timeout: 5000,
    }).catch((e: { stdout: string }) => e);
    expect(stdout.trim()).toMatch(/^NOAUTH/);
    // The default user is off: no password logs in as it, and its connection can do nothing.
    expect(await redisAs(cluster, "default", "anything", "PING")).toMatch(/NOAUTH|WRONGPASS|disabled/i);
    expect(await redisAs(cluster, "default", "", "PING")).toMatch(/NOAUTH|WRONGPASS|disabled/i);
    // And the admin user (operators, tests) can do anything.
    expect(await cluster.redisCommand("DBSIZE")).toMatch(/^\d+$/);
  });

  it("caps Redis's memory (200mb, noeviction) instead of letting it grow without bound", async () => {
    expect((await cluster.redisCommand("CONFIG", "GET", "maxmemory")).split("\n")[1]).toBe(String(200 * 1024 * 1024));
    expect((await cluster.redisCommand("CONFIG", "GET", "maxmemory-policy")).split("\n")[1]).toBe("noeviction");
  });

  it("shows no Redis password in any process's command line (ps -eo args)", async () => {
    const { stdout } = await run("ps", ["-eo", "args"], { maxBuffer: 16 * 1024 * 1024 });
    // The cluster's processes are there to look at...
    expect(stdout).toContain(`:${cluster.redisPort}`);
    expect(stdout).toContain(`--cluster-dir=${cluster.dir}`);
    // ...and none of them, nor anything else, carries a password.
    for (const user of ["app", "health", "admin"] as const) expect(stdout).not.toContain(cluster.redisPassword(user));
  });
});

describe("the per-client limits a cluster gets", () => {
  it("are on by default, off only when asked; nginx/client-limits.conf (Compose's default) is generated", () => {
    expect(clientLimitsFrom(undefined, {})).toEqual({ rate: 100, burst: 200, connections: 64 });
    expect(clientLimitsFrom(false, {})).toBe(false);
    expect(clientLimitsFrom(undefined, { CLIENT_RATE: "0" })).toBe(false);
    expect(() => clientLimitsFrom(undefined, { CLIENT_BURST: "-1" })).toThrow(/CLIENT_BURST|burst=-1/);
    expect(readFileSync(join(import.meta.dirname, "../nginx/client-limits.conf"), "utf8")).toBe(
      clientLimitsConf(DEFAULT_CLIENT_LIMITS),
    );
  });
});
