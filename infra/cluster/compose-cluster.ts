// The Cluster as Docker Compose containers (docker-compose.yml): Redis, N app replicas made
// with --scale, nginx. REDIS=sentinel adds docker-compose.sentinel.yml: a primary, two replicas
// and three Sentinels in place of the one Redis. State lives in a folder, so `make up` and a
// later `make kill` drive the same project; each test cluster gets a project name of its own.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { APP_IMAGE, buildAppImage, resolveBaseImages } from "../images/images.ts";
import type { Cluster, ClusterOptions, RedisNodeInfo, RedisTopology, ReplicaInfo, Signal } from "./cluster.ts";
import { clientLimitsConf, clientLimitsFrom } from "./client-limits.ts";
import {
  composeCommand,
  defaultProjectName,
  docker,
  mergeLogs,
  probeApp,
  redisCli,
  run,
  writeSecrets,
  type Command,
} from "./docker.ts";
import { httpStatus, waitFor } from "./wait.ts";
import { freePort } from "./ports.ts";
import { redisAclFile, redisConf, SENTINEL_MASTER, sentinelConf, sentinelDataConf } from "./redis-conf.ts";

const repoRoot = resolve(import.meta.dirname, "../..");
const composeFile = join(repoRoot, "docker-compose.yml");
const sentinelComposeFile = join(repoRoot, "docker-compose.sentinel.yml");
const aclTemplate = join(repoRoot, "infra/redis/users.acl");

/**
 * REDIS=sentinel's nodes: `name` as the local driver names them (what killRedisNode takes), the
 * Compose service, and the last byte of its fixed address on `store` (docker-compose.sentinel.yml
 * says why addresses, not names).
 */
const SENTINEL_NODES = [
  { name: "redis-1", service: "redis", kind: "redis", port: 6379, ip: 11 },
  { name: "redis-2", service: "redis-2", kind: "redis", port: 6379, ip: 12 },
  { name: "redis-3", service: "redis-3", kind: "redis", port: 6379, ip: 13 },
  { name: "sentinel-1", service: "sentinel-1", kind: "sentinel", port: 26379, ip: 21 },
  { name: "sentinel-2", service: "sentinel-2", kind: "sentinel", port: 26379, ip: 22 },
  { name: "sentinel-3", service: "sentinel-3", kind: "sentinel", port: 26379, ip: 23 },
] as const;

const ipv4 = (a: string) => a.split(".").reduce((n, b) => n * 256 + Number(b), 0);

/**
 * A /24 for the `store` network (its first three bytes, REDIS_NET) that overlaps no network on this
 * engine: other projects (tests, other checkouts) run beside this one, and Docker refuses a pool
 * that overlaps. Random in 10.200.0.0-10.254.255.0 rather than the next free one, so that two
 * projects starting at once rarely pick the same.
 */
async function freeStoreNet(): Promise<string> {
  const ids = (await docker(["network", "ls", "-q"])).split("\n").filter(Boolean);
  const used = (await docker(["network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", ...ids]))
    .split(/\s+/)
    .filter((x) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(x))
    .map((cidr) => {
      const [addr, bits] = cidr.split("/") as [string, string];
      const size = 2 ** (32 - Number(bits));
      const start = ipv4(addr) - (ipv4(addr) % size);
      return [start, start + size - 1] as const;
    });
  for (let i = 0; i < 200; i++) {
    const net = `10.${200 + Math.floor(Math.random() * 55)}.${Math.floor(Math.random() * 256)}`;
    const lo = ipv4(`${net}.0`);
    if (!used.some(([a, b]) => a <= lo + 255 && lo <= b)) return net;
  }
  throw new Error("no free /24 in 10.200.0.0/16-10.254.0.0/16 for the Redis network; remove unused Docker networks");
}
type SentinelNode = (typeof SENTINEL_NODES)[number];

/**
 * The project `make up` uses: the one `docker compose ps` in the repository shows (Compose's own COMPOSE_PROJECT_NAME
 * wins, as it does for docker compose).
 */
