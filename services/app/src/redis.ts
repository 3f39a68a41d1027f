// The ioredis client, with every option that decides failure behaviour set on purpose: one
// Redis (REDIS_URL) or Redis Cluster (REDIS_CLUSTER_NODES).
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import type { Config } from "./config.ts";
import { StoreUnavailableError } from "./errors.ts";

/** What the app talks to: both have the same commands, multi() and defineCommand(). */
export type RedisClient = Redis | Cluster;

export function createRedis(config: Config, log: Logger): RedisClient {
  const client = config.redis.clusterNodes.length > 0 ? createCluster(config) : createSingle(config);
  let down = false;
  client.on("ready", () => {
    if (down) log.info({ event: "redis_ready" }, "redis connection restored");
    down = false;
  });
  client.on("error", (err: Error) => {
    // ioredis emits one error per failed reconnect; log the transition, not the storm.
    if (!down) log.warn({ event: "redis_error", err: err.message }, "redis connection lost");
    down = true;
  });
  return client;
}

/**
 * Redis Cluster. The per-node options are the single client's; ioredis itself forces two of
 * them on its node connections (an offline queue, which only holds a command while that node's
 * connection opens, and no reconnect: a lost node is replaced by what CLUSTER SLOTS says next),
 * so the cluster-level options below carry the same failure rules.
 */
function createCluster(config: Config): Cluster {
  const options: ClusterOptions = {
    redisOptions: nodeOptions(config),
    // Fail fast while the cluster is not ready instead of queueing (as the single client).
    enableOfflineQueue: false,
    enableReadyCheck: true,
    // Every command goes to the primary of its slot: a replica's copy lags (async replication),
    // and the counter reads what it just wrote.
    scaleReads: "master",
    // MOVED/ASK redirections re-send a command the node refused without running it: safe. A
    // few are enough for a resharding or a failover; more would only delay the 503.
    maxRedirections: 6,
    // 0: a command in flight when a node's connection closes is rejected (503, "maybe
    // applied"), never re-sent by the client on its own: a re-sent unkeyed INCRBY counts twice.
    // (The default, 100 ms, re-sends it.) Keyed increments are then retried by the client.
    retryDelayOnFailover: 0,
    // CLUSTERDOWN and TRYAGAIN mean the node refused to run the command: a retry after a slot
    // refresh is safe; with maxRedirections it waits at most ~0.6 s before answering 503.
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    // Reconnect the cluster forever with a short capped backoff, as the single client does.
    clusterRetryStrategy: (attempt) => Math.min(50 * attempt, 1000),
    slotsRefreshTimeout: config.redis.connectTimeoutMs,
    // A failover moves slots without a MOVED reaching an idle replica; refresh on a timer too.
    slotsRefreshInterval: 2000,
    lazyConnect: false,
  };
  return new Cluster([...config.redis.clusterNodes], options);
}

function createSingle(config: Config): Redis {
  return new Redis(config.redis.url, nodeOptions(config));
}

function nodeOptions(config: Config): RedisOptions {
  return {
    // An ACL user of its own (infra/redis/users.acl); unset means Redis's default user.
    username: config.redis.username,
    password: config.redis.password,
    connectionName: `app:${config.replicaId}`,
    // Fail fast while disconnected instead of queueing: a queued command would make the
    // request hang until Redis returns, and could run long after the client gave up.
    enableOfflineQueue: false,
    // A command already sent when the connection dropped is rejected, never re-sent after
    // reconnecting: a silent re-send of an INCR would count twice.
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    // Bounds every command, so a stalled Redis (not just a dead one) gives a 503 in ~0.5 s.
    commandTimeout: config.redis.commandTimeoutMs,
    connectTimeout: config.redis.connectTimeoutMs,
    // Reconnect forever with a short capped backoff: replicas recover without a restart.
    retryStrategy: (attempt) => Math.min(50 * attempt, 1000),
    reconnectOnError: (err) => err.message.startsWith("READONLY"),
    enableReadyCheck: true,
    // No CLIENT SETINFO on connect: the app's ACL user may not run it (and Redis 7.0 has no such
    // subcommand to allow), so every connection would log a NOPERM on Redis 7.2+.
    disableClientInfo: true,
    lazyConnect: false,
  };
}

/** Maps an ioredis failure to a 503; other errors pass through untouched. */
export function toStoreError(err: unknown): unknown {
  if (err instanceof StoreUnavailableError || !(err instanceof Error)) return err;
  const m = err.message;
  // Refused before sending: the offline queue is off, or Redis is still loading its AOF.
  // OOM: Redis is at maxmemory with noeviction and refused the write.
  // CLUSTERDOWN: the slot has no primary right now (a failover); Redis ran nothing.
  if (
    m.includes("enableOfflineQueue") ||
    m.startsWith("LOADING") ||
    m.startsWith("OOM") ||
    m.startsWith("CLUSTERDOWN") ||
    m.includes("Last error: CLUSTERDOWN")
  )
    return new StoreUnavailableError(err, "no");
  // Sent, then the connection dropped or timed out: Redis may have run it.
  // "Too many Cluster redirections" after anything but CLUSTERDOWN: a command that may have run.
  if (
    m.includes("Command timed out") ||
    m.includes("Connection is closed") ||
    m.includes("max retries per request") ||
    m.includes("Too many Cluster redirections") ||
    m.includes("Failed to refresh slots cache")
  ) {
    return new StoreUnavailableError(err, "unknown");
  }
  return err;
}

/** Runs a Redis call, converting connection failures into StoreUnavailableError. */
export async function withStore<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toStoreError(err);
  }
}
