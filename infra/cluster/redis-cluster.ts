// Redis Cluster as local processes (`make up REDIS=cluster CLUSTER=local`): three primaries and
// three replicas made by `redis-cli --cluster create`, each with AOF, the ACL users of
// infra/redis/users.acl and a folder of its own; replicas log in to their primary as the
// `replication` user. local-cluster.ts drives it through the few methods below.
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import type { RedisNodeInfo, Signal } from "./cluster.ts";
import { freePort } from "./ports.ts";
import { redisConf } from "./redis-conf.ts";
import { waitFor } from "./wait.ts";

const run = promisify(execFile);
const SLOTS = 16384;
export const REDIS_CLUSTER_NODES = 6;

export type RedisClusterNode = {
  name: string;
  port: number;
  /** The cluster bus (node-to-node gossip and failover votes); set explicitly, not port + 10000. */
  busPort: number;
  pid: number | undefined;
  /** The role last seen, reported while the node is down. */
  role: "primary" | "replica";
};

/** What the local driver lends: its process helpers and the ACL file every node loads. */
export type RedisClusterHost = {
  dir: string;
  adminPassword: string;
  replicationPassword: string;
  /** The aclfile text (users.acl with passwords). */
  aclFile: string;
  maxmemory: string;
  spawn(name: string, cmd: string, args: string[]): number;
  alive(pid: number | undefined, marker: string): boolean;
  signal(pid: number | undefined, marker: string, signal: NodeJS.Signals, what: string): Promise<void>;
  save(): void;
};

export async function newRedisClusterNodes(): Promise<RedisClusterNode[]> {
  const nodes: RedisClusterNode[] = [];
  for (let i = 1; i <= REDIS_CLUSTER_NODES; i++)
    nodes.push({
      name: `redis-${i}`,
      port: await freePort(),
      busPort: await freePort(),
      pid: undefined,
      role: i <= 3 ? "primary" : "replica",
    });
  return nodes;
}

export class LocalRedisCluster {
  readonly #host: RedisClusterHost;
  readonly #nodes: RedisClusterNode[];
  constructor(host: RedisClusterHost, nodes: RedisClusterNode[]) {
    this.#host = host;
    this.#nodes = nodes;
  }

  /** REDIS_CLUSTER_NODES for the app: every node is a seed. */
  seeds(): string {
    return this.#nodes.map((n) => `127.0.0.1:${n.port}`).join(",");
  }

