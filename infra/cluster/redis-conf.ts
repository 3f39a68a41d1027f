// The redis.conf and sentinel.conf text every driver writes: one Redis, Sentinel's data nodes
// and Sentinels, Redis Cluster nodes; local processes and Compose containers alike. Passwords
// go only into these files and the aclfile (0600 or a secret), never into argv.

/** The master name the Sentinels monitor and the app asks for (REDIS_SENTINEL_NAME). */
export const SENTINEL_MASTER = "sessions";

/**
 * Sentinel timing, chosen for a failover in a few seconds (loopback or one Docker network):
 * - down-after-milliseconds 2000: a primary that has not answered a PING for 2 s is down.
 *   Not 1000: a Sentinel opens its link to a just-promoted primary on its 1 s reconnect tick,
 *   and with no margin over that it could find the new primary "down" a second after the
 *   switch and, counting the other Sentinels' still-fresh votes on the old one, fail it over
 *   again. On a real network with busy hosts, 3-5 s avoids failovers on a blip.
 * - failover-timeout 5000: a failover that stalls (the chosen replica does not take the role)
 *   is abandoned and retried by another Sentinel after 2x this (10 s), not after Redis's
 *   default 3 min x 2; it also bounds how long replicas take to follow the new primary.
 */
export const DOWN_AFTER_MS = 2000;
export const FAILOVER_TIMEOUT_MS = 5000;

/**
 * The aclfile for Redis: infra/redis/users.acl without its comments, each user that logs in
 * given its password (a `>password` rule: the file is the only place it is written).
 */
export function redisAclFile(template: string, passwords: Partial<Record<string, string>>): string {
  return (
    template
      .split("\n")
      .filter((l) => l.trim() !== "" && !l.startsWith("#"))
      .map((line) => {
        const pw = passwords[line.split(/\s+/)[1] ?? ""];
        return pw === undefined ? line : `${line} >${pw}`;
      })
      .join("\n") + "\n"
  );
}

export type RedisConfOptions = {
  port: number;
  /** 127.0.0.1 for a local process; a container listens on every interface of its own network. */
  bind: string;
  dir: string;
  aclfile: string;
  maxmemory: string;
};

/**
 * The base config of every data node, then `extra` (replication, cluster mode). AOF with fsync
 * every second: an acknowledged write is normally in the kernel before Redis answers, so it
 * survives SIGKILL of redis-server (a power cut could lose ~1 s). Not always: while the last fsync
 * still runs, Redis postpones the write for up to 2 s and answers anyway. noeviction: a full Redis refuses
 * writes (the app answers 503) rather than silently dropping counts or Idempotency-Keys.
 */
export function redisConf(o: RedisConfOptions, extra: readonly string[] = []): string {
  return [
    `port ${o.port}`,
    `bind ${o.bind}`,
    `dir "${o.dir}"`,
    "daemonize no",
    "appendonly yes",
    "appendfsync everysec",
    'save ""',
    `maxmemory ${o.maxmemory}`,
    "maxmemory-policy noeviction",
    `aclfile "${o.aclfile}"`,
    ...extra,
    "",
  ].join("\n");
}

export type SentinelPasswords = Record<"app" | "admin" | "health" | "replication" | "sentinel", string>;

/** What a Sentinel data node adds to redisConf(): how it replicates and, in a container, its announced address. */
export function sentinelDataConf(o: {
  passwords: SentinelPasswords;
  /** REDIS_WAIT_REPLICAS of the app: also min-replicas-to-write. */
  waitReplicas: number;
  /** The primary to follow at first start; undefined for the first primary. */
  replicaOf?: { host: string; port: number } | undefined;
  /** The address others reach this node by (a container's fixed address); unset on loopback. */
  announce?: string | undefined;
}): string[] {
  return [
    // A replica that (re)joins gets the snapshot at once, not after the default 5 s pause.
    "repl-diskless-sync-delay 0",
    // Replicas log in to the primary as `replication`; a promoted replica keeps it for the others.
    "masteruser replication",
    `masterauth ${o.passwords.replication}`,
    // With WAIT on, a primary that lost its replicas refuses writes (NOREPLICAS, a 503 that
    // changed nothing) instead of acknowledging what a failover would lose.
    ...(o.waitReplicas > 0 ? [`min-replicas-to-write ${o.waitReplicas}`, "min-replicas-max-lag 10"] : []),
    // What the primary reports for this replica, the Sentinels pass on and the app connects to;
    // without it, a container's address as the primary sees it (NAT, proxies) could be another.
    ...(o.announce ? [`replica-announce-ip ${o.announce}`] : []),
    ...(o.replicaOf ? [`replicaof ${o.replicaOf.host} ${o.replicaOf.port}`] : []),
  ];
}

/** A Sentinel's config: it monitors `primary` under SENTINEL_MASTER, with its own ACL users. */
export function sentinelConf(o: {
  port: number;
  bind: string;
  dir: string;
  primary: { host: string; port: number };
  passwords: SentinelPasswords;
  /** In a container: its fixed address, announced to the other Sentinels. */
  announce?: string | undefined;
}): string {
  const m = SENTINEL_MASTER;
  const pw = o.passwords;
  return [
    `port ${o.port}`,
    `bind ${o.bind}`,
    `dir "${o.dir}"`,
    "daemonize no",
    // Addresses, not host names (resolve-hostnames/announce-hostnames): Sentinel resolves names
    // on its one thread, and a stopped container's name can hang there (docker-compose.sentinel.yml).
    ...(o.announce ? [`sentinel announce-ip ${o.announce}`] : []),
    `sentinel monitor ${m} ${o.primary.host} ${o.primary.port} 2`,
    `sentinel auth-user ${m} sentinel`,
    `sentinel auth-pass ${m} ${pw.sentinel}`,
    `sentinel down-after-milliseconds ${m} ${DOWN_AFTER_MS}`,
    `sentinel failover-timeout ${m} ${FAILOVER_TIMEOUT_MS}`,
    `sentinel parallel-syncs ${m} 1`,
    // The Sentinels' own users: each other (admin), the app (find the primary and follow
    // +switch-master), the container healthcheck (PING), nobody anonymous.
    "sentinel sentinel-user admin",
    `sentinel sentinel-pass ${pw.admin}`,
    "user default off",
    `user admin on ~* &* +@all >${pw.admin}`,
    "user app on resetchannels &__sentinel__:* &+switch-master -@all +sentinel|get-master-addr-by-name " +
      "+sentinel|sentinels +sentinel|slaves +sentinel|replicas +subscribe +psubscribe +ping +info " +
      `+client|setname +role >${pw.app}`,
    `user health on resetchannels -@all +ping >${pw.health}`,
    "",
  ].join("\n");
}
