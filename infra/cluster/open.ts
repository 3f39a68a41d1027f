// Picks the Cluster implementation: CLUSTER=local|compose|swarm, or auto (Compose when a Docker
// engine answers, local processes otherwise), and finds the one `make up` left running.
import { basename, join, resolve } from "node:path";
import type { Cluster, ClusterOptions } from "./cluster.ts";
import { ComposeCluster, type ComposeClusterOptions } from "./compose-cluster.ts";
import { defaultProjectName, dockerAvailable } from "./docker.ts";
import { LocalCluster, type LocalClusterOptions } from "./local-cluster.ts";
import { SwarmCluster, type SwarmClusterOptions } from "./swarm-cluster.ts";

export { dockerAvailable };

// Where `make up` keeps the running cluster's state; tests point it elsewhere.
export const RUN_DIR = resolve(process.env.CLUSTER_RUN_DIR ?? resolve(import.meta.dirname, "../../.run"));
export const LOCAL_DIR = join(RUN_DIR, "local");
/** Also where docker-compose.yml looks for the secrets by default (SECRETS_DIR). */
export const COMPOSE_DIR = join(RUN_DIR, "compose");
export const SWARM_DIR = join(RUN_DIR, "swarm");

export type ClusterKind = "local" | "compose" | "swarm";

export function chooseKind(requested = process.env.CLUSTER || "auto"): ClusterKind {
  if (requested === "local") return requested;
  if (requested === "compose" || requested === "swarm") {
    if (!dockerAvailable())
      throw new Error(
        `CLUSTER=${requested} but no Docker engine answers \`docker info\`; start dockerd, or use CLUSTER=local`,
      );
    return requested;
  }
  if (requested !== "auto") throw new Error(`CLUSTER must be auto, local, compose or swarm, not "${requested}"`);
  return dockerAvailable() ? "compose" : "local";
}

type Where = { dir?: string };

/**
 * A new cluster of `kind`; nothing runs until start(). Without `dir` it is the one `make up`
 * keeps in RUN_DIR. A Compose cluster in a folder of its own (tests, `make verify`) also gets
 * a project of its own, named after the folder, so it never touches the one `make up` started.
 * Driver-only options type-check only with that driver's kind.
 */
export function createCluster(kind: "local", opts: Omit<LocalClusterOptions, "dir"> & Where): LocalCluster;
export function createCluster(kind: "compose", opts: Omit<ComposeClusterOptions, "dir"> & Where): ComposeCluster;
export function createCluster(kind: "swarm", opts: Omit<SwarmClusterOptions, "dir"> & Where): SwarmCluster;
export function createCluster(kind: ClusterKind, opts: ClusterOptions & Where): Cluster;
export function createCluster(
  kind: ClusterKind,
  opts: (Omit<LocalClusterOptions, "dir"> | Omit<ComposeClusterOptions, "dir">) & Where,
): Cluster {
  if (kind === "local") return LocalCluster.create({ ...opts, dir: opts.dir ?? LOCAL_DIR });
  if (opts.redis === "cluster") throw new Error("REDIS=cluster runs as local processes only: add CLUSTER=local");
  if (kind === "swarm") {
    if (opts.redis && opts.redis !== "single")
      throw new Error(
        "CLUSTER=swarm runs one Redis: use REDIS=single, or REDIS=sentinel with CLUSTER=compose or local",
      );
    // A stack of its own for a cluster in a folder of its own (tests, `make verify`).
    const o = opts as Omit<SwarmClusterOptions, "dir"> & Where;
    const stack = o.stack ?? (o.dir ? defaultProjectName(`esc-${basename(o.dir)}`) : undefined);
    return SwarmCluster.create({ ...o, dir: o.dir ?? SWARM_DIR, ...(stack ? { stack } : {}) });
  }
  const o = opts as Omit<ComposeClusterOptions, "dir"> & Where;
  const project = o.project ?? (o.dir ? defaultProjectName(`esc-${basename(o.dir)}`) : undefined);
  return ComposeCluster.create({ ...o, dir: o.dir ?? COMPOSE_DIR, ...(project ? { project } : {}) });
}

/** The cluster `make up` started, or undefined when none is up. */
export async function attachCluster(): Promise<Cluster | undefined> {
  return ComposeCluster.attach(COMPOSE_DIR) ?? SwarmCluster.attach(SWARM_DIR) ?? LocalCluster.attach(LOCAL_DIR);
}
