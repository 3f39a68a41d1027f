// The Cluster as local processes on 127.0.0.1: one redis-server (AOF on, its own data
// folder, ACL users with passwords), N Node replicas and one nginx. State lives in a folder so that
// separate commands (`make up`, then `make kill`) drive the same cluster.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type {
  ClientLimits,
  Cluster,
  ClusterOptions,
  RedisNodeInfo,
  RedisTopology,
  ReplicaInfo,
  Signal,
} from "./cluster.ts";
import { LocalRedisCluster, newRedisClusterNodes, type RedisClusterNode } from "./redis-cluster.ts";
import { LocalSentinelTopology, sentinelAppEnv, sentinelState, type SentinelState } from "./redis-sentinel.ts";
import { clientLimitsConf, clientLimitsFrom } from "./client-limits.ts";
import { redisAclFile, redisConf } from "./redis-conf.ts";
import { httpStatus, waitFor } from "./wait.ts";
import { freePort } from "./ports.ts";

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const serverEntry = join(repoRoot, "services/app/src/server.ts");
const aclTemplate = join(repoRoot, "infra/redis/users.acl");
/** Redis's memory cap, as in docker-compose.yml; see there for the policy (noeviction). */
const REDIS_MAXMEMORY = "200mb";

/** The users of infra/redis/users.acl that log in, each with a password of its own. */
type RedisUser = "app" | "health" | "admin" | "replication" | "sentinel";

type Proc = { pid: number | undefined };
type LocalState = {
  kind: "local";
  port: number;
  redis: Proc & { port: number; passwords: Record<RedisUser, string> };
  redisTopology?: RedisTopology;
  /** REDIS=cluster: the six nodes (redis-cluster.ts); `redis` above is then unused but for its passwords. */
  redisCluster?: RedisClusterNode[];
  /** REDIS=sentinel: the six processes of redis-sentinel.ts instead of the one above. */
  sentinel?: SentinelState;
  replicas: (Proc & { index: number; name: string; port: number; opsPort: number })[];
  nginx: Proc;
  appEnv: Record<string, string>;
  sessionSecret: string;
  clientLimits: ClientLimits | false;
  upstreamKeepalive?: boolean;
  /** nginx also terminates TLS on tls.port with this certificate and key (PEM files). */
  tls?: { cert: string; key: string; port: number };
};

export type LocalClusterOptions = ClusterOptions & {
  /** Folder for state, logs and Redis data; created if missing, removed by stop(). */
  dir: string;
  /** nginx keeps idle connections to the replicas (default); false shows what that is worth (`make bench`). */
  upstreamKeepalive?: boolean;
  /**
   * nginx also listens with TLS (on a port of its own, see httpsUrl()), with this certificate
   * and key (PEM file paths); requests there reach the replicas with X-Forwarded-Proto: https.
   */
  tls?: { cert: string; key: string };
};

/** A local replica also answers on ports of its own, so callers holding a LocalCluster get its URLs. */
export type LocalReplicaInfo = ReplicaInfo & { url: string; opsUrl: string };

/** True while `pid` runs (a zombie counts as gone) and its command line contains `marker`. */
function alive(pid: number | undefined, marker: string): boolean {
  if (!pid) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    if (/^\d+ \(.*\) [ZX] /.test(stat)) return false;
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(marker);
  } catch {
    return false;
  }
}

async function need(binary: string, pkg: string): Promise<string> {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin", "/sbin"])) {
    const p = join(dir, binary);
    if (existsSync(p)) return p;
  }
  throw new Error(
    `${binary} not found; install it: sudo apt-get install -y ${pkg} (make up and make test do this when run as root)`,
  );
}

/**
 * The main nginx config for an nginx run as a local process: its pid and temp files in `dir`,
 * the shared settings of nginx/proxy.conf, and `http` (upstreams and servers) inside http {}.
 * The local cluster and the benchmark's nginx-only baseline both use it, so they stay alike.
 */
export function localNginxConf(dir: string, accessLog: string, title: string, http: string): string {
  return `# ${title}; the shared settings are in nginx/*.conf.
worker_processes 2;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  client_body_temp_path ${dir}/client-body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${join(repoRoot, "nginx/proxy.conf")};
  access_log ${accessLog} json;
${http}}
`;
}

