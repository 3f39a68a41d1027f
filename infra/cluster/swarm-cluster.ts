// The Cluster as a Docker Swarm stack (infra/swarm/stack.ts, generated from docker-compose.yml):
// Redis, an `app` service of N tasks and nginx. Swarm owns the tasks: a killed one is replaced
// (new container, new address, same slot and hostname app-<slot>), and nginx follows by itself.
// A single-node swarm is created on this engine when there is none, and left again by stop()
// when this driver created it and no other stack remains.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolve } from "node:path";
import { APP_IMAGE, buildAppImage, resolveBaseImages } from "../images/images.ts";
import { stackFile } from "../swarm/stack.ts";
import type { Cluster, ClusterOptions, RedisNodeInfo, ReplicaInfo, Signal } from "./cluster.ts";
import { clientLimitsConf, clientLimitsFrom } from "./client-limits.ts";
import { docker, mergeLogs, probeApp, redisCli, run, writeSecrets } from "./docker.ts";
import { freePort } from "./ports.ts";
import { httpStatus, waitFor } from "./wait.ts";

export const DEFAULT_STACK = process.env.SWARM_STACK || "esc";

type SwarmState = {
  kind: "swarm";
  stack: string;
  port: number;
  replicas: number;
  env: Record<string, string>;
  appEnv: Record<string, string>;
  /** This driver ran `docker swarm init`, so stop() may leave the swarm. */
  createdSwarm: boolean;
  /** The port guard's rules are in (portGuardRules); stop() removes them. */
  guarded?: boolean;
};

export type SwarmClusterOptions = ClusterOptions & {
  /** Folder for state, secrets and the generated stack file; removed by stop(). */
  dir: string;
  /** Stack name (services are <stack>_redis, <stack>_app, <stack>_nginx); default esc. */
  stack?: string;
  log?: (line: string) => void;
};

/** Epoch ms at which a slot's current task reached each step of its start (SwarmCluster.taskTimeline). */
export type TaskTimeline = {
  killed?: number;
  created?: number;
  started?: number;
  listening?: number;
  healthy?: number;
  reloaded?: number;
};

/** One task of a service, with its container on this node. */
type Task = {
  id: string;
  slot: number;
  desired: string;
  state: string;
  createdAt: string;
  containerId: string | undefined;
};

/** The swarm this engine is part of: "active", "inactive", ... */
export async function swarmState(): Promise<string> {
  return (await docker(["info", "--format", "{{.Swarm.LocalNodeState}}"])).trim();
}

/**
 * The nginx image the stack runs: the base one when it has `sleep` and `getent` (the official
 * alpine image has both, in busybox and musl-utils); else (the offline stand-in, a bare root
 * with dash) one built on top of it with this machine's two binaries, which link only libc.
 */
async function swarmNginxImage(base: string, log: (line: string) => void): Promise<string> {
  const has = await docker(["run", "--rm", "--entrypoint", "sh", base, "-c", "command -v sleep && command -v getent"], {
    timeoutMs: 60_000,
  }).then(
    () => true,
    () => false,
  );
  if (has) return base;
  const id = (await docker(["image", "inspect", "--format", "{{.Id}}", base])).trim().replace("sha256:", "");
  const tag = `esc-swarm/nginx:${id.slice(0, 12)}`;
  if (
    await docker(["image", "inspect", tag]).then(
      () => true,
      () => false,
    )
  )
    return tag;
  log(`building ${tag} (${base} with getent and sleep for the upstream watcher)...`);
  const ctx = join(resolve(import.meta.dirname, "../../.cache"), "swarm-nginx");
  rmSync(ctx, { recursive: true, force: true });
  mkdirSync(ctx, { recursive: true });
  const which = async (cmd: string) => (await run("sh", ["-c", `readlink -f "$(command -v ${cmd})"`])).trim();
  writeFileSync(join(ctx, "getent"), readFileSync(await which("getent")), { mode: 0o755 });
  writeFileSync(join(ctx, "sleep"), readFileSync(await which("sleep")), { mode: 0o755 });
  writeFileSync(join(ctx, "Dockerfile"), `FROM ${base}\nCOPY getent /usr/bin/getent\nCOPY sleep /bin/sleep\n`);
  await run("docker", ["build", "-q", "-t", tag, ctx], {
    timeoutMs: 300_000,
    env: { ...process.env, DOCKER_BUILDKIT: "0" },
  });
  rmSync(ctx, { recursive: true, force: true });
  return tag;
}