export const DEFAULT_PROJECT = process.env.COMPOSE_PROJECT_NAME || defaultProjectName(basename(repoRoot));

type ComposeState = {
  kind: "compose";
  project: string;
  port: number;
  replicas: number;
  /** Variables docker-compose.yml interpolates; every compose call gets the same ones. */
  env: Record<string, string>;
  /** Compose files after the main one (the Sentinel topology, the appEnv override). */
  overrides: string[];
  /** Absent in state written before Sentinel ran in Compose: one Redis. */
  redis?: RedisTopology;
  /** REDIS=sentinel: each data node's role when last seen (a stopped one keeps it). */
  roles?: Record<string, "primary" | "replica">;
  /** The app's REDIS_WAIT_REPLICAS: also min-replicas-to-write on every data node. */
  waitReplicas?: number;
};

export type ComposeClusterOptions = ClusterOptions & {
  /** Folder for state and secrets; created if missing, removed by stop(). */
  dir: string;
  /** Compose project name; default: the repository folder's, as `docker compose` picks. */
  project?: string;
  /** Progress lines (image pulls and builds); default: silent. */
  log?: (line: string) => void;
};

type Container = {
  id: string;
  name: string;
  hostname: string;
  service: string;
  number: number;
  running: boolean;
  health: string | undefined;
};

export class ComposeCluster implements Cluster {
  readonly kind = "compose" as const;
  readonly dir: string;
  #state: ComposeState;
  #log: (line: string) => void;

  private constructor(dir: string, state: ComposeState, log: (line: string) => void = () => {}) {
    this.dir = dir;
    this.#state = state;
    this.#log = log;
  }

  /** A new cluster description; nothing runs until start(). */
  static create(opts: ComposeClusterOptions): ComposeCluster {
    const redis = opts.redis ?? "single";
    if (redis === "cluster")
      throw new Error("REDIS=cluster is not available with Docker Compose yet; use CLUSTER=local");
    const dir = resolve(opts.dir);
    const overrides: string[] = redis === "sentinel" ? [sentinelComposeFile] : [];
    if (opts.appEnv && Object.keys(opts.appEnv).length > 0) {
      // JSON is YAML: a second compose file adds the extra variables to the app service.
      mkdirSync(dir, { recursive: true });
      const file = join(dir, "app-env.yml");
      writeFileSync(file, JSON.stringify({ services: { app: { environment: opts.appEnv } } }, null, 2));
      overrides.push(file);
    }
    // nginx's per-client limits, as a file docker-compose.yml mounts (NGINX_CLIENT_LIMITS).
    mkdirSync(dir, { recursive: true });
    const limitsFile = join(dir, "client-limits.conf");
    writeFileSync(limitsFile, clientLimitsConf(clientLimitsFrom(opts.clientLimits)));
    return new ComposeCluster(
      dir,
      {
        kind: "compose",
        project: opts.project ?? DEFAULT_PROJECT,
        port: opts.port ?? 0,
        replicas: opts.replicas ?? 3,
        env: { SECRETS_DIR: join(dir, "secrets"), APP_IMAGE, NGINX_CLIENT_LIMITS: limitsFile },
        overrides,
        redis,
        ...(redis === "sentinel"
          ? {
              roles: { "redis-1": "primary", "redis-2": "replica", "redis-3": "replica" },
              waitReplicas: Number(opts.appEnv?.REDIS_WAIT_REPLICAS ?? 0),
            }
          : {}),
      },
      opts.log,
    );
  }

  /** Re-opens a cluster that an earlier process started with state in `dir`, or undefined. */
  static attach(dir: string): ComposeCluster | undefined {
    const file = join(resolve(dir), "state.json");
    if (!existsSync(file)) return undefined;
    return new ComposeCluster(resolve(dir), JSON.parse(readFileSync(file, "utf8")) as ComposeState);
  }

  get project(): string {
    return this.#state.project;
  }

  baseUrl(): string {
    return `http://127.0.0.1:${this.#state.port}`;
  }

