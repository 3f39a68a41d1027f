// The ioredis client, with every option that decides failure behaviour set on purpose.
import { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Config } from "./config.ts";
import { StoreUnavailableError } from "./errors.ts";

export function createRedis(config: Config, log: Logger): Redis {
  const client = new Redis(config.redis.url, {
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
  });
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

/** Maps an ioredis failure to a 503; other errors pass through untouched. */
export function toStoreError(err: unknown): unknown {
  if (err instanceof StoreUnavailableError || !(err instanceof Error)) return err;
  const m = err.message;
  // Refused before sending: the offline queue is off, or Redis is still loading its AOF.
  // OOM: Redis is at maxmemory with noeviction and refused the write.
  if (m.includes("enableOfflineQueue") || m.startsWith("LOADING") || m.startsWith("OOM"))
    return new StoreUnavailableError(err, "no");
  // Sent, then the connection dropped or timed out: Redis may have run it.
  if (m.includes("Command timed out") || m.includes("Connection is closed") || m.includes("max retries per request")) {
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
