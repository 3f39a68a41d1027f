// The JSON log lines every app replica of a local cluster wrote, for tests that look for an event.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { LocalCluster } from "../infra/cluster/local-cluster.ts";

export type AppLogLine = Record<string, unknown> & { level?: number; event?: string; req?: { id?: string } };

/** Every JSON line in the cluster's app-N logs, file by file. */
export function appLogLines(cluster: LocalCluster): AppLogLine[] {
  const dir = join(cluster.dir, "logs");
  return readdirSync(dir)
    .filter((f) => f.startsWith("app-"))
    .flatMap((f) => readFileSync(join(dir, f), "utf8").split("\n"))
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as AppLogLine);
}
