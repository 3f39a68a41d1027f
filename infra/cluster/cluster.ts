// The one interface every consumer drives a cluster through: `make up` and friends
// (infra/cli.ts), the integration tests and the load harness. Three implementations:
// local processes (local-cluster.ts), Docker Compose (compose-cluster.ts) and Docker Swarm (swarm-cluster.ts).

export type Signal = "SIGTERM" | "SIGKILL";

/** How Redis runs: one server (default), a primary with replicas behind Sentinels, or Redis Cluster. */
export type RedisTopology = "single" | "sentinel" | "cluster";

/** A REDIS= value checked: the topology, or an error naming the choices. */
export function parseRedisTopology(value: string | undefined): RedisTopology {
  const v = value === undefined || value === "" ? "single" : value;
  if (v === "single" || v === "sentinel" || v === "cluster") return v;
  throw new Error(`REDIS must be single, sentinel or cluster, not "${value}"`);
}

export type RedisNodeInfo = {
  /** Stable across restarts and failovers (e.g. redis-1, sentinel-2); what killRedisNode takes. */
  name: string;
  /** The role the node has now (a failover changes it); a stopped node keeps its last known role. */
  role: "primary" | "replica" | "sentinel";
  running: boolean;
  /** host:port, for people and for redis-cli. */
  address: string;
};

/** What every driver honours; each driver's own options are in its own type. */
export type ClusterOptions = {
  /** Number of app replicas (default 3). */
  replicas?: number;
  /** Port the load balancer publishes on 127.0.0.1; 0 picks a free one. */
  port?: number;
  /** Extra environment for every replica (STORE, COUNTER, SESSION_SECRETS, ...). */
  appEnv?: Record<string, string>;
  /**
   * nginx's limits per client address: requests a second (with a burst) and requests in
   * flight; answered with a JSON 429. Default on (infra/cluster/client-limits.ts); `false` for
   * load generators, whose every client is 127.0.0.1 (benchmarks, the harness, load tests).
   */
  clientLimits?: ClientLimits | false;
  /** How Redis runs (default "single"); `make up REDIS=...`, and the app is configured to match. */
  redis?: RedisTopology;
};

/** `rate` requests a second per client address, `burst` on top at once, `connections` in flight (0: no such limit). */
export type ClientLimits = { rate: number; burst: number; connections: number };

export type ReplicaInfo = {
  /** 1-based, stable across restarts; what `make kill REPLICA=n` takes. */
  index: number;
  /** `app-<index>` in every driver. */
  name: string;
  /**
   * The id the replica reports in X-Replica and in its metrics' `replica` label: its name for
   * local processes, the container's hostname (short container id) in Compose.
   */
  replicaId: string;
  running: boolean;
  /** Where it runs, for people: the container's name (Compose) or its direct URL (local). */
  detail: string;
};

export interface Cluster {
  readonly kind: "local" | "compose" | "swarm";
  /** The load balancer's URL, e.g. http://127.0.0.1:8080. */
  baseUrl(): string;
  /** Starts Redis, the replicas and nginx, and resolves once every replica is ready. */
  start(): Promise<void>;
  /** Stops everything and removes what start() created (data included). */
  stop(): Promise<void>;
  replicas(): Promise<ReplicaInfo[]>;
  /** Sends the signal and resolves once the replica has exited. */
  killReplica(index: number, signal: Signal): Promise<void>;
  /** Starts a stopped replica (same index, same name) and resolves once it is ready. */
  startReplica(index: number): Promise<void>;
  /** Every replica down (SIGTERM), then up again; resolves once all are ready. */
  restartReplicas(): Promise<void>;
  /** Changes the number of replicas; nginx follows. */
  scale(replicas: number): Promise<void>;
  stopRedis(signal: Signal): Promise<void>;
  startRedis(): Promise<void>;
  /** Every Redis node (servers and Sentinels) with its current role. */
  redisNodes(): Promise<RedisNodeInfo[]>;
  /** Sends the signal to one Redis node (a name from redisNodes()) and resolves once it has exited. */
  killRedisNode(name: string, signal: Signal): Promise<void>;
  /** Starts a stopped Redis node again (same name, same data); a former primary rejoins as a replica. */
  startRedisNode(name: string): Promise<void>;
  /**
   * Cuts one Redis node off for `ms` without killing it (it answers neither clients nor its peers),
   * then lets it carry on; resolves once it runs again. Where a driver has it: local Redis Cluster.
   */
  pauseRedisNode?(name: string, ms: number): Promise<void>;
  /**
   * Resolves with the name of a primary that serves writes, other than `exclude` (the one just
   * killed), once there is one; rejects after `timeoutMs` (default 30 s).
   */
  waitForPrimary(opts?: { exclude?: string; timeoutMs?: number }): Promise<string>;
  /** Runs one command on the cluster's Redis (for tests and reports: keys, INFO, MEMORY USAGE). */
  redisCommand(...args: string[]): Promise<string>;
  /** Recent log lines of every component, oldest first. */
  logs(lines?: number): Promise<string>;
  /**
   * GETs `path` on one replica's operator listener (/healthz, /readyz, /metrics) and returns
   * the status, 0 when nothing answered. Compose replicas publish no port, so there it runs inside the container.
   */
  probeReplica(index: number, path: string): Promise<number>;
}

export async function restartRedis(cluster: Cluster, signal: Signal): Promise<void> {
  await cluster.stopRedis(signal);
  await cluster.startRedis();
}
