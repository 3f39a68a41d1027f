// REDIS=sentinel in Docker Compose (docker-compose.sentinel.yml): a primary, two replicas and
// three Sentinels in containers, the app finding the primary through them, and a short
// redis-failover run whose verdict must hold. Without a Docker engine it prints
// `skipped: no Docker engine` and skips, unless REQUIRE_DOCKER=1 (CI), where that is a failure.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ComposeCluster } from "../infra/cluster/compose-cluster.ts";
import { docker } from "../infra/cluster/docker.ts";
import { LOAD_APP_ENV } from "../loadtest/client/load-env.ts";
import { runScenario } from "../loadtest/harness/run-scenario.ts";
import { findScenario } from "../loadtest/harness/scenarios.ts";
import { composeTierRuns } from "./compose-tier.ts";

if (!composeTierRuns("the Compose Sentinel tier")) {
  describe.skip("REDIS=sentinel (Docker Compose)", () => it("needs a Docker engine", () => {}));
} else {
  describe("REDIS=sentinel (Docker Compose)", { timeout: 900_000 }, () => {
    let cluster: ComposeCluster;
    beforeAll(async () => {
      cluster = ComposeCluster.create({
        dir: mkdtempSync(join(tmpdir(), "compose-sentinel-")),
        project: `esc-test-${randomBytes(4).toString("hex")}`,
        replicas: 2,
        port: 0,
        redis: "sentinel",
        // As the harness starts a cluster for load: every simulated user is 127.0.0.1.
        appEnv: { ...LOAD_APP_ENV, COUNTER: "atomic", REDIS_WAIT_REPLICAS: "1" },
        clientLimits: false,
      });
      await cluster.start();
    }, 900_000);
    afterAll(async () => {
      await cluster?.stop();
    }, 120_000);

    it("runs a primary, two replicas and three Sentinels on the internal network, with the ACL users", async () => {
      const nodes = await cluster.redisNodes();
      expect(nodes.map((n) => `${n.name} ${n.role} ${n.running}`)).toEqual([
        "redis-1 primary true",
        "redis-2 replica true",
        "redis-3 replica true",
        "sentinel-1 sentinel true",
        "sentinel-2 sentinel true",
        "sentinel-3 sentinel true",
      ]);
      const users = (await cluster.redisCommand("ACL", "USERS")).split("\n").sort();
      expect(users).toEqual(["admin", "app", "default", "health", "replication", "sentinel"]);
      expect(await cluster.redisCommand("CONFIG", "GET", "appendonly")).toBe("appendonly\nyes");
      const label = `label=com.docker.compose.project=${cluster.project}`;
      const ids = (await docker(["ps", "-q", "--filter", label])).split("\n").filter(Boolean);
      type Inspect = { Id: string; Config: { Labels: Record<string, string> }; NetworkSettings: { Networks: object } };
      const secretsDir = join(cluster.dir, "secrets");
      const passwords = readdirSync(secretsDir)
        .filter((f) => f.endsWith("_password"))
        .map((f) => readFileSync(join(secretsDir, f), "utf8").trim());
      for (const c of JSON.parse(await docker(["inspect", ...ids])) as Inspect[]) {
        const service = c.Config.Labels["com.docker.compose.service"]!;
        if (!/^(redis|sentinel)/.test(service)) continue;
        expect(
          Object.keys(c.NetworkSettings.Networks).map((n) => n.replace(/^.*_/, "")),
          service,
        ).toEqual(["store"]);
        const top = await docker(["top", c.Id, "-eo", "pid,args"]);
        for (const pw of passwords) expect(top, service).not.toContain(pw);
      }
    });

    it("redis-failover with WAIT 1: SIGKILLed primaries lose and double nothing, and writes resume", async () => {
      // A few users and a short run: the point is the failover path in containers, not load.
      const r = await runScenario(findScenario("redis-failover"), {
        kind: "compose",
        cluster,
        redis: "sentinel",
        counter: "atomic",
        users: 5,
        durationMs: 20_000,
        waitReplicas: 1,
        log: () => {},
      });
      const checks = JSON.stringify(r.verdict.checks);
      expect(r.verdict.totals.lost, checks).toBe(0);
      expect(r.verdict.totals.duplicated, checks).toBe(0);
      // No answer ever carried a count that was not the session's own next one, or went back.
      for (const name of ["exactly-once", "monotonic", "bounds"])
        expect(r.verdict.checks.find((c) => c.name === name)?.ok, checks).toBe(true);
      const failovers = r.verdict.checks.find((c) => c.name === "failovers");
      console.log(`compose sentinel failover: ${failovers?.summary}`);
      expect(failovers?.summary, checks).toMatch(/^#1 SIGKILL redis-\d .*#2 SIGKILL redis-\d /);
      expect(failovers?.summary, checks).not.toMatch(/never/);
      expect(r.pass, checks).toBe(true);
    });
  });
}
