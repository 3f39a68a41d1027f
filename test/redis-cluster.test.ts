// REDIS=cluster with real processes: three primaries and three replicas (redis-cluster.ts), the
// app on ioredis' Cluster. Sessions spread over the shards, a login stays one atomic step, a
// primary's SIGKILL under load doubles nothing, and a cluster the app could never serve from
// stops a replica at startup with exit 78 and the problem named.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { freePort } from "../infra/cluster/ports.ts";
import { waitFor } from "../infra/cluster/wait.ts";
import { LOAD_APP_ENV } from "../loadtest/client/load-env.ts";
import { Visitor } from "../loadtest/client/visitor.ts";
import { sessionSerializer } from "../services/app/src/session.ts";
import { runScenario } from "../loadtest/harness/run-scenario.ts";
import { findScenario, type Scenario } from "../loadtest/harness/scenarios.ts";
import { sessionIdOf } from "./session-cookie.ts";
import { loadConfig } from "../services/app/src/config.ts";
import { clusterOptions, RefreshOnFailureCluster } from "../services/app/src/redis.ts";

const run = promisify(execFile);
const serverEntry = resolve(import.meta.dirname, "../services/app/src/server.ts");

const json = (body: unknown) => ({ body: JSON.stringify(body), headers: { "content-type": "application/json" } });

