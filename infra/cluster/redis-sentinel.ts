// REDIS=sentinel for the local-process driver: one primary, two replicas and three Sentinels,
// each a redis-server on 127.0.0.1 with a folder of its own, AOF on and the ACL users of
// infra/redis/users.acl. local-cluster.ts calls in here from its Redis start and stop.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RedisNodeInfo, Signal } from "./cluster.ts";
import { waitFor } from "./wait.ts";
import { redisConf, SENTINEL_MASTER, sentinelConf, sentinelDataConf, type SentinelPasswords } from "./redis-conf.ts";

export type SentinelNodeState = {
  name: string;
  kind: "redis" | "sentinel";
  port: number;
  pid: number | undefined;
  /** The role last seen (a killed primary stays "primary" until it is started again). */
  role: RedisNodeInfo["role"];
};

export type SentinelState = { nodes: SentinelNodeState[] };

/** What the local driver lends this file: its processes, files and redis-cli. */
export type LocalRedisHost = {
  dir: string;
  redisBin: string;
  passwords: SentinelPasswords;
  /** The users.acl text with passwords, as the single-server driver writes it. */
  aclText: string;
  maxmemory: string;
  /** REDIS_WAIT_REPLICAS of the app: also min-replicas-to-write on every server. */
  waitReplicas: number;
  spawn(name: string, bin: string, args: string[]): number;
  alive(pid: number | undefined, marker: string): boolean;
  signal(pid: number | undefined, marker: string, signal: NodeJS.Signals, what: string): Promise<void>;
  save(): unknown;
  /** redis-cli against 127.0.0.1:port as `user`, the password in the environment. */
  cli(port: number, user: "admin" | "app", args: string[]): Promise<string>;
};

export function sentinelState(ports: number[]): SentinelState {
  if (ports.length !== 6) throw new Error("a Sentinel topology needs 6 ports");
  return {
    nodes: [
      ...[0, 1, 2].map((i) => ({
        name: `redis-${i + 1}`,
        kind: "redis" as const,
        port: ports[i]!,
        pid: undefined,
        role: i === 0 ? ("primary" as const) : ("replica" as const),
      })),
      ...[3, 4, 5].map((i) => ({
        name: `sentinel-${i - 2}`,
        kind: "sentinel" as const,
        port: ports[i]!,
        pid: undefined,
        role: "sentinel" as const,
      })),
    ],
  };
}

/** The app's environment for this topology: it finds the primary through the Sentinels. */
export function sentinelAppEnv(s: SentinelState, passwords: SentinelPasswords): Record<string, string> {
  return {
    REDIS_SENTINELS: s.nodes
      .filter((n) => n.kind === "sentinel")
      .map((n) => `127.0.0.1:${n.port}`)
      .join(","),
    REDIS_SENTINEL_NAME: SENTINEL_MASTER,
    REDIS_SENTINEL_USERNAME: "app",
    REDIS_SENTINEL_PASSWORD: passwords.app,
  };
}

const marker = (n: SentinelNodeState) => `:${n.port}`;

export class LocalSentinelTopology {
  readonly #h: LocalRedisHost;
  readonly #s: SentinelState;

  constructor(host: LocalRedisHost, state: SentinelState) {
    this.#h = host;
    this.#s = state;
  }

