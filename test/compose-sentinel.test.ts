// REDIS=sentinel in Docker Compose (docker-compose.sentinel.yml): a primary, two replicas and
// three Sentinels in containers, the app finding the primary through them, and a short
// redis-failover run whose verdict must hold. Without a Docker engine it prints
// `skipped: no Docker engine` and skips, unless REQUIRE_DOCKER=1 (CI), where that is a failure.
import { describe, expect, it } from "vitest";
import { composeCommand, dockerAvailable } from "../infra/cluster/docker.ts";
import { runScenario } from "../loadtest/harness/run-scenario.ts";
import { findScenario } from "../loadtest/harness/scenarios.ts";

const missing = !dockerAvailable()
  ? "no Docker engine"
  : !composeCommand()
    ? "no docker compose or docker-compose"
    : undefined;

if (missing) {
  if (process.env.REQUIRE_DOCKER === "1")
    throw new Error(`REQUIRE_DOCKER=1 but there is ${missing}: the Compose Sentinel tier cannot run`);
  console.log(`skipped: ${missing} (the Compose Sentinel tier needs one; REQUIRE_DOCKER=1 turns this into a failure)`);
  describe.skip("REDIS=sentinel (Docker Compose)", () => it("needs a Docker engine", () => {}));
} else {
  describe("REDIS=sentinel (Docker Compose)", { timeout: 900_000 }, () => {
    it("redis-failover with WAIT 1: SIGKILLed primaries lose and double nothing, and writes resume", async () => {
      // A few users and a short run: the point is the failover path in containers, not load.
      const r = await runScenario(findScenario("redis-failover"), {
        kind: "compose",
        redis: "sentinel",
        counter: "atomic",
        users: 5,
        durationMs: 20_000,
        replicas: 2,
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
      expect(failovers?.summary, checks).toMatch(/^#1 SIGKILL redis-\d .*#2 SIGKILL redis-\d /);
      expect(failovers?.summary, checks).not.toMatch(/never/);
      expect(r.pass, checks).toBe(true);
    });
  });
}
