// Picks the Cluster implementation: CLUSTER=local|compose, or auto (Compose when a Docker
// engine answers, local processes otherwise), and finds the one `make up` left running.
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import type { Cluster, ClusterOptions } from "./cluster.ts";
import { LocalCluster } from "./local-cluster.ts";

// Where `make up` keeps the running cluster's state; tests point it elsewhere.
export const RUN_DIR = resolve(process.env.CLUSTER_RUN_DIR ?? resolve(import.meta.dirname, "../../.run"));
export const LOCAL_DIR = join(RUN_DIR, "local");

export type ClusterKind = "local" | "compose";

export function dockerAvailable(): boolean {
  try {
    execFileSync("docker", ["info", "--format", "{{.ServerVersion}}"], { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

export function chooseKind(requested = process.env.CLUSTER ?? "auto"): ClusterKind {
  if (requested === "local") return requested;
  if (requested === "compose") throw new Error("the Compose cluster is not available yet; use CLUSTER=local");
  if (requested !== "auto") throw new Error(`CLUSTER must be auto, local or compose, not "${requested}"`);
  return "local";
}

export async function createCluster(_kind: ClusterKind, opts: ClusterOptions & { dir?: string }): Promise<Cluster> {
  return LocalCluster.create({ ...opts, dir: opts.dir ?? LOCAL_DIR });
}

/** The cluster `make up` started, or undefined when none is up. */
export async function attachCluster(): Promise<Cluster | undefined> {
  return LocalCluster.attach(LOCAL_DIR);
}
