// The ioredis client, with every option that decides failure behaviour set on purpose: one
// Redis (REDIS_URL), a primary found through Sentinels (REDIS_SENTINELS) or Redis Cluster
// (REDIS_CLUSTER_NODES).
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import type { Config } from "./config.ts";
import { StoreUnavailableError } from "./errors.ts";

/** What the app talks to: both have the same commands, multi() and defineCommand(). */
export type RedisClient = Redis | Cluster;

export function createRedis(config: Config, log: Logger): RedisClient {
  const client = config.redis.clusterNodes.length > 0 ? createCluster(config) : createSingle(config, log);
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
  return new RefreshOnFailureCluster([...config.redis.clusterNodes], clusterOptions(config));
}

export function clusterOptions(config: Config): ClusterOptions {
  return {
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
    // Bounds one node's CLUSTER SLOTS answer (a fresh connection) during a refresh; a frozen node costs
    // this much before the next node is asked, so no more than any command may take.
    slotsRefreshTimeout: config.redis.commandTimeoutMs,
    // A failover moves slots without a MOVED reaching an idle replica; refresh on a timer too.
    slotsRefreshInterval: 2000,
    lazyConnect: false,
    // No auto-pipelining here (nodeOptions' is for one Redis): ioredis groups a batch by the
    // node of the command's first argument, which for the counter's script is its key count.
    enableAutoPipelining: false,
  };
}

/** The least time between two slot refreshes a failed command asks for (RefreshOnFailureCluster). */
const FAILURE_REFRESH_GAP_MS = 250;

/** How a command fails when its node is dead, frozen or being replaced, rather than for what it asked. */
const FAILOVER_SYMPTOM =
  /Command timed out|Connection is closed|enableOfflineQueue|^CLUSTERDOWN|^TRYAGAIN|Too many Cluster redirections/;

/**
 * ioredis' Cluster learns a failover from a MOVED or its periodic slot refresh. A primary that stops
 * answering sends no MOVED: writes to its slots kept timing out until the next timer refresh, up to
 * slotsRefreshInterval after its replica was elected. This one refreshes as soon as a command fails
 * the way a dead, frozen or replaced node makes it fail, at most once per FAILURE_REFRESH_GAP_MS (a
 * failure during the gap gets one refresh at its end), so every failing request does not open its own
 * CLUSTER SLOTS connection. ioredis has no hook for this, hence the override of sendCommand, through
 * which every command goes (pipelines and scripts included).
 */
export class RefreshOnFailureCluster extends Cluster {
  /** Slot refreshes asked for by failed commands (not the timer's). */
  failureRefreshes = 0;
  #lastRefresh = 0;
  #pending: NodeJS.Timeout | undefined;

  override sendCommand(...args: Parameters<Cluster["sendCommand"]>): unknown {
    const result = super.sendCommand(...args);
    if (result instanceof Promise) {
      result.catch((err: unknown) => {
        if (err instanceof Error && FAILOVER_SYMPTOM.test(err.message)) this.#refreshSoon();
      });
    }
    return result;
  }

  #refreshSoon(): void {
    if (this.#pending || this.status === "end") return;
    const wait = Math.max(0, this.#lastRefresh + FAILURE_REFRESH_GAP_MS - Date.now());
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      if (this.status === "end") return;
      this.#lastRefresh = Date.now();
      this.failureRefreshes++;
      this.refreshSlotsCache();
    }, wait);
    this.#pending.unref();
  }
}

/**
 * One Redis: at REDIS_URL, or the primary the Sentinels of REDIS_SENTINELS name. With Sentinels
 * ioredis asks them for the primary of `name` on every (re)connect and, in its ready check,
 * checks that the server it reached says role:master (INFO), else it disconnects and asks again.
 * followFailovers (below) makes it leave a demoted or stalled primary at the +switch-master.
 */
function createSingle(config: Config, log: Logger): Redis {
  if (!config.redis.sentinel) return new Redis(config.redis.url, nodeOptions(config));
  // With Sentinels the URL is not used: the Sentinels name the primary.
  const client = new Redis({ ...sentinelOptions(config), ...nodeOptions(config) });
  followFailovers(client, config, log);
  return client;
}

function sentinelOptions(config: Config): RedisOptions {
  const s = config.redis.sentinel;
  if (!s) return {};
  return {
    sentinels: s.nodes.map((n) => ({ host: n.host, port: n.port })),
    name: s.name,
    role: "master",
    sentinelUsername: s.username,
    sentinelPassword: s.password,
    // Off: followFailovers does its job. ioredis's detector outlives the connection it was made
    // for, and a +switch-master that reaches it while the client is asking the Sentinels aborts
    // that connect, which ends the client for good ("Connection is closed." on every command).
    failoverDetector: false,
    // Asking the Sentinels is part of connecting: the same short bounds, retried forever.
    sentinelCommandTimeout: config.redis.connectTimeoutMs,
    sentinelRetryStrategy: (attempt) => Math.min(50 * attempt, 1000),
  };
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
    // A primary demoted by a failover answers writes with READONLY until this client notices:
    // reconnect (and so ask the Sentinels again), but do not resend (true, not 2): the command
    // that got READONLY was refused, and the client retries it with its Idempotency-Key.
    reconnectOnError: (err) => err.message.startsWith("READONLY"),
    enableReadyCheck: true,
    // No CLIENT SETINFO on connect: the app's ACL user may not run it (and Redis 7.0 has no such
    // subcommand to allow), so every connection would log a NOPERM on Redis 7.2+.
    disableClientInfo: true,
    lazyConnect: false,
    // Commands issued in the same event-loop turn (the requests one socket read delivered) go
    // out in one write and come back in one read: measured with make bench-compare, read+write
    // syscalls per exactly-once request 3.4 -> 2.4 for a replica and 0.87 -> 0.19 for Redis.
    // Ordering and failures are per command as before (a timeout or a closed connection
    // rejects each command with its own error).
    enableAutoPipelining: true,
  };
}

