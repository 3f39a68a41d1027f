// REDIS=sentinel with real processes: a primary, two replicas and three Sentinels (local
// driver), the app refusing a wrong topology at start (exit 78), and the short variants of the
// failover scenarios, whose verdict must hold: nothing doubled, nothing lost with WAIT 1.
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { freePort } from "../infra/cluster/ports.ts";
import { runScenario } from "../loadtest/harness/run-scenario.ts";
import { findScenario } from "../loadtest/harness/scenarios.ts";

const entry = fileURLToPath(new URL("../services/app/src/server.ts", import.meta.url));

/** Starts a replica with `env`; resolves with its exit code and stderr, or "running" if it is still up after `ms`. */
function startApp(env: Record<string, string>, ms = 15_000): Promise<{ code: number | "running"; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [entry], {
      env: { PATH: process.env.PATH, NODE_ENV: "test", PORT: "0", OPS_PORT: "0", ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve({ code: "running", stderr });
    }, ms);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stderr });
    });
  });
}

describe("REDIS=sentinel (local processes)", { timeout: 180_000 }, () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = LocalCluster.create({
      dir: mkdtempSync(join(tmpdir(), "sentinel-test-")),
      replicas: 1,
      port: 0,
      clientLimits: false,
      redis: "sentinel",
    });
    await cluster.start();
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 60_000);

  it("runs one primary, two replicas and three Sentinels, and fails over when the primary is SIGKILLed", async () => {
    const nodes = await cluster.redisNodes();
    expect(nodes.map((n) => n.role).sort()).toEqual([
      "primary",
      "replica",
      "replica",
      "sentinel",
      "sentinel",
      "sentinel",
    ]);
    expect(nodes.every((n) => n.running)).toBe(true);
    const primary = await cluster.waitForPrimary();
    await cluster.killRedisNode(primary, "SIGKILL");
    const next = await cluster.waitForPrimary({ exclude: primary });
    expect(next).not.toBe(primary);
    await cluster.startRedisNode(primary);
    // Back only once it replicates from the new primary with its sync done (a candidate for the next failover).
    const back = (await cluster.redisNodes()).find((n) => n.name === primary)!;
    expect(back.role).toBe("replica");
    const info = await cluster.redisCommandOn(back.address, "INFO", "replication");
    expect(info).toMatch(/^master_link_status:up/m);
    expect(info).toMatch(/^master_sync_in_progress:0/m);
    const r = await fetch(`${cluster.baseUrl()}/api/counter`, { method: "POST" });
    expect(r.status).toBe(200);
  });

  const sentinelEnv = () => {
    return {
      REDIS_USERNAME: "app",
      REDIS_PASSWORD: cluster.redisPassword("app"),
      REDIS_SENTINEL_USERNAME: "app",
      REDIS_SENTINEL_PASSWORD: cluster.redisPassword("app"),
    };
  };

  it("refuses to start (exit 78) when no Sentinel answers at the configured address, naming it", async () => {
    const port = await freePort();
    const r = await startApp({
      ...sentinelEnv(),
      REDIS_SENTINELS: `127.0.0.1:${port}`,
      REDIS_SENTINEL_NAME: "sessions",
    });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`REDIS_SENTINELS: Sentinel 127.0.0.1:${port} did not answer`);
  });

  it("refuses to start (exit 78) when the Sentinels monitor no master of that name", async () => {
    const sentinels = (await cluster.redisNodes()).filter((n) => n.role === "sentinel").map((n) => n.address);
    const r = await startApp({ ...sentinelEnv(), REDIS_SENTINELS: sentinels.join(","), REDIS_SENTINEL_NAME: "nope" });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`REDIS_SENTINEL_NAME: Sentinel ${sentinels[0]} monitors no master named "nope"`);
  });

  it("refuses to start (exit 78) when the address is a Redis server, not a Sentinel", async () => {
    const server = (await cluster.redisNodes()).find((n) => n.role === "replica")!.address;
    const r = await startApp({ ...sentinelEnv(), REDIS_SENTINELS: server, REDIS_SENTINEL_NAME: "sessions" });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`REDIS_SENTINELS: ${server} is not a Sentinel`);
  });
});

describe("failover scenarios, short (REDIS=sentinel, local processes)", { timeout: 240_000 }, () => {
  const short = { kind: "local" as const, counter: "atomic" as const, users: 10, durationMs: 8000, replicas: 2 };

  // `failovers`: what the scenario's failovers check must report, where it is specific.
  it.each([
    {
      scenario: "redis-failover",
      outcome: "two SIGKILLs of the primary lose and double no acknowledged increment",
      failovers: /^#1 SIGKILL redis-\d .*#2 SIGKILL/,
    },
    {
      scenario: "redis-partition",
      outcome: "a paused primary is replaced and no acknowledged increment is lost",
      failovers: undefined,
    },
  ])("$scenario with WAIT 1: $outcome", async ({ scenario, failovers }) => {
    const r = await runScenario(findScenario(scenario), {
      ...short,
      redis: "sentinel",
      waitReplicas: 1,
      log: () => {},
    });
    expect(r.verdict.totals.duplicated).toBe(0);
    expect(r.verdict.totals.lost).toBe(0);
    if (failovers) expect(r.verdict.checks.find((c) => c.name === "failovers")?.summary).toMatch(failovers);
    expect(r.pass, JSON.stringify(r.verdict.checks)).toBe(true);
  });

  it("refuses a failover scenario on a single Redis, which cannot fail over", async () => {
    await expect(runScenario(findScenario("redis-failover"), { ...short, log: () => {} })).rejects.toThrow(
      /needs a Redis that fails over: REDIS=sentinel/,
    );
  });
});
