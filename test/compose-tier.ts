// Whether the Docker Compose tier can run here: a Docker engine and docker compose (v2) or
// docker-compose (1.29). Without them a Compose test file skips, printing why, unless
// REQUIRE_DOCKER=1 (CI), where that is a failure.

import { composeCommand, dockerAvailable } from "../infra/cluster/docker.ts";

/** True when `tier`'s tests can run; otherwise says why (and throws under REQUIRE_DOCKER=1). */
export function composeTierRuns(tier: string): boolean {
  const missing = !dockerAvailable()
    ? "no Docker engine"
    : !composeCommand()
      ? "no docker compose or docker-compose"
      : undefined;
  if (!missing) return true;
  if (process.env.REQUIRE_DOCKER === "1")
    throw new Error(`REQUIRE_DOCKER=1 but there is ${missing}: ${tier} cannot run`);
  console.log(`skipped: ${missing} (${tier} needs one; REQUIRE_DOCKER=1 turns this into a failure)`);
  return false;
}
