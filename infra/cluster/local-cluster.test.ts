// The shared cluster scenarios against real redis-server, nginx and Node processes.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clusterScenarios } from "../../test/cluster-scenarios.ts";
import { LocalCluster } from "./local-cluster.ts";

clusterScenarios("local processes", (opts) =>
  LocalCluster.create({ ...opts, dir: mkdtempSync(join(tmpdir(), "cluster-")) }),
);