  #node(name: string): SentinelNodeState {
    const n = this.#s.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no Redis node "${name}"; this cluster has ${this.#s.nodes.map((x) => x.name).join(", ")}`);
    return n;
  }

  #servers = () => this.#s.nodes.filter((n) => n.kind === "redis");
  #sentinels = () => this.#s.nodes.filter((n) => n.kind === "sentinel");

  /** Writes every node's config once (Redis and the Sentinels rewrite their own files later). */
  #writeConfigs(): void {
    const h = this.#h;
    const primary = this.#servers()[0]!;
    for (const n of this.#s.nodes) {
      const dir = join(h.dir, n.name);
      mkdirSync(dir, { recursive: true });
      const acl = join(dir, "users.acl");
      writeFileSync(acl, h.aclText, { mode: 0o600 });
      const primaryAddr = { host: "127.0.0.1", port: primary.port };
      // Passwords only in these files (0600), never in argv.
      const text =
        n.kind === "redis"
          ? redisConf(
              { port: n.port, bind: "127.0.0.1", dir, aclfile: acl, maxmemory: h.maxmemory },
              sentinelDataConf({
                passwords: h.passwords,
                waitReplicas: h.waitReplicas,
                replicaOf: n === primary ? undefined : primaryAddr,
              }),
            )
          : sentinelConf({ port: n.port, bind: "127.0.0.1", dir, primary: primaryAddr, passwords: h.passwords });
      writeFileSync(join(dir, n.kind === "redis" ? "redis.conf" : "sentinel.conf"), text, { mode: 0o600 });
    }
  }

  async start(): Promise<void> {
    this.#writeConfigs();
    for (const n of this.#servers()) await this.#spawnNode(n.name);
    // Replicas in sync before the Sentinels start: a failover then always has a candidate.
    await waitFor(
      "both replicas to sync with the primary",
      async () =>
        /connected_slaves:2/.test(await this.#h.cli(this.#servers()[0]!.port, "admin", ["INFO", "replication"])),
      20_000,
      100,
    );
    for (const n of this.#sentinels()) await this.#spawnNode(n.name);
    await this.waitForPrimary({ timeoutMs: 20_000 });
  }

  /**
   * Starts a stopped node. A data server restarted while another one is primary (a killed primary
   * comes back as a master until the Sentinels demote it) counts as back only once it replicates
   * from that primary with its sync done: before that it is no candidate for the next failover,
   * and with REDIS_WAIT_REPLICAS it acknowledges nothing.
   */
  async startNode(name: string): Promise<void> {
    await this.#spawnNode(name);
    const n = this.#node(name);
    const primary = n.kind === "redis" ? await this.#sentinelsPrimary() : undefined;
    if (!primary || primary === n || !this.#h.alive(primary.pid, marker(primary))) return;
    await waitFor(
      `${n.name} to replicate from ${primary.name} and finish its sync`,
      async () => {
        const info = await this.#h.cli(n.port, "admin", ["INFO", "replication"]).catch(() => "");
        return (
          /^role:slave/m.test(info) &&
          new RegExp(`^master_port:${primary.port}\\s*$`, "m").test(info) &&
          /^master_link_status:up/m.test(info) &&
          /^master_sync_in_progress:0/m.test(info)
        );
      },
      30_000,
      100,
    );
    await this.#refreshRoles();
  }

  /** Spawns a stopped node and waits for its PING. */
  async #spawnNode(name: string): Promise<void> {
    const n = this.#node(name);
    if (this.#h.alive(n.pid, marker(n))) return;
    const dir = join(this.#h.dir, n.name);
    const args = n.kind === "redis" ? [join(dir, "redis.conf")] : [join(dir, "sentinel.conf"), "--sentinel"];
    n.pid = this.#h.spawn(n.name, this.#h.redisBin, args);
    this.#h.save();
    await waitFor(
      `${n.name} on port ${n.port}`,
      async () => {
        if (!this.#h.alive(n.pid, marker(n))) throw new Error(`${n.name} exited; see its log`);
        return (await this.#h.cli(n.port, "admin", ["PING"]).catch(() => "")) === "PONG";
      },
      15_000,
      50,
    );
    await this.#refreshRoles();
  }

  async kill(name: string, signal: Signal): Promise<void> {
    const n = this.#node(name);
    await this.#h.signal(n.pid, marker(n), signal, n.name);
    n.pid = undefined;
    this.#h.save();
  }

  /** The data servers only (the Sentinels keep watching), as `restart-redis` means. */
  async stopServers(signal: Signal): Promise<void> {
    await Promise.all(this.#servers().map((n) => this.kill(n.name, signal)));
  }

  async startServers(): Promise<void> {
    // Not startNode: the primary the Sentinels name may be among those still to start.
    for (const n of this.#servers()) await this.#spawnNode(n.name);
    await this.waitForPrimary({ timeoutMs: 30_000 });
  }

  async stopAll(): Promise<void> {
    for (const n of [...this.#sentinels(), ...this.#servers()]) {
      await this.kill(n.name, "SIGTERM").catch(() => this.kill(n.name, "SIGKILL"));
    }
  }

  /** Asks each running server for its ROLE; a stopped one keeps its last known role. */
  async #refreshRoles(): Promise<void> {
    for (const n of this.#servers()) {
      if (!this.#h.alive(n.pid, marker(n))) continue;
      const role = await this.#h.cli(n.port, "admin", ["ROLE"]).catch(() => "");
      if (role.startsWith("master")) n.role = "primary";
      else if (role.startsWith("slave")) n.role = "replica";
    }
    this.#h.save();
  }

  async nodes(): Promise<RedisNodeInfo[]> {
    await this.#refreshRoles();
    return this.#s.nodes.map((n) => ({
      name: n.name,
      role: n.role,
      running: this.#h.alive(n.pid, marker(n)),
      address: `127.0.0.1:${n.port}`,
    }));
  }

  /** The primary the Sentinels name now (the first that answers), or undefined. */
  async #sentinelsPrimary(): Promise<SentinelNodeState | undefined> {
    for (const s of this.#sentinels()) {
      if (!this.#h.alive(s.pid, marker(s))) continue;
      const out = await this.#h
        .cli(s.port, "admin", ["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER])
        .catch(() => "");
      const port = Number(out.split("\n")[1]);
      const n = this.#servers().find((x) => x.port === port);
      if (n) return n;
    }
    return undefined;
  }

  /** Port of the server to send operator commands to: the primary, or redis-1 when none is known. */
  async primaryPort(): Promise<number> {
    return ((await this.#sentinelsPrimary()) ?? this.#servers()[0]!).port;
  }

  async waitForPrimary(opts: { exclude?: string; timeoutMs?: number } = {}): Promise<string> {
    let found = "";
    await waitFor(
      opts.exclude ? `a primary other than ${opts.exclude}` : "a primary",
      async () => {
        const p = await this.#sentinelsPrimary();
        if (!p || p.name === opts.exclude || !this.#h.alive(p.pid, marker(p))) return false;
        // The Sentinels have switched; the server itself must also say so (REPLICAOF NO ONE done).
        const role = await this.#h.cli(p.port, "admin", ["ROLE"]).catch(() => "");
        if (!role.startsWith("master")) return false;
        found = p.name;
        return true;
      },
      opts.timeoutMs ?? 30_000,
      50,
    );
    await this.#refreshRoles();
    return found;
  }

  logNames(): string[] {
    return this.#s.nodes.map((n) => n.name);
  }
}