  #node(name: string): RedisClusterNode {
    const n = this.#nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no Redis node ${name}; this cluster has ${this.#nodes.map((x) => x.name).join(", ")}`);
    return n;
  }

  #running(n: RedisClusterNode): boolean {
    return this.#host.alive(n.pid, `:${n.port}`);
  }

  #conf(n: RedisClusterNode): string {
    const dir = join(this.#host.dir, "redis", n.name);
    mkdirSync(dir, { recursive: true });
    const acl = join(dir, "users.acl");
    writeFileSync(acl, this.#host.aclFile, { mode: 0o600 });
    const conf = join(dir, "redis.conf");
    // As the single Redis (AOF every second, noeviction), plus cluster mode. cluster-node-timeout
    // 2 s: a primary unreachable that long is marked failing and its replica takes over about
    // a second later (measured ~3-4 s in all); lower risks a false failover when this shared
    // 2-core box stalls a node. masterauth is in this 0600 file, never in argv.
    const base = { port: n.port, bind: "127.0.0.1", dir, aclfile: acl, maxmemory: this.#host.maxmemory };
    const cluster = [
      "cluster-enabled yes",
      "cluster-config-file nodes.conf",
      "cluster-node-timeout 2000",
      `cluster-port ${n.busPort}`,
      // no: while one shard has no primary (between its primary failing and its replica winning the
      // election), the other shards keep serving their slots. With yes every node answered CLUSTERDOWN
      // for that second, and every session, not only the third on that shard, got a 503.
      "cluster-require-full-coverage no",
      "masteruser replication",
      `masterauth ${this.#host.replicationPassword}`,
    ];
    writeFileSync(conf, redisConf(base, cluster), { mode: 0o600 });
    return conf;
  }

  async #spawnNode(bin: string, n: RedisClusterNode): Promise<void> {
    n.pid = this.#host.spawn(n.name, bin, [this.#conf(n)]);
    this.#host.save();
    await waitFor(`${n.name} on port ${n.port}`, async () => (await this.#ask(n.port, "PING")) === "PONG", 15_000, 50);
  }

  /** First start: six empty nodes, joined into a cluster. Later starts: the nodes reload nodes.conf and AOF. */
  async start(bin: string, fresh: boolean): Promise<void> {
    await Promise.all(this.#nodes.filter((n) => !this.#running(n)).map((n) => this.#spawnNode(bin, n)));
    if (fresh) {
      // --user with REDISCLI_AUTH: redis-cli authenticates as admin; no password in argv.
      await run(
        "redis-cli",
        [
          "--cluster",
          "create",
          ...this.#nodes.map((n) => `127.0.0.1:${n.port}`),
          "--cluster-replicas",
          "1",
          "--cluster-yes",
          "--user",
          "admin",
        ],
        { timeout: 60_000, env: { ...process.env, REDISCLI_AUTH: this.#host.adminPassword } },
      ).catch((err: { stdout?: string; stderr?: string; message: string }) => {
        throw new Error(`redis-cli --cluster create failed: ${err.stderr || err.stdout || err.message}`);
      });
    }
    await this.waitHealthy(60_000);
  }

  /** Every node running agrees the cluster is ok, every slot has a running primary, every replica has synced. */
  async waitHealthy(timeoutMs: number): Promise<void> {
    await this.waitForPrimary({ timeoutMs });
    await waitFor(
      "every Redis replica to sync with its primary",
      async () => {
        for (const n of this.#nodes.filter((x) => this.#running(x))) {
          const info = await this.#ask(n.port, "INFO", "replication");
          if (/^role:slave/m.test(info) && !/^master_link_status:up/m.test(info)) return false;
          if (!/^cluster_state:ok/m.test(await this.#ask(n.port, "CLUSTER", "INFO"))) return false;
        }
        return true;
      },
      timeoutMs,
      100,
    );
  }

  /**
   * Resolves once every slot is served by a running primary (as a running node's CLUSTER SLOTS
   * says, with cluster_state ok), with the name of a primary other than `exclude`.
   */
  async waitForPrimary(opts: { exclude?: string; timeoutMs?: number } = {}): Promise<string> {
    let found: string | undefined;
    await waitFor(
      "every Redis Cluster slot to be served by a running primary",
      async () => {
        found = await this.#allSlotsServed(opts.exclude);
        return found !== undefined;
      },
      opts.timeoutMs ?? 30_000,
      100,
    );
    return found!;
  }

  async #allSlotsServed(exclude: string | undefined): Promise<string | undefined> {
    // The first running node to answer speaks for the cluster: asked all at once, so that a frozen
    // one (pause()) costs nothing but its own connection.
    const running = this.#nodes.filter((x) => this.#running(x));
    if (running.length === 0) return undefined;
    const first = await Promise.any(
      running.map(async (n) => ({ n, info: await this.#ask(n.port, "CLUSTER", "INFO") })),
    ).catch(() => undefined);
    if (!first || !/^cluster_state:ok/m.test(first.info)) return undefined;
    const probe = first.n;
    const slots = await this.#admin(
      probe.port,
      (r) => r.call("CLUSTER", "SLOTS") as Promise<[number, number, [string, number]][]>,
    );
    let covered = 0;
    const primaries = new Set<string>();
    for (const [start, end, [, port]] of slots) {
      const n = this.#nodes.find((x) => x.port === port);
      if (!n || !this.#running(n)) return undefined;
      covered += end - start + 1;
      primaries.add(n.name);
    }
    if (covered !== SLOTS) return undefined;
    // The primaries must say so themselves too (a node just restarted may still be a replica).
    const roles = await Promise.all([...primaries].map((name) => this.#ask(this.#node(name).port, "ROLE")));
    if (roles.some((r) => r !== "master")) return undefined;
    return [...primaries].find((p) => p !== exclude);
  }

  async nodes(): Promise<RedisNodeInfo[]> {
    const out: RedisNodeInfo[] = [];
    for (const n of this.#nodes) {
      const running = this.#running(n);
      if (running) {
        const role = await this.#ask(n.port, "ROLE").catch(() => "");
        if (role === "master") n.role = "primary";
        else if (role === "slave") n.role = "replica";
      }
      out.push({ name: n.name, role: n.role, running, address: `127.0.0.1:${n.port}` });
    }
    this.#host.save();
    return out;
  }

  /**
   * Cuts one node off without killing it: SIGSTOP, then SIGCONT after `ms`; resolves once it runs
   * again. Frozen, it answers neither clients nor the cluster bus, so after cluster-node-timeout
   * its peers mark it failing and a replica of a frozen primary takes over. CLIENT PAUSE would
   * not do: it leaves the cluster bus answering, and Redis Cluster never fails over.
   */
  async pause(name: string, ms: number): Promise<void> {
    const n = this.#node(name);
    if (!this.#running(n)) throw new Error(`${name} is not running`);
    process.kill(n.pid!, "SIGSTOP");
    try {
      await sleep(ms);
    } finally {
      this.#resume(n);
    }
  }

  /** SIGCONT: a node left stopped (an interrupted pause) would ignore SIGTERM until then. */
  #resume(n: RedisClusterNode): void {
    if (!this.#running(n)) return;
    try {
      process.kill(n.pid!, "SIGCONT");
    } catch {
      // gone already
    }
  }

  async kill(name: string, signal: Signal): Promise<void> {
    const n = this.#node(name);
    this.#resume(n);
    await this.nodes();
    await this.#host.signal(n.pid, `:${n.port}`, signal, n.name);
    n.pid = undefined;
    this.#host.save();
  }

  /** Starts a stopped node; it rejoins from its nodes.conf (a former primary comes back as a replica). */
  async startNode(bin: string, name: string): Promise<void> {
    const n = this.#node(name);
    if (!this.#running(n)) await this.#spawnNode(bin, n);
    await waitFor(
      `${n.name} to rejoin the cluster and, as a replica, finish its first sync`,
      () => this.#rejoined(n),
      30_000,
      100,
    );
  }

  /**
   * cluster_state ok is not enough: a replica that has not finished its first sync since it started
   * cannot be elected (its data counts as too old), so a failover of its primary right after would
   * never happen (seen: redis-partition froze such a primary and no replica took over). A node that
   * says master without slots is a former primary about to be told it was replaced: not yet either.
   */
  async #rejoined(n: RedisClusterNode): Promise<boolean> {
    if (!/^cluster_state:ok/m.test(await this.#ask(n.port, "CLUSTER", "INFO"))) return false;
    const myself = (await this.#ask(n.port, "CLUSTER", "NODES")).split("\n").find((l) => l.includes("myself"));
    const [, , flags = "", , , , , , ...slots] = (myself ?? "").trim().split(" ");
    if (flags.includes("master")) return slots.length > 0;
    return /^master_link_status:up/m.test(await this.#ask(n.port, "INFO", "replication"));
  }

  async stopAll(signal: Signal): Promise<void> {
    for (const n of this.#nodes) this.#resume(n);
    await this.nodes().catch(() => []);
    await Promise.all(
      this.#nodes.map(async (n) => {
        this.#resume(n);
        await this.#host.signal(n.pid, `:${n.port}`, signal, n.name);
        n.pid = undefined;
      }),
    );
    this.#host.save();
  }

  /** One command as admin, on the first running primary; -c follows MOVED to the key's node. */
  async command(args: string[]): Promise<string> {
    const nodes = await this.nodes();
    const target = nodes.find((n) => n.running && n.role === "primary") ?? nodes.find((n) => n.running);
    if (!target) throw new Error("no Redis node is running");
    return this.#cli(Number(target.address.split(":")[1]), "-c", ...args);
  }

  logNames(): string[] {
    return this.#nodes.map((n) => n.name);
  }

  async #cli(port: number, ...args: string[]): Promise<string> {
    const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), "--user", "admin", ...args], {
      timeout: 5000,
      env: { ...process.env, REDISCLI_AUTH: this.#host.adminPassword },
    });
    return stdout.trim();
  }

  /**
   * One command on one node over a short-lived connection, as text (ROLE: its first element). The
   * polls above use this, not redis-cli: a redis-cli per probe forks a process from this one, and
   * on a busy 2-core machine each fork stalled its event loop, and with it the load the harness
   * drives from the same process (client-side latencies of 1.3-2 s where nginx logged <= 0.44 s).
   */
  async #ask(port: number, command: string, ...args: string[]): Promise<string> {
    const reply = await this.#admin(port, (r) => r.call(command, ...args));
    const first = Array.isArray(reply) ? (reply as unknown[])[0] : reply;
    return typeof first === "string" ? first : Buffer.isBuffer(first) ? first.toString() : String(first);
  }

  async #admin<T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> {
    const r = new Redis({
      host: "127.0.0.1",
      port,
      username: "admin",
      password: this.#host.adminPassword,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 2000,
      commandTimeout: 2000,
      // Probes: no INFO round trip before the command, no CLIENT SETINFO (the admin user may lack it).
      enableReadyCheck: false,
      disableClientInfo: true,
    });
    r.on("error", () => {});
    try {
      await r.connect();
      return await fn(r);
    } finally {
      r.disconnect();
    }
  }
}