/**
 * Swarm takes no host IP for a published port: in mode host, docker-proxy listens on 0.0.0.0
 * and [::], and a DNAT rule forwards what other hosts send to the port. These rules keep it to
 * loopback, as Compose's 127.0.0.1:PORT does: DOCKER-USER (Docker's chain for the operator's
 * rules, run before its own) drops forwarded connections that were DNATed from the port, and
 * INPUT drops what reaches docker-proxy on any interface but lo (containers on this host's
 * bridges reach it that way). Each rule names the stack in a comment, for stop() to remove.
 */
function portGuardRules(stack: string, port: number): { file: "iptables" | "ip6tables"; rule: string[] }[] {
  const tag = ["-m", "comment", "--comment", `esc-swarm:${stack}`, "-j", "DROP"];
  const input = ["INPUT", "-p", "tcp", "--dport", String(port), "!", "-i", "lo", ...tag];
  return [
    {
      file: "iptables",
      rule: [
        "DOCKER-USER",
        "-p",
        "tcp",
        "-m",
        "conntrack",
        "--ctstate",
        "DNAT",
        "--ctorigdstport",
        String(port),
        ...tag,
      ],
    },
    { file: "iptables", rule: input },
    { file: "ip6tables", rule: input },
  ];
}

export class SwarmCluster implements Cluster {
  readonly kind = "swarm" as const;
  readonly dir: string;
  #state: SwarmState;
  #log: (line: string) => void;

  private constructor(dir: string, state: SwarmState, log: (line: string) => void = () => {}) {
    this.dir = dir;
    this.#state = state;
    this.#log = log;
  }

  static create(opts: SwarmClusterOptions): SwarmCluster {
    const dir = resolve(opts.dir);
    mkdirSync(dir, { recursive: true });
    const limitsFile = join(dir, "client-limits.conf");
    writeFileSync(limitsFile, clientLimitsConf(clientLimitsFrom(opts.clientLimits)));
    return new SwarmCluster(
      dir,
      {
        kind: "swarm",
        stack: opts.stack ?? DEFAULT_STACK,
        port: opts.port ?? 0,
        replicas: opts.replicas ?? 3,
        env: { SECRETS_DIR: join(dir, "secrets"), APP_IMAGE, NGINX_CLIENT_LIMITS: limitsFile },
        appEnv: opts.appEnv ?? {},
        createdSwarm: false,
      },
      opts.log,
    );
  }

  static attach(dir: string): SwarmCluster | undefined {
    const file = join(resolve(dir), "state.json");
    if (!existsSync(file)) return undefined;
    return new SwarmCluster(resolve(dir), JSON.parse(readFileSync(file, "utf8")) as SwarmState);
  }

  get stack(): string {
    return this.#state.stack;
  }

  baseUrl(): string {
    return `http://127.0.0.1:${this.#state.port}`;
  }