/** The load balancer's upstream and server blocks: round-robin over `ports`, nginx/locations.conf. */
export function loadBalancerHttp(ports: number[], listenPort: number, keepalive: boolean): string {
  const servers = ports.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=2s;`).join("\n");
  return `  upstream app {
    # A shared zone makes round-robin one sequence across nginx's workers, not one each.
    zone app 64k;
${servers}
${
  keepalive
    ? `    keepalive 64;
    keepalive_timeout 60s;
    keepalive_requests 10000;`
    : "    # keepalive off: a new connection to a replica per request"
}
  }
  server {
    listen 127.0.0.1:${listenPort};
    include ${join(repoRoot, "nginx/locations.conf")};
  }
`;
}

const secret = () => randomBytes(18).toString("base64url");

export class LocalCluster implements Cluster {
  readonly kind = "local" as const;
  readonly dir: string;
  #state: LocalState;

  private constructor(dir: string, state: LocalState) {
    this.dir = dir;
    this.#state = state;
  }

  /** A new cluster description; nothing runs until start(). */
  static create(opts: LocalClusterOptions): LocalCluster {
    const dir = resolve(opts.dir);
    const n = opts.replicas ?? 3;
    return new LocalCluster(dir, {
      kind: "local",
      port: opts.port ?? 0,
      redis: {
        pid: undefined,
        port: 0,
        passwords: { app: secret(), health: secret(), admin: secret(), replication: secret(), sentinel: secret() },
      },
      redisTopology: opts.redis ?? "single",
      ...(opts.redis === "sentinel" ? { sentinel: sentinelState([0, 0, 0, 0, 0, 0]) } : {}),
      replicas: Array.from({ length: n }, (_, i) => ({
        index: i + 1,
        name: `app-${i + 1}`,
        port: 0,
        opsPort: 0,
        pid: undefined,
      })),
      nginx: { pid: undefined },
      appEnv: opts.appEnv ?? {},
      sessionSecret: randomBytes(32).toString("base64url"),
      clientLimits: clientLimitsFrom(opts.clientLimits),
      upstreamKeepalive: opts.upstreamKeepalive ?? true,
      ...(opts.tls ? { tls: { cert: resolve(opts.tls.cert), key: resolve(opts.tls.key), port: 0 } } : {}),
    });
  }

  /** Re-opens a cluster that an earlier process started in `dir`, or undefined. */
  static attach(dir: string): LocalCluster | undefined {
    const file = join(resolve(dir), "state.json");
    if (!existsSync(file)) return undefined;
    return new LocalCluster(resolve(dir), JSON.parse(readFileSync(file, "utf8")) as LocalState);
  }

  baseUrl(): string {
    return `http://127.0.0.1:${this.#state.port}`;
  }

  get redisPort(): number {
    return this.#state.redisCluster?.[0]?.port ?? this.#state.redis.port;
  }

  get redisTopology(): RedisTopology {
    return this.#state.redisTopology ?? "single";
  }

  /** REDIS=cluster's nodes, through the driver's own process helpers. */
  #redisCluster(): LocalRedisCluster | undefined {
    const nodes = this.#state.redisCluster;
    if (!nodes) return undefined;
    const r = this.#state.redis;
    return new LocalRedisCluster(
      {
        dir: this.dir,
        adminPassword: r.passwords.admin,
        replicationPassword: r.passwords.replication,
        aclFile: redisAclFile(readFileSync(aclTemplate, "utf8"), r.passwords),
        maxmemory: REDIS_MAXMEMORY,
        spawn: (name, cmd, args) => this.#spawn(name, cmd, args),
        alive,
        signal: (pid, marker, signal, what) => this.#signal(pid, marker, signal, what),
        save: () => this.#save(),
      },
      nodes,
    );
  }

  /** The password of a Redis user (infra/redis/users.acl): app, health or admin. */
  redisPassword(user: RedisUser): string {
    return this.#state.redis.passwords[user];
  }

  /** The load balancer's TLS URL, when the cluster was created with `tls`. */
  httpsUrl(): string | undefined {
    return this.#state.tls ? `https://127.0.0.1:${this.#state.tls.port}` : undefined;
  }

  /**
   * Replaces the extra environment of the replicas; replicas started from now on get it
   * (startReplica, restartReplicas). For tests that change config, such as rotating secrets.
   */
  setAppEnv(env: Record<string, string>): void {
    this.#state.appEnv = { ...env };
    this.#save();
  }

  get appEnv(): Readonly<Record<string, string>> {
    return this.#state.appEnv;
  }

  #save(): void {
    writeFileSync(join(this.dir, "state.json"), `${JSON.stringify(this.#state, null, 2)}\n`, { mode: 0o600 });
  }

  #log(name: string): string {
    return join(this.dir, "logs", `${name}.log`);
  }

  #spawn(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
    const out = openSync(this.#log(name), "a");
    try {
      const child = spawn(cmd, args, { detached: true, stdio: ["ignore", out, out], env });
      child.on("error", () => {}); // reported through the readiness wait instead
      child.unref();
      if (!child.pid) throw new Error(`could not start ${name} (${cmd})`);
      return child.pid;
    } finally {
      closeSync(out);
    }
  }

  async start(): Promise<void> {
    const redisBin = await need("redis-server", "redis-server");
    const nginxBin = await need("nginx", "nginx");
    mkdirSync(join(this.dir, "logs"), { recursive: true });
    mkdirSync(join(this.dir, "redis"), { recursive: true });
    mkdirSync(join(this.dir, "nginx"), { recursive: true });
    const s = this.#state;
    if (s.port === 0) s.port = await freePort();
    if (this.redisTopology === "cluster") s.redisCluster = await newRedisClusterNodes();
    else s.redis.port = await freePort();
    for (const n of s.sentinel?.nodes ?? []) n.port = await freePort();
    for (const r of s.replicas) {
      r.port = await freePort();
      r.opsPort = await freePort();
    }
    if (s.tls) s.tls.port = await freePort();
    this.#save();
    try {
      if (s.sentinel) await this.#sentinel(redisBin).start();
      else await this.#startRedis(redisBin);
      await Promise.all(s.replicas.map((r) => this.startReplica(r.index)));
      await this.#startNginx(nginxBin);
    } catch (err) {
      const tail = await this.logs(30).catch(() => "");
      await this.stop().catch(() => {});
      throw new Error(`${(err as Error).message}\n--- recent logs ---\n${tail}`, { cause: err });
    }
  }

  /** The Sentinel topology's processes, driven with this cluster's spawn, files and redis-cli. */
  #sentinel(redisBin = "redis-server"): LocalSentinelTopology {
    const s = this.#state;
    return new LocalSentinelTopology(
      {
        dir: join(this.dir, "redis"),
        redisBin,
        passwords: s.redis.passwords,
        aclText: redisAclFile(readFileSync(aclTemplate, "utf8"), s.redis.passwords),
        maxmemory: REDIS_MAXMEMORY,
        waitReplicas: Number(s.appEnv.REDIS_WAIT_REPLICAS ?? 0),
        spawn: (name, bin, args) => this.#spawn(name, bin, args),
        alive,
        signal: (pid, marker, signal, what) => this.#signal(pid, marker, signal, what),
        // stop() removes the folder; a late save must not recreate or fail on it.
        save: () => existsSync(this.dir) && this.#save(),
        cli: (port, user, args) => this.#cli(port, user, args),
      },
      s.sentinel!,
    );
  }

  async #startRedis(bin: string, fresh = true): Promise<void> {
    const cluster = this.#redisCluster();
    if (cluster) return cluster.start(bin, fresh);
    const r = this.#state.redis;
    const dir = join(this.dir, "redis");
    // Passwords only in files (0600), never in argv, which every local user can read in `ps`.
    const acl = join(dir, "users.acl");
    writeFileSync(acl, redisAclFile(readFileSync(aclTemplate, "utf8"), r.passwords), { mode: 0o600 });
    const conf = join(dir, "redis.conf");
    const base = { port: r.port, bind: "127.0.0.1", dir, aclfile: acl, maxmemory: REDIS_MAXMEMORY };
    writeFileSync(conf, redisConf(base), { mode: 0o600 });
    r.pid = this.#spawn("redis", bin, [conf]);
    this.#save();
    await waitFor(`redis on port ${r.port}`, async () => (await this.redisCommand("PING")) === "PONG", 15_000, 50);
  }

  async startReplica(index: number): Promise<void> {
    const r = this.#replica(index);
    if (alive(r.pid, this.dir)) return;
    if (r.port === 0) r.port = await freePort();
    if (!r.opsPort) r.opsPort = await freePort();
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      NODE_ENV: "production",
      HOST: "127.0.0.1",
      PORT: String(r.port),
      OPS_PORT: String(r.opsPort),
      REPLICA_ID: r.name,
      ...(this.#state.redisCluster
        ? { REDIS_CLUSTER_NODES: this.#redisCluster()!.seeds() }
        : this.#state.sentinel
          ? sentinelAppEnv(this.#state.sentinel, this.#state.redis.passwords)
          : { REDIS_URL: `redis://127.0.0.1:${this.#state.redis.port}` }),
      REDIS_USERNAME: "app",
      REDIS_PASSWORD: this.#state.redis.passwords.app,
      // The cluster's own secret, unless the test or the caller chose its own (rotation).
      ...(["SESSION_SECRET", "SESSION_SECRETS", "SESSION_SECRET_FILE", "SESSION_SECRETS_FILE"].some(
        (k) => this.#state.appEnv[k] !== undefined,
      )
        ? {}
        : { SESSION_SECRET: this.#state.sessionSecret }),
      ...this.#state.appEnv,
    };
    // `--cluster-dir` is ignored by the app; it marks the process as this cluster's.
    r.pid = this.#spawn(r.name, process.execPath, [serverEntry, `--cluster-dir=${this.dir}`], env);
    this.#save();
    await waitFor(
      `${r.name} ready on port ${r.port}`,
      async () => {
        if (!alive(r.pid, this.dir)) throw new Error(`${r.name} exited; see ${this.#log(r.name)}`);
        return (await httpStatus(`http://127.0.0.1:${r.opsPort}/readyz`)) === 200;
      },
      20_000,
    );
  }

  #nginxConf(): string {
    const d = join(this.dir, "nginx");
    const limits = clientLimitsConf(this.#state.clientLimits).replace(/^(?=.)/gm, "  ");
    const ports = this.#state.replicas.map((r) => r.port);
    let http = loadBalancerHttp(ports, this.#state.port, this.#state.upstreamKeepalive !== false);
    const tls = this.#state.tls;
    if (tls) {
      // The same server, also on a TLS port: there $scheme, and so X-Forwarded-Proto, is https.
      http = http.replace(
        /^( {4}listen 127\.0\.0\.1:\d+;)$/m,
        `$1
    listen 127.0.0.1:${tls.port} ssl;
    ssl_certificate ${tls.cert};
    ssl_certificate_key ${tls.key};
    include ${join(repoRoot, "nginx/tls.conf")};`,
      );
    }
    return localNginxConf(
      d,
      this.#log("nginx-access"),
      "Generated by infra/cluster/local-cluster.ts",
      `${limits}${http}`,
    );
  }

  async #startNginx(bin: string): Promise<void> {
    const conf = join(this.dir, "nginx", "nginx.conf");
    writeFileSync(conf, this.#nginxConf());
    const args = ["-p", join(this.dir, "nginx"), "-c", conf, "-e", this.#log("nginx-error")];
    await run(bin, [...args, "-t", "-q"]).catch((err: Error & { stderr?: string }) => {
      throw new Error(`nginx rejected its config: ${err.stderr ?? String(err)}`);
    });
    this.#state.nginx.pid = this.#spawn("nginx", bin, [...args, "-g", "daemon off;"]);
    this.#save();
    await waitFor(
      `nginx on port ${this.#state.port}`,
      async () => (await httpStatus(`${this.baseUrl()}/nginx-health`)) === 200,
      10_000,
    );
  }

  #replica(index: number) {
    const r = this.#state.replicas.find((x) => x.index === index);
    if (!r)
      throw new Error(`no replica ${index}; this cluster has ${this.#state.replicas.map((x) => x.index).join(", ")}`);
    return r;
  }

  async replicas(): Promise<LocalReplicaInfo[]> {
    return this.#state.replicas.map((r) => ({
      index: r.index,
      name: r.name,
      replicaId: r.name,
      running: alive(r.pid, this.dir),
      url: `http://127.0.0.1:${r.port}`,
      opsUrl: `http://127.0.0.1:${r.opsPort}`,
      detail: `http://127.0.0.1:${r.port}`,
    }));
  }

  async probeReplica(index: number, path: string): Promise<number> {
    return httpStatus(`http://127.0.0.1:${this.#replica(index).opsPort}${path}`, 2000);
  }

  async #signal(
    pid: number | undefined,
    marker: string,
    signal: NodeJS.Signals,
    what: string,
    timeoutMs = 20_000,
  ): Promise<void> {
    if (!alive(pid, marker)) return;
    try {
      process.kill(pid!, signal);
    } catch {
      return;
    }
    await waitFor(`${what} to exit after ${signal}`, () => !alive(pid, marker), timeoutMs, 20);
  }

  async killReplica(index: number, signal: Signal): Promise<void> {
    const r = this.#replica(index);
    await this.#signal(r.pid, this.dir, signal, r.name);
    r.pid = undefined;
    this.#save();
  }

  /**
   * Freezes (SIGSTOP) or thaws (SIGCONT) a replica without ending it: a frozen replica still takes
   * connections and requests (the kernel queues them) and answers none, as a wedged process does.
   */
  signalReplica(index: number, signal: "SIGSTOP" | "SIGCONT"): void {
    const r = this.#replica(index);
    if (!alive(r.pid, this.dir)) throw new Error(`${r.name} is not running`);
    process.kill(r.pid!, signal);
  }

  async restartReplicas(): Promise<void> {
    await Promise.all(this.#state.replicas.map((r) => this.killReplica(r.index, "SIGTERM")));
    await Promise.all(this.#state.replicas.map((r) => this.startReplica(r.index)));
  }

  async scale(n: number): Promise<void> {
    if (!Number.isInteger(n) || n < 1 || n > 32) throw new Error("scale takes a whole number of replicas from 1 to 32");
    const s = this.#state;
    while (s.replicas.length < n) {
      const index = Math.max(0, ...s.replicas.map((r) => r.index)) + 1;
      s.replicas.push({ index, name: `app-${index}`, port: 0, opsPort: 0, pid: undefined });
      await this.startReplica(index);
    }
    const removed = s.replicas.splice(n);
    await this.#reloadNginx();
    for (const r of removed) await this.#signal(r.pid, this.dir, "SIGTERM", r.name);
    this.#save();
  }

  async #reloadNginx(): Promise<void> {
    writeFileSync(join(this.dir, "nginx", "nginx.conf"), this.#nginxConf());
    const pid = this.#state.nginx.pid;
    if (!alive(pid, this.dir)) throw new Error("nginx is not running");
    process.kill(pid!, "SIGHUP");
    // A reload starts new workers; give the old ones a moment to hand over.
    await sleep(300);
  }

  async stopRedis(signal: Signal): Promise<void> {
    // Redis Cluster: every node (the meaning of "restart Redis" there); the data survives in each node's AOF.
    const cluster = this.#redisCluster();
    if (cluster) return cluster.stopAll(signal);
    if (this.#state.sentinel) return this.#sentinel().stopServers(signal);
    await this.#signal(this.#state.redis.pid, `:${this.#state.redis.port}`, signal, "redis-server");
    this.#state.redis.pid = undefined;
    this.#save();
  }

  async startRedis(): Promise<void> {
    if (this.#state.redisCluster) await this.#startRedis(await need("redis-server", "redis-server"), false);
    else if (this.#state.sentinel) await this.#sentinel(await need("redis-server", "redis-server")).startServers();
    else if (!alive(this.#state.redis.pid, `:${this.#state.redis.port}`))
      await this.#startRedis(await need("redis-server", "redis-server"));
    // Replicas reconnect on their own (ioredis backoff, capped at 1 s); wait until they have.
    await Promise.all(
      (await this.replicas())
        .filter((r) => r.running)
        .map((r) =>
          waitFor(
            `${r.name} to reconnect to redis`,
            async () => (await httpStatus(`${r.opsUrl}/readyz`)) === 200,
            10_000,
          ),
        ),
    );
  }

  /** The redis-server processes' pids (for CPU accounting). */
  redisPids(): number[] {
    const pids = (this.#state.redisCluster ?? this.#state.sentinel?.nodes)?.map((n) => n.pid) ?? [
      this.#state.redis.pid,
    ];
    return pids.filter((p): p is number => p !== undefined);
  }

  async redisCommand(...args: string[]): Promise<string> {
    const cluster = this.#redisCluster();
    if (cluster) return cluster.command(args);
    // Sentinel: on the primary the Sentinels name now.
    const port = this.#state.sentinel ? await this.#sentinel().primaryPort() : this.#state.redis.port;
    return this.#cli(port, "admin", args);
  }

  /**
   * One command as admin on the Redis node at `address` (host:port, as redisNodes() gives it), that
   * node only: no redirection followed, no Sentinel asked.
   */
  async redisCommandOn(address: string, ...args: string[]): Promise<string> {
    const port = Number(address.slice(address.lastIndexOf(":") + 1));
    if (!Number.isInteger(port) || port <= 0) throw new Error(`"${address}" is not a host:port of a Redis node`);
    return this.#cli(port, "admin", args);
  }

  async #cli(port: number, user: "admin" | "app", args: string[]): Promise<string> {
    // As the admin user (operators' and tests' commands); the password goes in the
    // environment, not argv: `ps` shows argv, and a failed command's message quotes it.
    const { stdout } = await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), "--user", user, ...args], {
      timeout: 5000,
      env: { ...process.env, REDISCLI_AUTH: this.#state.redis.passwords[user] },
    });
    return stdout.trim();
  }

  /** Every Redis node and its role (one "primary" with REDIS=single). */
  async redisNodes(): Promise<RedisNodeInfo[]> {
    const cluster = this.#redisCluster();
    if (cluster) return cluster.nodes();
    if (this.#state.sentinel) return this.#sentinel().nodes();
    const r = this.#state.redis;
    return [{ name: "redis", role: "primary", running: alive(r.pid, `:${r.port}`), address: `127.0.0.1:${r.port}` }];
  }

  async killRedisNode(name: string, signal: Signal): Promise<void> {
    const cluster = this.#redisCluster();
    if (cluster) return cluster.kill(name, signal);
    if (this.#state.sentinel) return this.#sentinel().kill(name, signal);
    if (name !== "redis") throw new Error(`no Redis node "${name}"; this cluster has redis`);
    await this.stopRedis(signal);
  }

  async startRedisNode(name: string): Promise<void> {
    const cluster = this.#redisCluster();
    if (cluster) return cluster.startNode(await need("redis-server", "redis-server"), name);
    if (this.#state.sentinel) return this.#sentinel(await need("redis-server", "redis-server")).startNode(name);
    if (name !== "redis") throw new Error(`no Redis node "${name}"; this cluster has redis`);
    await this.startRedis();
  }

  /** Redis Cluster only (SIGSTOP, then SIGCONT): see LocalRedisCluster.pause. */
  async pauseRedisNode(name: string, ms: number): Promise<void> {
    const cluster = this.#redisCluster();
    if (!cluster) throw new Error(`pausing a Redis node needs REDIS=cluster, not ${this.redisTopology}`);
    await cluster.pause(name, ms);
  }

  /** Cluster: every slot has a running primary, one other than `exclude`; Sentinel: the primary they name. */
  async waitForPrimary(opts: { exclude?: string; timeoutMs?: number } = {}): Promise<string> {
    const cluster = this.#redisCluster();
    if (cluster) return cluster.waitForPrimary(opts);
    if (this.#state.sentinel) return this.#sentinel().waitForPrimary(opts);
    // One server: it is the primary once it answers; nothing can replace it.
    const r = this.#state.redis;
    await waitFor(
      "redis to answer",
      async () => opts.exclude !== "redis" && (await this.#cli(r.port, "admin", ["PING"])) === "PONG",
      opts.timeoutMs ?? 30_000,
      50,
    );
    return "redis";
  }

  async logs(lines = 50): Promise<string> {
    const redis = this.#redisCluster()?.logNames() ?? this.#state.sentinel?.nodes.map((n) => n.name) ?? ["redis"];
    const names = [...redis, ...this.#state.replicas.map((r) => r.name), "nginx-error", "nginx-access"];
    const out: string[] = [];
    for (const name of names) {
      const file = this.#log(name);
      if (!existsSync(file)) continue;
      const tail = readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines);
      for (const line of tail) if (line) out.push(`${name.padEnd(12)} | ${line}`);
    }
    return out.join("\n");
  }

  async stop(): Promise<void> {
    const s = this.#state;
    await this.#signal(s.nginx.pid, this.dir, "SIGTERM", "nginx").catch(() => {});
    await Promise.all(
      s.replicas.map((r) =>
        this.#signal(r.pid, this.dir, "SIGTERM", r.name).catch(() => this.#signal(r.pid, this.dir, "SIGKILL", r.name)),
      ),
    );
    await this.#redisCluster()
      ?.stopAll("SIGTERM")
      .catch(() => this.#redisCluster()?.stopAll("SIGKILL"));
    if (s.sentinel) await this.#sentinel().stopAll();
    await this.#signal(s.redis.pid, `:${s.redis.port}`, "SIGTERM", "redis-server").catch(() =>
      this.#signal(s.redis.pid, `:${s.redis.port}`, "SIGKILL", "redis-server"),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}
