// Unit tests sit next to their source; integration tests start real processes, so test
// files run one at a time on this 2-core box instead of fighting over it.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["services/**/*.test.ts", "infra/**/*.test.ts", "loadtest/**/*.test.ts", "test/**/*.test.ts"],
    pool: "forks",
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // verbose: every test's name in the output (CI shows the Compose tier really ran);
    // json: the counts behind the closing "N passed, N failed" line `make test` prints.
    reporters: ["verbose", ["json", { outputFile: "loadtest/reports/vitest.json" }]],
  },
});
