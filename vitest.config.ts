// Two projects. `unit` needs no nginx, no cluster and no Docker (pure tests, the app in-process
// on port 0, a local redis-server): its files run side by side and finish in seconds
// (`make test-unit`). `integration` starts real clusters, so its files run one at a time on
// this 2-core box instead of fighting over it. `vitest run` runs both, unit first (groupOrder).
import { configDefaults, defineConfig } from "vitest/config";

// Every test file that starts nginx, a cluster (LocalCluster, ComposeCluster) or containers, or runs the
// compose CLI.
// A new file is a unit test unless it is listed here (or lives under test/).
export const INTEGRATION = [
  "test/**/*.test.ts",
  "infra/cluster/local-cluster.test.ts",
  "infra/cluster/compose-cluster.test.ts",
  "infra/cluster/compose-security.test.ts",
  "infra/cluster/swarm-cluster.test.ts",
  "infra/swarm/stack.test.ts",
  "infra/swarm/nginx-entrypoint.test.ts",
  "loadtest/harness/scenarios.test.ts",
  "loadtest/bench/bench.test.ts",
];

export const UNIT = ["services/**/*.test.ts", "infra/**/*.test.ts", "loadtest/**/*.test.ts"];

export default defineConfig({
  test: {
    pool: "forks",
    // verbose: every test's name in the output (CI shows the Compose tier really ran);
    // json: the counts behind the closing "N passed, N failed" line `make test` prints.
    reporters: ["verbose", ["json", { outputFile: "loadtest/reports/vitest.json" }]],
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: UNIT,
          exclude: [...configDefaults.exclude, ...INTEGRATION],
          // test/redis-server.ts: a local redis-server (tens of ms) rather than a container,
          // except under REQUIRE_DOCKER=1 (CI), where session.test.ts runs on the real image.
          env: { TEST_REDIS: process.env.TEST_REDIS ?? (process.env.REQUIRE_DOCKER === "1" ? "container" : "process") },
          // Most of the time goes to waiting on child processes (server.ts, logger fixtures,
          // redis-server), not CPU: three files at once beat vitest's default of cores - 1.
          maxWorkers: 3,
          // Files reuse a worker and its loaded modules (express, ioredis, pino) instead of a
          // fresh fork each: a third less CPU. So a unit test must leave no global state behind
          // (process.env, patched prototypes, vi.mock without restore).
          isolate: false,
          testTimeout: 20_000,
          hookTimeout: 30_000,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: INTEGRATION,
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 120_000,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