  #save(): void {
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, "state.json"), `${JSON.stringify(this.#state, null, 2)}\n`, { mode: 0o600 });
  }

  #service(name: "app" | "redis" | "nginx"): string {
    return `${this.#state.stack}_${name}`;
  }

  /**
   * A single-node swarm whose manager listens on loopback only (2377 and gossip on 7946 bound
   * to 127.0.0.1): nothing of it is reachable from other hosts. Another node joins a swarm
   * initialised with a routable --advertise-addr instead (docs/scaling.md).
   */
  async #ensureSwarm(): Promise<void> {
    const state = await swarmState();
    if (state === "active") return;
    if (state !== "inactive")
      throw new Error(`this Docker engine's swarm state is "${state}"; CLUSTER=swarm needs an active swarm or none`);
    this.#log("docker swarm init (single node, manager on 127.0.0.1)...");
    await docker(["swarm", "init", "--listen-addr", "127.0.0.1:2377", "--advertise-addr", "127.0.0.1"]);
    this.#state.createdSwarm = true;
    this.#save();
  }

  /** Inserts the port guard (portGuardRules); without iptables (or root), says what stays exposed. */
  async #guardPort(): Promise<void> {
    const port = this.#state.port;
    try {
      for (const { file, rule } of portGuardRules(this.#state.stack, port)) {
        const [chain, ...spec] = rule;
        await run(file, ["-w", "5", "-I", chain!, "1", ...spec]);
        this.#state.guarded = true;
        this.#save();
      }
    } catch (err) {
      this.#log(
        `warning: could not keep port ${port} to loopback (${(err as Error).message.split("\n")[0]}): ` +
          `Swarm publishes it on every interface, so nginx is reachable on 0.0.0.0:${port} and [::]:${port}`,
      );
    }
  }

  async #unguardPort(): Promise<void> {
    if (!this.#state.guarded) return;
    for (const { file, rule } of portGuardRules(this.#state.stack, this.#state.port)) {
      // -D removes one copy per call; a start that was retried may have inserted two.
      for (let i = 0; i < 5; i++)
        if (
          !(await run(file, ["-w", "5", "-D", ...rule]).then(
            () => true,
            () => false,
          ))
        )
          break;
    }
  }

  async start(): Promise<void> {
    const t0 = performance.now();
    await this.#ensureSwarm();
    const images = await resolveBaseImages(this.#log);
    await buildAppImage(images.NODE_IMAGE, this.#state.env.APP_IMAGE, this.#log);
    Object.assign(this.#state.env, images, { NGINX_IMAGE: await swarmNginxImage(images.NGINX_IMAGE, this.#log) });
    if (this.#state.port === 0) this.#state.port = await freePort();
    // `docker stack deploy` copies each into a Swarm secret (in the managers' encrypted Raft log).
    writeSecrets(this.#state.env.SECRETS_DIR!, 0o600);
    this.#save();
    try {
      await this.#guardPort();
      const file = join(this.dir, "stack.yml");
      writeFileSync(
        file,
        await stackFile(this.#state.stack, {
          env: this.#state.env,
          appEnv: this.#state.appEnv,
          clientLimitsFile: this.#state.env.NGINX_CLIENT_LIMITS!,
          port: this.#state.port,
          replicas: this.#state.replicas,
        }),
      );
      // No registry: the images are local, and resolving their digests would fail.
      await docker(["stack", "deploy", "--resolve-image", "never", "-c", file, this.#state.stack], {
        timeoutMs: 120_000,
      });
      await this.#waitConverged(180_000);
      await waitFor(
        `nginx on ${this.baseUrl()}`,
        async () => (await httpStatus(`${this.baseUrl()}/nginx-health`)) === 200,
        60_000,
        200,
      );
      await this.#waitRouted(30_000);
      this.#log(`up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    } catch (err) {
      const tail = await this.logs(30).catch(() => "");
      await this.stop().catch(() => {});
      throw new Error(`${(err as Error).message}\n--- recent logs ---\n${tail}`, { cause: err });
    }
  }

  /** Every task of a service that Swarm wants running, newest per slot. */
  async #tasks(name: "app" | "redis" | "nginx"): Promise<Task[]> {
    const ids = (await docker(["service", "ps", "-q", "--no-trunc", this.#service(name)]).catch(() => ""))
      .split("\n")
      .filter(Boolean);
    if (ids.length === 0) return [];
    type Raw = {
      ID: string;
      Slot?: number;
      DesiredState: string;
      CreatedAt: string;
      Status: { State: string; ContainerStatus?: { ContainerID?: string } };
    };
    const raw = JSON.parse(await docker(["inspect", "--type", "task", ...ids])) as Raw[];
    const bySlot = new Map<number, Task>();
    for (const t of raw) {
      if (t.DesiredState === "shutdown" || t.DesiredState === "remove") continue;
      const task: Task = {
        id: t.ID,
        slot: t.Slot ?? 1,
        desired: t.DesiredState,
        state: t.Status.State,
        createdAt: t.CreatedAt,
        containerId: t.Status.ContainerStatus?.ContainerID || undefined,
      };
      const seen = bySlot.get(task.slot);
      if (!seen || seen.createdAt < task.createdAt) bySlot.set(task.slot, task);
    }
    return [...bySlot.values()].sort((a, b) => a.slot - b.slot);
  }

  async replicas(): Promise<ReplicaInfo[]> {
    return (await this.#tasks("app")).map((t) => ({
      index: t.slot,
      name: `app-${t.slot}`,
      // The stack sets each task's hostname to app-<slot>: X-Replica, kept by its replacements.
      replicaId: `app-${t.slot}`,
      running: t.state === "running",
      detail: `${this.#service("app")}.${t.slot} (task ${t.id.slice(0, 12)}, ${t.state})`,
    }));
  }

  async #task(index: number): Promise<Task> {
    const all = await this.#tasks("app");
    const t = all.find((x) => x.slot === index);
    if (!t) throw new Error(`no replica ${index}; this cluster has ${all.map((x) => x.slot).join(", ") || "none"}`);
    return t;
  }

  async probeReplica(index: number, path: string): Promise<number> {
    const t = await this.#task(index);
    if (t.state !== "running" || !t.containerId) return 0;
    return probeApp(t.containerId, path);
  }

  /**
   * Every app slot runs a task that is healthy (so in DNS) and has answered /readyz 200. A task
   * is probed until its first 200 only: each probe is a `docker exec` of a node process (seconds
   * on a loaded host), and /readyz answers 503 while a Redis command times out, so requiring all
   * of them at 200 in the same round never converged at load 30 under the verify load.
   */
  async #waitConverged(timeoutMs = 90_000): Promise<void> {
    const ready = new Set<string>();
    await waitFor(
      `${this.#state.replicas} app tasks running and ready`,
      async () => {
        const tasks = await this.#tasks("app");
        if (tasks.length !== this.#state.replicas || tasks.some((t) => t.state !== "running")) return false;
        await Promise.all(
          tasks
            .filter((t) => !ready.has(t.id) && t.containerId)
            .map(async (t) => {
              if ((await probeApp(t.containerId!, "/readyz")) === 200) ready.add(t.id);
            }),
        );
        return tasks.every((t) => ready.has(t.id));
      },
      timeoutMs,
      500,
    );
  }

  /** nginx answers from exactly the running replicas (fresh connections, bounded). */
  async #waitRouted(timeoutMs = 20_000): Promise<void> {
    const want = (await this.replicas()).filter((r) => r.running).map((r) => r.replicaId);
    await waitFor(
      `nginx to route to ${want.join(", ")}`,
      async () => {
        const seen = new Set<string>();
        for (let i = 0; i < want.length * 6 && seen.size < want.length; i++) {
          const r = await fetch(`${this.baseUrl()}/api/session`, { signal: AbortSignal.timeout(3000) }).catch(
            () => undefined,
          );
          const id = r?.headers.get("x-replica");
          await r?.body?.cancel();
          if (id) seen.add(id);
        }
        return want.every((w) => seen.has(w));
      },
      timeoutMs,
      250,
    );
  }

  async #waitExited(containerId: string, timeoutMs: number): Promise<void> {
    await waitFor(
      "the task's container to exit",
      async () =>
        (await docker(["inspect", "--format", "{{.State.Running}}", containerId]).catch(() => "false")).trim() ===
        "false",
      timeoutMs,
      50,
    );
  }

  /**
   * Signals the slot's container and resolves once it exited. Swarm then replaces the task
   * (restart_policy any, after 1 s): a new container, same slot and hostname; startReplica
   * waits for it. There is no "leave it down" on an orchestrator; scale() is how to have fewer.
   */
  async killReplica(index: number, signal: Signal): Promise<void> {
    const t = await this.#task(index);
    if (t.state !== "running" || !t.containerId) return;
    await docker(["kill", "--signal", signal, t.containerId]).catch((err: Error) => {
      if (!/is not running/.test(err.message)) throw err;
    });
    await this.#waitExited(t.containerId, 20_000);
  }

  /** Waits for the task Swarm starts in this slot to be healthy, ready and routed by nginx. */
  async startReplica(index: number): Promise<void> {
    await this.#task(index);
    await this.#waitConverged();
    await this.#waitRouted();
  }

  async restartReplicas(): Promise<void> {
    const tasks = await this.#tasks("app");
    await Promise.all(tasks.map((t) => this.killReplica(t.slot, "SIGTERM")));
    await this.#waitConverged();
    await this.#waitRouted();
  }

  /**
   * When the slot's current task reached each step, as epoch ms (undefined: not reached or not
   * found): the container of the task before it died (killed), Swarm created the task, its
   * container started, the app logged "listening", the first health check passed (from then on
   * the task is in DNS), and nginx's watcher first reloaded after that (it saw the new address;
   * on nginx >= 1.27.3 there is no reload and no such step).
   */
  async taskTimeline(index: number): Promise<TaskTimeline> {
    const t = await this.#task(index);
    const at = (s: string | undefined) => {
      const ms = s ? Date.parse(s.replace(/ \+0000 UTC$/, "Z").replace(" ", "T")) : NaN;
      return Number.isFinite(ms) && ms > 0 ? ms : undefined;
    };
    const out: TaskTimeline = { created: at(t.createdAt) };
    type State = {
      StartedAt?: string;
      FinishedAt?: string;
      Health?: { Log?: { End: string; ExitCode: number }[] };
    };
    const state = async (id: string) =>
      JSON.parse(await docker(["inspect", "--format", "{{json .State}}", id]).catch(() => "{}")) as State;
    const previous = await this.#previousContainer(index, t.id);
    if (previous) out.killed = at((await state(previous)).FinishedAt);
    if (!t.containerId) return out;
    const current = await state(t.containerId);
    out.started = at(current.StartedAt);
    // Docker keeps the last 5 checks: enough for a task that just became healthy.
    out.healthy = at(current.Health?.Log?.find((l) => l.ExitCode === 0)?.End);
    const logs = await docker(["logs", t.containerId]).catch(() => "");
    for (const line of logs.split("\n"))
      if (line.includes('"event":"listening"')) {
        out.listening = (JSON.parse(line) as { time?: number }).time;
        break;
      }
    if (out.healthy !== undefined) {
      // The watcher writes to stderr, which `docker service logs` passes to its own stderr.
      const nginx = await run(
        "sh",
        ["-c", 'exec docker service logs --raw --timestamps "$0" 2>&1', this.#service("nginx")],
        {
          timeoutMs: 30_000,
        },
      ).catch(() => "");
      for (const line of nginx.split("\n")) {
        const m = /^(\S+) nginx-entrypoint: .*reloading nginx/.exec(line);
        const when = m ? Date.parse(m[1]!) : NaN;
        if (when >= out.healthy && (out.reloaded === undefined || when < out.reloaded)) out.reloaded = when;
      }
    }
    return out;
  }

  /** The container of the newest task before `current` in this slot (the one a kill ended). */
  async #previousContainer(slot: number, current: string): Promise<string | undefined> {
    const ids = (await docker(["service", "ps", "-q", "--no-trunc", this.#service("app")]).catch(() => ""))
      .split("\n")
      .filter((id) => id && id !== current);
    if (ids.length === 0) return undefined;
    type Raw = { Slot?: number; CreatedAt: string; Status: { ContainerStatus?: { ContainerID?: string } } };
    const raw = (JSON.parse(await docker(["inspect", "--type", "task", ...ids])) as Raw[])
      .filter((t) => t.Slot === slot && t.Status.ContainerStatus?.ContainerID)
      .sort((a, b) => (a.CreatedAt < b.CreatedAt ? 1 : -1));
    return raw[0]?.Status.ContainerStatus?.ContainerID;
  }

  /**
   * True when nginx follows the tasks by reloading (nginx < 1.27.3: the entrypoint's watcher),
   * false when it re-resolves by itself (`resolve`). Read from the entrypoint's first log line.
   */
  async followsTasksByReload(): Promise<boolean> {
    const out = await run("sh", ["-c", 'exec docker service logs --raw "$0" 2>&1', this.#service("nginx")], {
      timeoutMs: 30_000,
    }).catch(() => "");
    return /upstream mode watch/.test(out);
  }

  /** A rolling update: Swarm replaces every task, one at a time, a new one healthy before the old stops. */
  async rollingUpdate(): Promise<void> {
    await docker(["service", "update", "--force", "--quiet", "--detach=false", this.#service("app")], {
      timeoutMs: 600_000,
    });
    await this.#waitConverged();
    await this.#waitRouted();
  }

  async scale(n: number): Promise<void> {
    if (!Number.isInteger(n) || n < 1 || n > 32) throw new Error("scale takes a whole number of replicas from 1 to 32");
    this.#state.replicas = n;
    this.#save();
    await docker(["service", "scale", "--detach", `${this.#service("app")}=${n}`]);
    await this.#waitConverged();
    await this.#waitRouted();
  }

  /**
   * Redis stays down until startRedis(): its service is scaled to 0 right after the signal,
   * before Swarm's restart delay (1 s) would replace the task. Its volume keeps the AOF.
   */
  async stopRedis(signal: Signal): Promise<void> {
    const [t] = await this.#tasks("redis");
    if (!t || t.state !== "running" || !t.containerId) return;
    await docker(["kill", "--signal", signal, t.containerId]).catch(() => {});
    await docker(["service", "scale", "--detach", `${this.#service("redis")}=0`]);
    await this.#waitExited(t.containerId, 20_000);
    await waitFor("redis's tasks to stop", async () => (await this.#tasks("redis")).length === 0, 30_000, 100);
  }

  async startRedis(): Promise<void> {
    await docker(["service", "scale", "--detach", `${this.#service("redis")}=1`]);
    await waitFor("redis to answer PING", async () => (await this.redisCommand("PING")) === "PONG", 60_000, 200);
    await this.#waitConverged();
  }

  /** Swarm runs one Redis (open.ts refuses other topologies). */
  async redisNodes(): Promise<RedisNodeInfo[]> {
    const [t] = await this.#tasks("redis");
    return [{ name: "redis", role: "primary", running: t?.state === "running", address: "redis:6379" }];
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
      async () => opts.exclude !== "redis" && (await this.redisCommand("PING").catch(() => "")) === "PONG",
      opts.timeoutMs ?? 30_000,
      200,
    );
    return "redis";
  }

  async redisCommand(...args: string[]): Promise<string> {
    const [t] = await this.#tasks("redis");
    if (!t?.containerId || t.state !== "running") throw new Error("redis is not running");
    return redisCli(t.containerId, args);
  }

  async logs(lines = 50): Promise<string> {
    const rows: { at: string; line: string }[] = [];
    for (const name of ["redis", "app", "nginx"] as const) {
      const out = await docker(
        ["service", "logs", "--no-trunc", "--timestamps", "--tail", String(lines), this.#service(name)],
        {
          timeoutMs: 30_000,
        },
      ).catch(() => "");
      for (const raw of out.split("\n")) {
        // <timestamp> <task>@<node>    | <line>
        const m = /^(\S+)\s+(\S+?)@\S+\s+\|\s?(.*)$/.exec(raw);
        if (m)
          rows.push({
            at: m[1]!,
            line: `${m[2]!
              .replace(/^[^_]*_/, "")
              .replace(/^(\w+\.\d+)\..*$/, "$1")
              .padEnd(12)} | ${m[3]!}`,
          });
      }
    }
    return mergeLogs(rows);
  }

  /** Removes the stack, its volume, and the swarm when this driver created it and nothing else runs on it. */
  async stop(): Promise<void> {
    const stack = this.#state.stack;
    try {
      await docker(["stack", "rm", stack]).catch(() => {});
      // `stack rm` returns before the containers and networks are gone.
      const label = `label=com.docker.stack.namespace=${stack}`;
      await waitFor(
        `stack ${stack}'s containers to go`,
        async () => !(await docker(["ps", "-aq", "--filter", label]).catch(() => "")).trim(),
        60_000,
        250,
      ).catch(() => {});
      await waitFor(
        `stack ${stack}'s networks to go`,
        async () => !(await docker(["network", "ls", "-q", "--filter", label]).catch(() => "")).trim(),
        30_000,
        250,
      ).catch(() => {});
      await docker(["volume", "rm", `${stack}_redis-data`]).catch(() => {});
      await this.#unguardPort();
      if (this.#state.createdSwarm) {
        const others = (await docker(["stack", "ls", "--format", "{{.Name}}"]).catch(() => "x")).trim();
        if (!others) await docker(["swarm", "leave", "--force"]);
        else this.#log(`left the swarm active: other stacks run on it (${others.split("\n").join(", ")})`);
      }
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
