// What the load tools share about processes: where the repository is, how report folders
// are stamped, the command runner, and stopping what a run started when it is interrupted.
import { resolve } from "node:path";

export { run } from "../../infra/cluster/docker.ts";

export const repoRoot = resolve(import.meta.dirname, "../..");

/** A time stamp usable in a file name, to the second: 2026-11-30T09-30-07. */
export function fileStamp(at: Date = new Date()): string {
  return at.toISOString().replace(/[:.]/g, "-").slice(0, 19);
}

/**
 * On the first SIGINT or SIGTERM, runs `cleanup` (stopping clusters and processes a run
 * started detached, which would otherwise outlive it), then exits 130.
 */
export function onInterrupt(cleanup: (signal: NodeJS.Signals) => Promise<unknown>): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      void cleanup(signal)
        .catch(() => {})
        .finally(() => process.exit(130));
    });
  }
}