describe("Redis Cluster (REDIS=cluster, local processes)", { timeout: 120_000 }, () => {
  let cluster: LocalCluster;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "redis-cluster-"));
    cluster = LocalCluster.create({ dir, redis: "cluster", replicas: 2, clientLimits: false, appEnv: LOAD_APP_ENV });
    await cluster.start();
  }, 180_000);
  afterAll(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs three primaries and three replicas, and spreads sessions over every primary", async () => {
    const nodes = await cluster.redisNodes();
    expect(nodes.filter((n) => n.role === "primary" && n.running)).toHaveLength(3);
    expect(nodes.filter((n) => n.role === "replica" && n.running)).toHaveLength(3);

    const visitors = Array.from({ length: 30 }, () => new Visitor(cluster.baseUrl()));
    for (const v of visitors) {
      expect((await v.increment(randomUUID())).status).toBe(200);
      expect((await v.increment()).json?.count).toBe(2);
    }
    for (const p of nodes.filter((n) => n.role === "primary"))
      expect(Number(await cluster.redisCommandOn(p.address, "DBSIZE")), `${p.name} holds sessions`).toBeGreaterThan(0);
    // A session's keys share its slot, so the node that has the session has its idempotency keys.
    const sid = sessionIdOf(visitors[0]!.cookie);
    const slot = await cluster.redisCommandOn(nodes[0]!.address, "CLUSTER", "KEYSLOT", `sess:${sid}`);
    expect(await cluster.redisCommandOn(nodes[0]!.address, "CLUSTER", "KEYSLOT", `{sess:${sid}}:idem`)).toBe(slot);
    expect(sessionSerializer.parse(await cluster.redisCommand("GET", `sess:${sid}`)).count).toBe(2);
  });

  it("logs in with the session's count and keys carried over: the new id lives in the old one's slot", async () => {
    const v = new Visitor(cluster.baseUrl());
    const key = randomUUID();
    expect((await v.increment(key)).json?.count).toBe(1);
    await v.post("/api/counter", json({ by: 4 }));
    const oldId = sessionIdOf(v.cookie);
    const oldCookie = v.cookie;
    const keyed = { body: JSON.stringify({ name: "ada" }), headers: { "Idempotency-Key": randomUUID() } };
    const login = await v.post("/api/login", keyed);
    expect(login.status).toBe(200);
    expect(login.json).toMatchObject({ user: { name: "ada" }, count: 5 });
    const newId = sessionIdOf(v.cookie);
    // A retry with the old cookie and the login's key is replayed: the login record is in the slot too.
    const replay = await new Visitor(cluster.baseUrl(), oldCookie).post("/api/login", keyed);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(sessionIdOf(replay.headers.getSetCookie()[0]?.split(";")[0])).toBe(newId);
    expect(newId).not.toBe(oldId);
    const any = (await cluster.redisNodes())[0]!.address;
    expect(await cluster.redisCommandOn(any, "CLUSTER", "KEYSLOT", `sess:${newId}`)).toBe(
      await cluster.redisCommandOn(any, "CLUSTER", "KEYSLOT", `sess:${oldId}`),
    );
    const retry = await v.increment(key);
    expect(retry.headers.get("idempotent-replayed")).toBe("true");
    expect((await v.get("/api/me")).json).toMatchObject({ user: { name: "ada" }, count: 5 });
    // The old cookie's requests are refused for a while (409 session_replaced): the marker is in the slot too.
    const stale = await new Visitor(cluster.baseUrl(), oldCookie).increment();
    expect(stale.status).toBe(409);
  });

  it("doubles nothing when a primary is SIGKILLed under load and its replica takes over", async () => {
    let killed = "";
    const failover: Scenario = {
      name: "redis-cluster-failover",
      title: "SIGKILL one Redis Cluster primary under load; its replica takes over; start it again",
      expect: {},
      faults: async (ctx) => {
        const c = ctx.cluster as LocalCluster;
        await ctx.at(0.25);
        killed = await c.waitForPrimary();
        ctx.mark("redis", "down", `SIGKILL ${killed}`);
        await c.killRedisNode(killed, "SIGKILL");
        await c.waitForPrimary({ exclude: killed, timeoutMs: 30_000 });
        ctx.mark("redis", "up", "every slot served again");
        await ctx.at(0.7);
        await c.startRedisNode(killed);
      },
    };
    const r = await runScenario(failover, {
      kind: "local",
      cluster,
      counter: "atomic",
      users: 12,
      durationMs: 8000,
      progressEverySeconds: 0,
      log: () => {},
    });
    const once = r.verdict.checks.find((c) => c.name === "exactly-once")!;
    // Async replication may lose an acknowledged write that had not reached the replica: it is
    // reported (r.verdict.totals.lost), not hidden; a doubled increment is never acceptable.
    console.log(`redis-cluster failover: ${once.summary}`);
    expect(r.verdict.totals.duplicated).toBe(0);
    expect(r.verdict.totals.acknowledged).toBeGreaterThan(50);
    const nodes = await cluster.redisNodes();
    expect(nodes.find((n) => n.name === killed)).toMatchObject({ running: true, role: "replica" });
    expect(nodes.filter((n) => n.role === "primary" && n.running)).toHaveLength(3);
  });

  it("fails a frozen primary over (redis-partition: SIGSTOP), doubles nothing, other shards serve on", async () => {
    const r = await runScenario(findScenario("redis-partition"), {
      kind: "local",
      cluster,
      counter: "atomic",
      users: 12,
      durationMs: 6000,
      progressEverySeconds: 0,
      log: () => {},
    });
    const once = r.verdict.checks.find((c) => c.name === "exactly-once")!;
    console.log(`redis-cluster partition: ${once.summary}`);
    expect(r.verdict.totals.duplicated).toBe(0);
    expect(r.history.endHealth.ok, r.history.endHealth.detail).toBe(true);
    // The frozen primary's replica took over; woken, the old primary follows it.
    const frozen = /SIGSTOP \S+ s (redis-\d+)/.exec(r.history.events.find((e) => e.state === "down")!.label)![1]!;
    await waitFor(
      `${frozen} to rejoin as a replica`,
      async () => (await cluster.redisNodes()).find((n) => n.name === frozen)?.role === "replica",
      15_000,
      200,
    );
    expect((await cluster.redisNodes()).filter((n) => n.role === "primary" && n.running)).toHaveLength(3);
    // The other shards served on: some sessions (those not on the frozen shard) never saw a 503.
    const hit = new Set(r.history.ops.filter((o) => o.attempts.some((a) => a.status >= 500)).map((o) => o.user));
    expect(hit.size).toBeLessThan(12);
  });

  it("writes to a frozen primary's elected replica while it is still frozen, from failed commands alone", async () => {
    const nodes = await cluster.redisNodes();
    const config = loadConfig({
      NODE_ENV: "test",
      REDIS_CLUSTER_NODES: nodes.map((n) => n.address).join(","),
      REDIS_USERNAME: "app",
      REDIS_PASSWORD: cluster.redisPassword("app"),
    });
    // No timer refresh: only the refreshes that failed commands ask for can find the new primary.
    const client = new RefreshOnFailureCluster([...config.redis.clusterNodes], {
      ...clusterOptions(config),
      slotsRefreshInterval: 0,
    });
    client.on("error", () => {});
    try {
      await waitFor("the cluster client", async () => client.status === "ready", 15_000, 50);
      const key = "{sess:refresh-probe}:count";
      await client.set(key, "before");
      const slot = Number(await cluster.redisCommandOn(nodes[0]!.address, "CLUSTER", "KEYSLOT", key));
      const frozen = nodes.find((n) => n.address === client.slots[slot]![0])!.name;
      // A replica still in its first sync (the previous test's woken primary) cannot be elected.
      await waitFor(
        "every Redis replica to finish its sync",
        async () => {
          for (const n of (await cluster.redisNodes()).filter((x) => x.role === "replica" && x.running)) {
            if (!/^master_link_status:up/m.test(await cluster.redisCommandOn(n.address, "INFO", "replication")))
              return false;
          }
          return true;
        },
        30_000,
        200,
      );
      let stopped = true;
      const paused = cluster.pauseRedisNode(frozen, 20_000).finally(() => (stopped = false));
      await cluster.waitForPrimary({ exclude: frozen, timeoutMs: 20_000 });
      // Bounded: at most 100 tries, and only while the old primary is frozen (after SIGCONT it would
      // answer MOVED, which any client follows).
      let wroteWhileFrozen = false;
      for (let i = 0; i < 100 && stopped && !wroteWhileFrozen; i++) {
        try {
          await client.set(key, "after");
          wroteWhileFrozen = stopped;
        } catch {
          await sleep(100);
        }
      }
      await paused;
      expect(wroteWhileFrozen).toBe(true);
      expect(client.failureRefreshes).toBeGreaterThan(0);
      await waitFor(
        `${frozen} to rejoin as a replica`,
        async () => (await cluster.redisNodes()).find((n) => n.name === frozen)?.role === "replica",
        15_000,
        200,
      );
    } finally {
      client.disconnect();
    }
  });
});