/**
 * Subscribes to +switch-master on every Sentinel. When the primary of our name moves away from
 * the server this client is connected to, the client reconnects at once (and so asks the
 * Sentinels again) rather than staying on a primary that is stalled, cut off or being demoted
 * until its connection drops. Only a ready client is touched: one that is (re)connecting asks
 * the Sentinels anyway, and interrupting ioredis while it does ends the client for good.
 * The three Sentinels each announce the switch; once on the new primary, the others are no-ops.
 */
function followFailovers(client: Redis, config: Config, log: Logger): void {
  const s = config.redis.sentinel!;
  const subscribers = s.nodes.map((n) => {
    const sub = new Redis({
      host: n.host,
      port: n.port,
      username: s.username,
      password: s.password,
      connectionName: `app:${config.replicaId}:switch-master`,
      connectTimeout: config.redis.connectTimeoutMs,
      // A Sentinel that is down is watched again when it returns (ioredis resubscribes).
      retryStrategy: (attempt) => Math.min(50 * attempt, 1000),
      maxRetriesPerRequest: null,
    });
    sub.on("error", () => {}); // checkSentinels reported an unreachable Sentinel at start
    sub.subscribe("+switch-master").catch(() => {});
    sub.on("message", (_channel: string, message: string) => {
      // "<name> <old host> <old port> <new host> <new port>"
      const [name, oldHost, oldPort, newHost, newPort] = message.split(" ");
      if (name !== s.name || client.status !== "ready") return;
      const stream = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
      // Already on the new primary (another Sentinel's announcement came first). Compared with the
      // new address, not the old: with announced hostnames neither matches the socket's IP, and
      // a needless reconnect is cheaper than staying on the old primary.
      if (stream?.remoteAddress === newHost && String(stream?.remotePort) === newPort) return;
      log.warn(
        { event: "redis_switch_master", from: `${oldHost}:${oldPort}`, to: `${newHost}:${newPort}` },
        "redis primary switched; reconnecting",
      );
      client.disconnect(true);
    });
    return sub;
  });
  // quit() or disconnect() of the client (shutdown) ends the watch too.
  client.once("end", () => {
    for (const sub of subscribers) sub.disconnect();
  });
}

/**
 * A failure of an operation some earlier write of which may have applied (a later step, another
 * command of the same pipeline): a refusal can no longer say "nothing was changed".
 */
export function afterWrites(err: unknown): unknown {
  const mapped = toStoreError(err);
  return mapped instanceof StoreUnavailableError && mapped.applied === "no"
    ? new StoreUnavailableError(mapped.cause, "unknown")
    : mapped;
}

