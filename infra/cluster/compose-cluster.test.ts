// The shared cluster scenarios against real containers: Docker Compose (v2, or 1.29 where
// only that exists) on a real Docker engine. Without an engine it prints
// `skipped: no Docker engine` and skips, unless REQUIRE_DOCKER=1 (CI), where that is a failure.
//
// This tier drives Compose through the Compose Cluster driver rather than testcontainers'
// DockerComposeEnvironment: the tests then run exactly the code `make up`, `make kill` and
// `make scale` run (reloading nginx after a scale is part of what is under test), scenarios
// need single-container kill/start and --scale that the environment does not offer, and its
// default of `docker compose` v2 would need its standalone-executable option for 1.29 here.
// testcontainers does give the Redis-layer tests their Redis (test/redis-server.ts).
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "vitest";
import { clusterScenarios } from "../../test/cluster-scenarios.ts";
import { composeTierRuns } from "../../test/compose-tier.ts";
import { ComposeCluster } from "./compose-cluster.ts";

if (!composeTierRuns("the Docker Compose tier")) {
  describe.skip("Docker Compose", () => it("needs a Docker engine", () => {}));
} else {
  // A project name of its own per cluster, so a test never touches a `make up` cluster.
  clusterScenarios(
    "Docker Compose",
    (opts) =>
      ComposeCluster.create({
        ...opts,
        dir: mkdtempSync(join(tmpdir(), "compose-cluster-")),
        project: `esc-test-${randomBytes(4).toString("hex")}`,
      }),
    { start: 600_000 },
  );
}