describe("a Redis Cluster the app cannot serve from stops it at startup (exit 78)", { timeout: 60_000 }, () => {
  const procs: ChildProcess[] = [];
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "redis-topology-"));
  });
  afterAll(() => {
    for (const p of procs) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  async function redisServer(args: string[]): Promise<number> {
    const port = await freePort();
    const p = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", ...args], {
      stdio: "ignore",
    });
    procs.push(p);
    await waitFor(`redis-server on ${port}`, async () => {
      const { stdout } = await run("redis-cli", ["-p", String(port), "PING"]);
      return stdout.trim() === "PONG";
    });
    return port;
  }

  /** Starts a replica with REDIS_CLUSTER_NODES and waits for it to exit (it must). */
  async function startReplica(nodes: string): Promise<{ code: number | null; stderr: string }> {
    const child = spawn(process.execPath, [serverEntry], {
      env: {
        PATH: process.env.PATH,
        NODE_ENV: "test",
        PORT: "0",
        OPS_PORT: "0",
        LOG_LEVEL: "silent",
        REDIS_CLUSTER_NODES: nodes,
        REDIS_CONNECT_TIMEOUT_MS: "200",
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    procs.push(child);
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((done) => child.once("exit", done));
    return { code, stderr };
  }

  it("names every seed that does not answer", async () => {
    const [a, b] = [await freePort(), await freePort()];
    const r = await startReplica(`127.0.0.1:${a},127.0.0.1:${b}`);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`REDIS_CLUSTER_NODES: 127.0.0.1:${a} does not answer`);
    expect(r.stderr).toContain(`REDIS_CLUSTER_NODES: 127.0.0.1:${b} does not answer`);
  });

  it("names the hash slots no primary serves", async () => {
    const port = await redisServer([
      "--cluster-enabled",
      "yes",
      "--cluster-port",
      String(await freePort()),
      "--cluster-config-file",
      join(dir, "nodes.conf"),
      "--dir",
      dir,
    ]);
    await run("redis-cli", ["-p", String(port), "CLUSTER", "ADDSLOTSRANGE", "0", "8191"]);
    const r = await startReplica(`127.0.0.1:${port}`);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain("hash slots 8192-16383 have no primary");
  });

  it("says when a seed is a Redis without cluster mode", async () => {
    const port = await redisServer([]);
    const r = await startReplica(`127.0.0.1:${port}`);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`127.0.0.1:${port} is a Redis without cluster mode (cluster-enabled no)`);
  });
});
