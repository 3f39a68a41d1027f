// The shared cluster scenarios on a Docker Swarm stack (SwarmCluster), plus what only an
// orchestrator does: replace a SIGKILLed task by itself, and roll every task under load.
// Without a Docker engine it skips, unless REQUIRE_DOCKER=1 (CI). A swarm this file had to
// create is left again by the last cluster's stop(), so the engine ends as it started.
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterScenarios } from "../../test/cluster-scenarios.ts";
import { Visitor } from "../../loadtest/client/visitor.ts";
import { composeCommand, dockerAvailable } from "./docker.ts";
import { SwarmCluster } from "./swarm-cluster.ts";

const missing = !dockerAvailable()
  ? "no Docker engine"
  : !composeCommand()
    ? "no docker compose or docker-compose"
    : undefined;

const make = (opts: Parameters<typeof SwarmCluster.create>[0] extends infer O ? Omit<O, "dir"> : never) =>
  SwarmCluster.create({
    ...opts,
    dir: mkdtempSync(join(tmpdir(), "swarm-cluster-")),
    stack: `esc-test-${randomBytes(4).toString("hex")}`,
  });

if (process.env.SWARM_TEST !== "1") {
  // Opt-in until this tier has passed on a quiet machine: the Swarm driver is work in progress
  // (issue 13), and CI must not depend on it yet.
  console.log("skipped: the Docker Swarm tier runs only with SWARM_TEST=1 (work in progress, issue 13)");
  describe.skip("Docker Swarm", () => it("runs with SWARM_TEST=1", () => {}));
} else if (missing) {
  if (process.env.REQUIRE_DOCKER === "1")
    throw new Error(`REQUIRE_DOCKER=1 but there is ${missing}: the Swarm tier cannot run`);
  console.log(`skipped: ${missing} (the Docker Swarm tier needs one; REQUIRE_DOCKER=1 turns this into a failure)`);
  describe.skip("Docker Swarm", () => it("needs a Docker engine", () => {}));
} else {
  clusterScenarios("Docker Swarm", (opts) => make(opts), { start: 600_000 });

  describe("Docker Swarm: what the orchestrator does by itself", () => {
    let cluster: SwarmCluster;
    beforeAll(async () => {
      cluster = make({ replicas: 3, port: 0, clientLimits: false });
      await cluster.start();
    }, 600_000);
    afterAll(async () => {
      await cluster?.stop();
    }, 600_000);

    it("replaces a SIGKILLed task by itself; nginx routes to the new one while the count goes on", async () => {
      const v = new Visitor(cluster.baseUrl());
      let count = 0;
      const next = async () => {
        const r = await v.increment(randomUUID());
        expect(r.status).toBe(200);
        expect(r.json?.count).toBe(++count);
        return r.replica;
      };
      for (let i = 0; i < 3; i++) await next();
      await cluster.killReplica(2, "SIGKILL");
      let back = false;
      for (let i = 0; i < 2000 && !back; i++) back = (await next()) === "app-2";
      expect(back).toBe(true);
    }, 300_000);

    it("loses and doubles no keyed increment through `docker service update --force` under load", async () => {
      const visitors = Array.from({ length: 4 }, () => new Visitor(cluster.baseUrl()));
      const counts: number[][] = visitors.map(() => []);
      const statuses: number[] = [];
      let stop = false;
      const load = Promise.all(
        visitors.map(async (v, i) => {
          for (let n = 0; !stop && n < 20_000; n++) {
            const r = await v.increment(randomUUID());
            statuses.push(r.status);
            if (r.status === 200) counts[i]!.push(r.json?.count as number);
          }
        }),
      );
      try {
        await cluster.rollingUpdate();
      } finally {
        stop = true;
        await load;
      }
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      for (const c of counts) expect(c).toEqual(Array.from({ length: c.length }, (_, k) => k + 1));
    }, 600_000);
  });
}