  #save(): void {
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, "state.json"), `${JSON.stringify(this.#state, null, 2)}\n`, { mode: 0o600 });
  }

  #composeCmd(): Command {
    const c = composeCommand();
    if (!c)
      throw new Error(
        "Docker Compose not found: install the compose plugin (docker compose) or docker-compose; " +
          "`make up` does it when run as root on Debian",
      );
    return c;
  }

  /** Runs `docker compose` (or docker-compose) on this project with its variables. */
  #compose(args: string[], timeoutMs = 300_000): Promise<string> {
    const c = this.#composeCmd();
    const files = [composeFile, ...this.#state.overrides].flatMap((f) => ["-f", f]);
    const env = {
      ...process.env,
      ...this.#state.env,
      PORT: String(this.#state.port),
      REPLICAS: String(this.#state.replicas),
    };
    return run(c.file, [...c.args, ...files, "-p", this.#state.project, ...args], { cwd: repoRoot, env, timeoutMs });
  }

  #writeSecrets(): void {
    const dir = this.#state.env.SECRETS_DIR!;
    const sentinel = this.#state.redis === "sentinel";
    // Compose (without Swarm) bind-mounts a secret file with its own mode, and the app and
    // Redis run as non-root users, so the file is readable; the folder (0700) guards it.
    const extra = [
      ["redis_replication_password", 24],
      ["redis_sentinel_password", 24],
    ] as const;
    writeSecrets(dir, 0o644, sentinel ? extra : []);
    if (sentinel) this.#writeSentinelConfigs(dir);
  }

  /** REDIS=sentinel: the aclfile and each node's first config, as secrets (they hold passwords). */
  #writeSentinelConfigs(dir: string): void {
    const pw = (user: string) => readFileSync(join(dir, `redis_${user}_password`), "utf8").trim();
    const passwords = {
      app: pw("app"),
      admin: pw("admin"),
      health: pw("health"),
      replication: pw("replication"),
      sentinel: pw("sentinel"),
    };
    const write = (file: string, text: string) => writeFileSync(join(dir, file), text, { mode: 0o644 });
    write("redis_users_acl", redisAclFile(readFileSync(aclTemplate, "utf8"), passwords));
    const at = (n: SentinelNode) => `${this.#state.env.REDIS_NET}.${n.ip}`;
    const primary = { host: at(SENTINEL_NODES[0]), port: 6379 };
    for (const n of SENTINEL_NODES) {
      // Every interface of the container: it is on the internal `store` network only.
      const text =
        n.kind === "redis"
          ? redisConf(
              {
                port: n.port,
                bind: "* -::*",
                dir: "/data",
                aclfile: "/run/secrets/redis_users_acl",
                maxmemory: "200mb",
              },
              sentinelDataConf({
                passwords,
                waitReplicas: this.#state.waitReplicas ?? 0,
                replicaOf: at(n) === primary.host ? undefined : primary,
                announce: at(n),
              }),
            )
          : sentinelConf({ port: n.port, bind: "* -::*", dir: "/data", primary, passwords, announce: at(n) });
      write(`${n.name}.conf`, text);
    }
  }

  async start(): Promise<void> {
    this.#composeCmd();
    const t0 = performance.now();
    const images = await resolveBaseImages(this.#log);
    Object.assign(this.#state.env, images);
    await buildAppImage(images.NODE_IMAGE, this.#state.env.APP_IMAGE, this.#log);
    if (this.#state.port === 0) this.#state.port = await freePort();
    if (this.#state.redis === "sentinel") this.#state.env.REDIS_NET ??= await freeStoreNet();
    this.#writeSecrets();
    this.#save();
    try {
      // --no-build: the image was built above with BuildKit; docker-compose 1.29 would use the
      // legacy builder, which cannot read the Dockerfile's build secret.
      await this.#compose(["up", "-d", "--no-build", "--scale", `app=${this.#state.replicas}`]);
      if (this.#state.redis === "sentinel") await this.waitForPrimary({ timeoutMs: 60_000 });
      await this.#waitAllReady({ healthy: true });
      await waitFor(
        `nginx on ${this.baseUrl()}`,
        async () => (await httpStatus(`${this.baseUrl()}/nginx-health`)) === 200,
        20_000,
        100,
      );
      this.#log(`up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } catch (err) {
      const tail = await this.logs(30).catch(() => "");
      await this.stop().catch(() => {});
      throw new Error(`${(err as Error).message}\n--- recent logs ---\n${tail}`, { cause: err });
    }
  }

  async #containers(service?: string): Promise<Container[]> {
    const filters = ["--filter", `label=com.docker.compose.project=${this.#state.project}`];
    if (service) filters.push("--filter", `label=com.docker.compose.service=${service}`);
    const ids = (await docker(["ps", "-aq", ...filters])).split("\n").filter(Boolean);
    if (ids.length === 0) return [];
    type Inspect = {
      Id: string;
      Name: string;
      Config: { Hostname: string; Labels: Record<string, string> };
      State: { Running: boolean; Health?: { Status: string } };
    };
    const raw = JSON.parse(await docker(["inspect", ...ids])) as Inspect[];
    return raw
      .map((c) => ({
        id: c.Id,
        name: c.Name.replace(/^\//, ""),
        hostname: c.Config.Hostname,
        service: c.Config.Labels["com.docker.compose.service"] ?? "",
        number: Number(c.Config.Labels["com.docker.compose.container-number"] ?? 0),
        running: c.State.Running,
        health: c.State.Health?.Status,
      }))
      .sort((a, b) => a.number - b.number);
  }

  async #one(service: string): Promise<Container> {
    const [c] = await this.#containers(service);
    if (!c) throw new Error(`no ${service} container in project ${this.#state.project}; is the cluster up?`);
    return c;
  }

  async #replica(index: number): Promise<Container> {
    const all = await this.#containers("app");
    const c = all.find((x) => x.number === index);
    if (!c) throw new Error(`no replica ${index}; this cluster has ${all.map((x) => x.number).join(", ") || "none"}`);
    return c;
  }

  async replicas(): Promise<ReplicaInfo[]> {
    // The app names itself after its hostname, which Docker sets to the short container id;
    // that is what X-Replica carries. The container name is what `docker compose ps` shows.
    return (await this.#containers("app")).map((c) => ({
      index: c.number,
      name: `app-${c.number}`,
      replicaId: c.hostname,
      running: c.running,
      detail: c.name,
    }));
  }

  async probeReplica(index: number, path: string): Promise<number> {
    const c = await this.#replica(index);
    if (!c.running) return 0;
    return probeApp(c.id, path);
  }

  /**
   * Ready = /readyz answers 200 (Redis reachable, not draining). With `healthy`, also waits
   * for Docker's own healthcheck (liveness) to have passed once, which takes up to its
   * interval after a start: `make up` waits for that, a restart of one replica does not.
   */
  async #waitReady(c: Container, opts: { healthy?: boolean } = {}): Promise<void> {
    await waitFor(
      `replica ${c.number} (${c.name}) ready`,
      async () => {
        const [now] = (await this.#containers("app")).filter((x) => x.id === c.id);
        if (!now?.running) throw new Error(`${c.name} is not running; see \`make logs\``);
        if (opts.healthy && now.health !== undefined && now.health !== "healthy") return false;
        return (await this.probeReplica(c.number, "/readyz")) === 200;
      },
      // A few slow probes (above), not a replica that will never be ready, can fill one minute.
      120_000,
      250,
    );
  }

  async #waitAllReady(opts: { healthy?: boolean } = {}): Promise<void> {
    const running = (await this.#containers("app")).filter((c) => c.running);
    await Promise.all(running.map((c) => this.#waitReady(c, opts)));
  }

  /**
   * nginx resolves `app` when it loads its config (see nginx/nginx.conf), so after replicas
   * come, go or change address it reloads: a graceful swap of workers, nothing in flight is cut.
   */
  async #reloadNginx(): Promise<void> {
    const nginx = await this.#one("nginx");
    if (!nginx.running) return;
    const workers = async () =>
      (await docker(["top", nginx.id, "-o", "pid,args"]))
        .split("\n")
        .filter((l) => l.includes("worker process"))
        .map((l) => l.trim().split(/\s+/)[0]);
    const before = new Set(await workers());
    // A config test first: reload failures are only logged by nginx, the old config stays.
    await docker(["exec", nginx.id, "nginx", "-t", "-q"]);
    await docker(["exec", nginx.id, "nginx", "-s", "reload"]);
    await waitFor(
      "nginx to start workers with the new config",
      async () => (await workers()).some((p) => !before.has(p)),
      10_000,
      50,
    );
    // Old workers still answer requests already on their keep-alive connections, with the
    // old upstream list; once they are gone every request sees the new one. One that is
    // still busy (at most proxy_read_timeout) is left to finish on its own.
    await waitFor(
      "nginx's old workers to exit",
      async () => !(await workers()).some((p) => before.has(p)),
      8_000,
      50,
    ).catch(() => {});
  }

  async #waitStopped(id: string, what: string, timeoutMs: number): Promise<void> {
    await waitFor(
      `${what} to exit`,
      async () => (await docker(["inspect", "--format", "{{.State.Running}}", id])).trim() === "false",
      timeoutMs,
      50,
    );
  }

  /** With `init: true` the signal goes to tini, which forwards it to node (SIGKILL ends all). */
  async killReplica(index: number, signal: Signal): Promise<void> {
    const c = await this.#replica(index);
    if (!c.running) return;
    await docker(["kill", "--signal", signal, c.id]).catch((err: Error) => {
      if (!/is not running/.test(err.message)) throw err;
    });
    // SIGTERM: the drain takes at most SHUTDOWN_DELAY_MS + SHUTDOWN_DRAIN_MS (10.3 s).
    await this.#waitStopped(c.id, c.name, 20_000);
  }

  async startReplica(index: number): Promise<void> {
    const c = await this.#replica(index);
    if (!c.running) await docker(["start", c.id]);
    await this.#waitReady(c);
    // It may come back with another address (or a new replica took its old one).
    await this.#reloadNginx();
  }

  async restartReplicas(): Promise<void> {
    const all = await this.#containers("app");
    await Promise.all(all.map((c) => this.killReplica(c.number, "SIGTERM")));
    await docker(["start", ...all.map((c) => c.id)]);
    await Promise.all(all.map((c) => this.#waitReady(c)));
    await this.#reloadNginx();
  }

  async scale(n: number): Promise<void> {
    if (!Number.isInteger(n) || n < 1 || n > 32) throw new Error("scale takes a whole number of replicas from 1 to 32");
    this.#state.replicas = n;
    this.#save();
    // --no-deps: only `app` changes (Redis and nginx are not restarted); removed replicas get
    // SIGTERM and drain, nginx retries what they refuse on another replica.
    await this.#compose(["up", "-d", "--no-build", "--no-recreate", "--no-deps", "--scale", `app=${n}`, "app"]);
    await this.#waitAllReady();
    await this.#reloadNginx();
  }

  #sentinel(): boolean {
    return this.#state.redis === "sentinel";
  }

  /** The data servers (Sentinel: all three; the Sentinels keep watching), as `restart-redis` means. */
  async stopRedis(signal: Signal): Promise<void> {
    const names = this.#sentinel() ? SENTINEL_NODES.filter((n) => n.kind === "redis").map((n) => n.name) : ["redis"];
    await Promise.all(names.map((n) => this.killRedisNode(n, signal)));
  }

  async startRedis(): Promise<void> {
    if (this.#sentinel()) {
      for (const n of SENTINEL_NODES.filter((x) => x.kind === "redis")) await this.startRedisNode(n.name);
      await this.waitForPrimary();
    } else {
      const r = await this.#one("redis");
      if (!r.running) await docker(["start", r.id]);
      await waitFor("redis to answer PING", async () => (await this.redisCommand("PING")) === "PONG", 30_000, 100);
    }
    // Replicas reconnect on their own (ioredis backoff, capped at 1 s); wait until they have.
    await this.#waitAllReady();
  }

  #node(name: string): SentinelNode {
    const n = SENTINEL_NODES.find((x) => x.name === name);
    if (!n)
      throw new Error(`no Redis node "${name}"; this cluster has ${SENTINEL_NODES.map((x) => x.name).join(", ")}`);
    return n;
  }

  /** redis-cli inside a node's container as admin; the password stays in there (REDISCLI_AUTH), never in argv. */
  #cli(c: Container, port: number, args: string[]): Promise<string> {
    return redisCli(c.id, args, port);
  }

  /** Asks each running data node for its ROLE; a stopped one keeps its last known role. */
  async #refreshRoles(): Promise<Map<string, Container>> {
    const byName = new Map<string, Container>();
    const roles = (this.#state.roles ??= {});
    await Promise.all(
      SENTINEL_NODES.map(async (n) => {
        const c = (await this.#containers(n.service))[0];
        if (!c) return;
        byName.set(n.name, c);
        if (n.kind !== "redis" || !c.running) return;
        const role = await this.#cli(c, n.port, ["ROLE"]).catch(() => "");
        if (role.startsWith("master")) roles[n.name] = "primary";
        else if (role.startsWith("slave")) roles[n.name] = "replica";
      }),
    );
    if (existsSync(this.dir)) this.#save();
    return byName;
  }

  async redisNodes(): Promise<RedisNodeInfo[]> {
    if (!this.#sentinel()) {
      const r = await this.#one("redis");
      return [{ name: "redis", role: "primary", running: r.running, address: "redis:6379" }];
    }
    const containers = await this.#refreshRoles();
    return SENTINEL_NODES.map((n) => ({
      name: n.name,
      role: n.kind === "sentinel" ? "sentinel" : (this.#state.roles?.[n.name] ?? "replica"),
      running: containers.get(n.name)?.running ?? false,
      address: `${this.#state.env.REDIS_NET}.${n.ip}:${n.port}`,
    }));
  }

  async killRedisNode(name: string, signal: Signal): Promise<void> {
    if (!this.#sentinel() && name !== "redis") throw new Error(`no Redis node "${name}"; this cluster has redis`);
    const c = await this.#one(this.#sentinel() ? this.#node(name).service : "redis");
    if (!c.running) return;
    await docker(["kill", "--signal", signal, c.id]).catch((err: Error) => {
      if (!/is not running/.test(err.message)) throw err;
    });
    await this.#waitStopped(c.id, name, 20_000);
  }

  async startRedisNode(name: string): Promise<void> {
    if (!this.#sentinel()) {
      if (name !== "redis") throw new Error(`no Redis node "${name}"; this cluster has redis`);
      return this.startRedis();
    }
    const n = this.#node(name);
    const c = await this.#one(n.service);
    if (!c.running) await docker(["start", c.id]);
    await waitFor(`${name} to answer PING`, async () => (await this.#cli(c, n.port, ["PING"])) === "PONG", 30_000, 100);
    // A killed primary comes back as a master until the Sentinels demote it, then needs a full
    // sync: until both are done it is no candidate for the next failover, and with
    // REDIS_WAIT_REPLICAS it acknowledges nothing. So it counts as back once it replicates from
    // the primary the Sentinels name, with its sync done (as the local driver waits).
    const primary = n.kind === "redis" ? await this.#sentinelsPrimary() : undefined;
    if (primary && primary !== n) {
      const host = `${this.#state.env.REDIS_NET}.${primary.ip}`;
      await waitFor(
        `${name} to replicate from ${primary.name} and finish its sync`,
        async () => {
          const info = await this.#cli(c, n.port, ["INFO", "replication"]).catch(() => "");
          return (
            /^role:slave/m.test(info) &&
            new RegExp(`^master_host:${host.replaceAll(".", "\\.")}\\s*$`, "m").test(info) &&
            /^master_link_status:up/m.test(info) &&
            /^master_sync_in_progress:0/m.test(info)
          );
        },
        60_000,
        200,
      );
    }
    await this.#refreshRoles();
  }

  /** The data node the Sentinels name as primary now (the first Sentinel that answers), or undefined. */
  async #sentinelsPrimary(): Promise<SentinelNode | undefined> {
    for (const s of SENTINEL_NODES.filter((n) => n.kind === "sentinel")) {
      const c = (await this.#containers(s.service))[0];
      if (!c?.running) continue;
      const out = await this.#cli(c, s.port, ["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER]).catch(() => "");
      const host = out.split("\n")[0]?.trim();
      const n = SENTINEL_NODES.find((x) => x.kind === "redis" && `${this.#state.env.REDIS_NET}.${x.ip}` === host);
      if (n) return n;
    }
    return undefined;
  }

  async waitForPrimary(opts: { exclude?: string; timeoutMs?: number } = {}): Promise<string> {
    if (!this.#sentinel()) {
      // One server: it is the primary once it answers; nothing can replace it.
      await waitFor(
        "redis to answer",
        async () => opts.exclude !== "redis" && (await this.redisCommand("PING")) === "PONG",
        opts.timeoutMs ?? 30_000,
        100,
      );
      return "redis";
    }
    let found = "";
    await waitFor(
      opts.exclude ? `a primary other than ${opts.exclude}` : "a primary",
      async () => {
        const p = await this.#sentinelsPrimary();
        if (!p || p.name === opts.exclude) return false;
        const c = await this.#one(p.service);
        // The Sentinels have switched; the server itself must also say so (REPLICAOF NO ONE done).
        if (!c.running || !(await this.#cli(c, p.port, ["ROLE"]).catch(() => "")).startsWith("master")) return false;
        found = p.name;
        return true;
      },
      opts.timeoutMs ?? 30_000,
      100,
    );
    await this.#refreshRoles();
    return found;
  }

  /** As the admin user, on the one Redis or (Sentinel) the current primary. */
  async redisCommand(...args: string[]): Promise<string> {
    const service = this.#sentinel() ? ((await this.#sentinelsPrimary()) ?? SENTINEL_NODES[0]).service : "redis";
    return this.#cli(await this.#one(service), 6379, args);
  }

  async logs(lines = 50): Promise<string> {
    // Compose prints each container's lines as a block; merge them by time, oldest first.
    const out = await this.#compose(["logs", "--no-color", "--timestamps", `--tail=${lines}`], 60_000);
    const rows: { at: string; line: string }[] = [];
    for (const raw of out.split("\n")) {
      const m = /^(\S+)\s+\|\s(\S+)\s(.*)$/.exec(raw);
      if (m) rows.push({ at: m[2]!, line: `${m[1]!.padEnd(20)} | ${m[3]!}` });
    }
    return mergeLogs(rows);
  }

  /** Removes the project's containers, network and volumes, and the state folder, even after a failed start. */
  async stop(): Promise<void> {
    try {
      await this.#compose(["down", "--volumes", "--remove-orphans", "--timeout", "15"], 120_000);
    } catch (err) {
      // Compose itself failed (a broken file, a missing binary): remove by label instead.
      const label = `label=com.docker.compose.project=${this.#state.project}`;
      const ids = (await docker(["ps", "-aq", "--filter", label]).catch(() => "")).split("\n").filter(Boolean);
      if (ids.length) await docker(["rm", "-f", "-v", ...ids]).catch(() => {});
      const nets = (await docker(["network", "ls", "-q", "--filter", label]).catch(() => ""))
        .split("\n")
        .filter(Boolean);
      if (nets.length) await docker(["network", "rm", ...nets]).catch(() => {});
      const vols = (await docker(["volume", "ls", "-q", "--filter", label]).catch(() => ""))
        .split("\n")
        .filter(Boolean);
      if (vols.length) await docker(["volume", "rm", ...vols]).catch(() => {});
      if ((await docker(["ps", "-aq", "--filter", label]).catch(() => "")).trim()) throw err;
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