/** Maps an ioredis failure to a 503; other errors pass through untouched. */
export function toStoreError(err: unknown): unknown {
  if (err instanceof StoreUnavailableError || !(err instanceof Error)) return err;
  const m = err.message;
  // Refused before sending: the offline queue is off, or Redis is still loading its AOF.
  // OOM: Redis is at maxmemory with noeviction and refused the write.
  // CLUSTERDOWN: the slot has no primary right now (a failover); Redis ran nothing.
  // READONLY: a demoted primary (or a replica) refused the write. NOREPLICAS: min-replicas-to-write
  // refused it, too few replicas are connected. MISCONF: persistence is failing (a full disk) and
  // Redis refuses writes. BUSY: a script has run past busy-reply-threshold. MASTERDOWN: a replica
  // that lost its primary and serves no stale data. None ran the command.
  if (
    m.includes("enableOfflineQueue") ||
    /^(LOADING|OOM|CLUSTERDOWN|READONLY|NOREPLICAS|MISCONF|BUSY|MASTERDOWN)\b/.test(m) ||
    m.includes("Last error: CLUSTERDOWN")
  )
    return new StoreUnavailableError(err, "no");
  // A MULTI that Redis discarded for an error while queueing (a READONLY during a failover): none
  // of it ran. Mapped as its first refused command is.
  if (m.startsWith("EXECABORT")) {
    const first = toStoreError((err as Error & { previousErrors?: unknown[] }).previousErrors?.[0]);
    if (first instanceof StoreUnavailableError) return new StoreUnavailableError(err, "no");
  }
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

/** REDIS_WAIT_REPLICAS and REDIS_WAIT_TIMEOUT_MS: how many replicas must hold a write before it is answered. */
export type ReplicaWait = { readonly replicas: number; readonly timeoutMs: number };
export const replicaWait = (config: Config): ReplicaWait => ({
  replicas: config.redis.waitReplicas,
  timeoutMs: config.redis.waitTimeoutMs,
});

export type Pipeline = ReturnType<RedisClient["pipeline"]>;

/**
 * Runs the commands `queue` adds to a pipeline, followed by WAIT for `wait.replicas` replicas
 * (none when it is 0): one round trip, and the same connection, which WAIT needs (it waits for
 * this client's own last write; a WAIT sent apart could go out on a new connection after a
 * reconnect and wait for nothing). Resolves to the commands' results (the first error a command
 * got is thrown; a refusal while another write of the pipeline ran, as "may have applied": the last
 * `reads` commands only read) and `replicated()`, which throws a 503 store_timeout when fewer replicas
 * acknowledged in time: the writes are on the primary and may or may not survive a failover, so
 * the client retries. The caller calls it when what it is about to acknowledge was written.
 */
// Only one Redis or Sentinel's primary gets a WAIT: config refuses REDIS_WAIT_REPLICAS with Redis
// Cluster, where ioredis would send the key-less WAIT to a random node, not the one that wrote.
export async function execAndWait(
  redis: RedisClient,
  wait: ReplicaWait,
  queue: (p: Pipeline) => void,
  reads = 0,
): Promise<{ results: unknown[]; replicated: () => void }> {
  const p = redis.pipeline();
  queue(p);
  const n = p.length;
  if (wait.replicas > 0) p.wait(wait.replicas, wait.timeoutMs);
  const res = await p.exec();
  if (res === null) throw new Error("Connection is closed.");
  const queued = res.slice(0, n);
  const failed = queued.find(([err]) => err)?.[0];
  // Commands of a pipeline run one by one: with one refused, the other writes may have applied.
  if (failed) throw queued.slice(0, n - reads).some(([err]) => !err) ? afterWrites(failed) : failed;
  const results = queued.map(([, value]) => value);
  const replicated = () => {
    if (wait.replicas === 0) return;
    const [waitErr, acked] = res[n] as [Error | null, unknown];
    if (waitErr) throw new StoreUnavailableError(waitErr, "unknown");
    if (typeof acked !== "number" || acked < wait.replicas) {
      const why = `WAIT ${wait.replicas} ${wait.timeoutMs}: ${String(acked)} replicas acknowledged`;
      throw new StoreUnavailableError(new Error(why), "unknown");
    }
  };
  return { results, replicated };
}

/**
 * Asks every Sentinel of REDIS_SENTINELS for the primary of REDIS_SENTINEL_NAME before the
 * replica starts. Returns the problems that make the topology wrong (no Sentinel answers, a
 * Sentinel that does not know the name, an address that is not a Sentinel): the replica then
 * refuses to start, rather than retrying forever against a Sentinel that will never answer.
 * One Sentinel down among others that answer is a warning, not an error: that is what the
 * other Sentinels are for.
 */
export async function checkSentinels(config: Config): Promise<{ problems: string[]; warnings: string[] }> {
  const s = config.redis.sentinel;
  if (!s) return { problems: [], warnings: [] };
  const answers = await Promise.all(
    s.nodes.map(async (n) => {
      const where = `${n.host}:${n.port}`;
      const probe = new Redis({
        host: n.host,
        port: n.port,
        username: s.username,
        password: s.password,
        connectTimeout: config.redis.connectTimeoutMs,
        commandTimeout: config.redis.connectTimeoutMs,
        lazyConnect: true,
        enableReadyCheck: false,
        enableOfflineQueue: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      probe.on("error", () => {}); // the rejected call below reports it
      try {
        await probe.connect();
        const addr = (await probe.call("SENTINEL", "get-master-addr-by-name", s.name)) as string[] | null;
        if (addr === null)
          return { kind: "unknown", text: `Sentinel ${where} monitors no master named "${s.name}"` } as const;
        return { kind: "ok", text: `${addr[0]}:${addr[1]}` } as const;
      } catch (err) {
        const m = (err as Error).message;
        const text = /unknown command/i.test(m)
          ? `${where} is not a Sentinel (it answered: ${m.split("\n")[0]})`
          : `Sentinel ${where} did not answer: ${m}`;
        return { kind: "down", text } as const;
      } finally {
        probe.disconnect();
      }
    }),
  );
  const prefix = "REDIS_SENTINELS: ";
  const unknown = answers.filter((a) => a.kind === "unknown").map((a) => `REDIS_SENTINEL_NAME: ${a.text}`);
  const down = answers.filter((a) => a.kind === "down").map((a) => prefix + a.text);
  const ok = answers.some((a) => a.kind === "ok");
  // A name unknown to a Sentinel that answers is a wrong REDIS_SENTINEL_NAME (or a wrong Sentinel).
  if (unknown.length > 0 || !ok) return { problems: [...unknown, ...down], warnings: [] };
  return { problems: [], warnings: down };
}
