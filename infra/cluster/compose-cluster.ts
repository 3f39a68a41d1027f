// The Cluster as Docker Compose containers (docker-compose.yml): Redis, N app replicas made
// with --scale, nginx. State lives in a folder, so `make up` and a later `make kill` drive the
// same project; each test cluster gets a project name of its own.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { APP_IMAGE, buildAppImage, resolveBaseImages } from "../images/images.ts";
import type { Cluster, ClusterOptions, RedisNodeInfo, ReplicaInfo, Signal } from "./cluster.ts";
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

const repoRoot = resolve(import.meta.dirname, "../..");
const composeFile = join(repoRoot, "docker-compose.yml");

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
  /** Compose files after the main one (the appEnv override). */
  overrides: string[];
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
    if ((opts.redis ?? "single") !== "single")
      throw new Error(`REDIS=${opts.redis} is not available with Docker Compose yet; use CLUSTER=local`);
    const dir = resolve(opts.dir);
    const overrides: string[] = [];
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

  async start(): Promise<void> {
    this.#composeCmd();
    const t0 = performance.now();
    const images = await resolveBaseImages(this.#log);
    Object.assign(this.#state.env, images);
    await buildAppImage(images.NODE_IMAGE, this.#state.env.APP_IMAGE, this.#log);
    if (this.#state.port === 0) this.#state.port = await freePort();
    // Compose (without Swarm) bind-mounts a secret file with its own mode, and the app and
    // Redis run as non-root users, so the file is readable; the folder (0700) guards it.
    writeSecrets(this.#state.env.SECRETS_DIR!, 0o644);
    this.#save();
    try {
      // --no-build: the image was built above with BuildKit; docker-compose 1.29 would use the
      // legacy builder, which cannot read the Dockerfile's build secret.
      await this.#compose(["up", "-d", "--no-build", "--scale", `app=${this.#state.replicas}`]);
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

  async #one(service: "redis" | "nginx"): Promise<Container> {
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
      60_000,
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

  async stopRedis(signal: Signal): Promise<void> {
    const r = await this.#one("redis");
    if (!r.running) return;
    await docker(["kill", "--signal", signal, r.id]);
    await this.#waitStopped(r.id, "redis", 20_000);
  }

  async startRedis(): Promise<void> {
    const r = await this.#one("redis");
    if (!r.running) await docker(["start", r.id]);
    await waitFor("redis to answer PING", async () => (await this.redisCommand("PING")) === "PONG", 30_000, 100);
    // Replicas reconnect on their own (ioredis backoff, capped at 1 s); wait until they have.
    await this.#waitAllReady();
  }

  async redisNodes(): Promise<RedisNodeInfo[]> {
    const r = await this.#one("redis");
    return [{ name: "redis", role: "primary", running: r.running, address: "redis:6379" }];
  }

  async killRedisNode(name: string, signal: Signal): Promise<void> {
    if (name !== "redis") throw new Error(`no Redis node "${name}"; this cluster has redis`);
    await this.stopRedis(signal);
  }

  async startRedisNode(name: string): Promise<void> {
    if (name !== "redis") throw new Error(`no Redis node "${name}"; this cluster has redis`);
    await this.startRedis();
  }

  async waitForPrimary(opts: { exclude?: string; timeoutMs?: number } = {}): Promise<string> {
    // One server: it is the primary once it answers; nothing can replace it.
    await waitFor(
      "redis to answer",
      async () => opts.exclude !== "redis" && (await this.redisCommand("PING")) === "PONG",
      opts.timeoutMs ?? 30_000,
      100,
    );
    return "redis";
  }

  async redisCommand(...args: string[]): Promise<string> {
    return redisCli((await this.#one("redis")).id, args);
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
