// Picks the Cluster implementation: CLUSTER=local|compose, or auto (Compose when a Docker
// engine answers, local processes otherwise), and finds the one `make up` left running.
import { join, resolve } from "node:path";
import type { Cluster, ClusterOptions } from "./cluster.ts";
import { ComposeCluster } from "./compose-cluster.ts";
import { dockerAvailable } from "./docker.ts";
import { LocalCluster } from "./local-cluster.ts";

export { dockerAvailable };

// Where `make up` keeps the running cluster's state; tests point it elsewhere.
export const RUN_DIR = resolve(process.env.CLUSTER_RUN_DIR ?? resolve(import.meta.dirname, "../../.run"));
export const LOCAL_DIR = join(RUN_DIR, "local");
/** Also where docker-compose.yml looks for the secrets by default (SECRETS_DIR). */
export const COMPOSE_DIR = join(RUN_DIR, "compose");

export type ClusterKind = "local" | "compose";

export function chooseKind(requested = process.env.CLUSTER || "auto"): ClusterKind {
  if (requested === "local") return requested;
  if (requested === "compose") {
    if (!dockerAvailable()) throw new Error("CLUSTER=compose but no Docker engine answers `docker info`; start dockerd, or use CLUSTER=local");
    return requested;
  }
  if (requested !== "auto") throw new Error(`CLUSTER must be auto, local or compose, not "${requested}"`);
  return dockerAvailable() ? "compose" : "local";
}

export async function createCluster(kind: ClusterKind, opts: ClusterOptions & { dir?: string; log?: (line: string) => void }): Promise<Cluster> {
  if (kind === "compose") return ComposeCluster.create({ ...opts, dir: opts.dir ?? COMPOSE_DIR });
  return LocalCluster.create({ ...opts, dir: opts.dir ?? LOCAL_DIR });
}

/** The cluster `make up` started, or undefined when none is up. */
export async function attachCluster(): Promise<Cluster | undefined> {
  return ComposeCluster.attach(COMPOSE_DIR) ?? LocalCluster.attach(LOCAL_DIR);
}
