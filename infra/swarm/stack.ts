// The Swarm stack file, generated from docker-compose.yml rather than kept as a second copy:
// `docker compose config` (or docker-compose 1.29's) resolves the variables, then this adds
// what only Swarm has (deploy: update_config, restart_policy, resources, endpoint_mode) and
// turns what Swarm lacks (bind mounts, build, depends_on) into its equivalents (configs).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import { composeCommand, run } from "../cluster/docker.ts";

const repoRoot = resolve(import.meta.dirname, "../..");

type Service = Record<string, unknown> & {
  deploy?: Record<string, unknown>;
  environment?: Record<string, string | null>;
};
type ComposeConfig = { services: Record<string, Service>; [key: string]: unknown };

/**
 * Keys of docker-compose.yml's services that `docker stack deploy` ignores (it prints
 * "Ignoring unsupported options") or that Swarm has under another name, dropped or moved here:
 * - build: a stack cannot build; the driver builds the app image first.
 * - depends_on: Swarm starts services in no order; health checks keep a task out of DNS
 *   until it is healthy, nginx waits for a first app task, and the app answers 503 until Redis answers.
 * - restart: replaced by deploy.restart_policy.
 * - mem_limit, cpus, pids_limit: moved to deploy.resources.limits.
 * - security_opt (no-new-privileges): Swarm services on Docker 20.10 have no such setting
 *   (SwarmKit's NoNewPrivileges came with API 1.46, Docker 27); the stack file cannot carry it.
 * - expose: documentation only; overlay networks reach every port of a task.
 */
const DROPPED = ["build", "depends_on", "restart", "mem_limit", "cpus", "pids_limit", "security_opt", "expose"];

/** How long a stopping app task keeps its pooled sockets for nginx to drop it (see below). */
export const SWARM_SHUTDOWN_DELAY_MS = 5000;

export type StackOptions = {
  /** Variables docker-compose.yml interpolates (images, SECRETS_DIR, REPLICAS, PORT, ...). */
  env: Record<string, string>;
  /** Extra environment for the app service. */
  appEnv?: Record<string, string>;
  /** nginx's per-client limits file (client-limits.ts writes it). */
  clientLimitsFile: string;
  port: number;
  replicas: number;
};

/** `docker compose config` of docker-compose.yml with these variables, parsed. */
async function composeConfig(env: Record<string, string>): Promise<ComposeConfig> {
  const c = composeCommand();
  if (!c) throw new Error("CLUSTER=swarm generates its stack with docker compose (or docker-compose): install either");
  const out = await run(c.file, [...c.args, "-f", join(repoRoot, "docker-compose.yml"), "config"], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
  });
  return parse(out) as ComposeConfig;
}

const sha = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

/**
 * A config whose name carries its content's hash: Swarm configs are immutable, a changed file
 * gets a new one. Swarm refuses a name past 64 characters: a long stack name is cut, with a
 * hash of the whole name so two stacks still get different configs.
 */
export function configName(stack: string, key: string, content: string | Buffer): string {
  const suffix = `_${key}_${sha(content).slice(0, 10)}`;
  const name = `${stack}${suffix}`;
  if (name.length <= 64) return name;
  return `${stack.slice(0, 64 - suffix.length - 9)}-${sha(stack).slice(0, 8)}${suffix}`;
}

function config(stack: string, key: string, file: string): { name: string; file: string } {
  return { name: configName(stack, key, readFileSync(file)), file };
}

export async function stackFile(stack: string, opts: StackOptions): Promise<string> {
  const env = { ...opts.env, PORT: String(opts.port), REPLICAS: String(opts.replicas) };
  const cfg = await composeConfig(env);
  // Compose v2 adds the project's name; the stack's name is given to `docker stack deploy`.
  delete cfg.name;

  const limits = (s: Service) => {
    const out: Record<string, unknown> = {};
    const { cpus, mem_limit: memory } = s as { cpus?: number | string; mem_limit?: number | string };
    if (cpus !== undefined) out.cpus = String(cpus);
    if (memory !== undefined) out.memory = String(memory);
    if (s.pids_limit !== undefined) out.pids = Number(s.pids_limit);
    return out;
  };
  for (const s of Object.values(cfg.services)) {
    s.deploy = {
      ...s.deploy,
      resources: { limits: limits(s) },
      // `any`, not `on-failure`: Swarm's own stops (update, scale, rollback) set the task's
      // desired state to shutdown, so no restart policy restarts them. The policy only decides
      // what happens to a task that ends without Swarm asking: a crash, SIGKILL or a failed
      // health check (non-zero: replaced under both), or a clean exit 0, which is what the app
      // does after a SIGTERM from outside (`make kill`, `docker kill`). With `on-failure` that
      // slot would stay empty until the next update (the service under-replicated, and no
      // command short of `docker service update --force` of every task fills it); with `any`
      // Swarm replaces it as it replaces a crashed one, and `make start` waits for that.
      // No delay before the replacement starts (the goal is a new task taking traffic within 10 s
      // of a kill): a crash loop is still paced by the container's own start, 1-5 s here.
      restart_policy: { condition: "any", delay: "0s", window: "10s" },
    };
    // DNS round-robin, no virtual IP: a VIP needs IPVS in the kernel (absent on some hosts,
    // this one included), and each service here has one task or is balanced by nginx.
    s.deploy.endpoint_mode = "dnsrr";
    for (const key of DROPPED) delete s[key];
    // `tmpfs:` is a container option Swarm ignores; a tmpfs mount is its equivalent.
    const tmpfs = s.tmpfs as string[] | string | undefined;
    if (tmpfs !== undefined) {
      const mounts = [tmpfs].flat().map((target) => ({ type: "tmpfs", target }));
      s.volumes = [...((s.volumes as unknown[] | undefined) ?? []), ...mounts];
      delete s.tmpfs;
    }
  }

  const { redis, app, nginx } = cfg.services;
  if (!redis || !app || !nginx) throw new Error("docker-compose.yml must define redis, app and nginx");

  // Bind mounts become configs: a config reaches whichever node runs the task.
  cfg.configs = {
    redis_acl: config(stack, "redis_acl", join(repoRoot, "infra/redis/users.acl")),
    nginx_conf: config(stack, "nginx_conf", join(repoRoot, "infra/swarm/nginx.conf")),
    nginx_entrypoint: config(stack, "nginx_entrypoint", join(repoRoot, "infra/swarm/nginx-entrypoint.sh")),
    nginx_proxy: config(stack, "nginx_proxy", join(repoRoot, "nginx/proxy.conf")),
    nginx_locations: config(stack, "nginx_locations", join(repoRoot, "nginx/locations.conf")),
    nginx_client_limits: config(stack, "nginx_client_limits", opts.clientLimitsFile),
  };

  // Redis keeps its named volume (local to the node that runs it: pin it to one node when there are several).
  redis.volumes = ["redis-data:/data", { type: "tmpfs", target: "/tmp" }];
  redis.configs = [{ source: "redis_acl", target: "/etc/redis/users.acl", mode: 0o444 }];
  redis.deploy!.replicas = 1;

  // One DNS record per healthy task (app, tasks.app), which nginx balances. The hostname makes
  // X-Replica `app-<slot>`, stable across a task's replacements.
  app.hostname = "app-{{.Task.Slot}}";
  // Swarm drops a task from DNS about when it sends SIGTERM (measured: 0.6 s before to 3 s
  // after), and nginx follows only once its watcher has seen the change and reloaded (1 s poll,
  // a reload took up to 3 s on the loaded host). Until then nginx still picks the old task:
  // alive, it refuses the connect and nginx retries on another task at once; gone, its address
  // drops SYNs and every pick costs a 1 s connect timeout. So the app waits SHUTDOWN_DELAY_MS
  // (listener closed, pooled sockets still served) for nginx to let go, then drains; the stop
  // grace period covers both. appEnv may still set it.
  app.environment = { ...app.environment, SHUTDOWN_DELAY_MS: String(SWARM_SHUTDOWN_DELAY_MS), ...opts.appEnv };
  const drainMs = Number(app.environment.SHUTDOWN_DRAIN_MS ?? 10_000);
  app.stop_grace_period = `${Math.ceil((Number(app.environment.SHUTDOWN_DELAY_MS) + drainMs) / 1000) + 5}s`;
  // In Swarm a failed health check is fatal: three in a row and Swarm stops the task, however
  // well it serves. On this 2-core host at load 24-34 the app's check (then a `node` process)
  // took 4-7.5 s with the cluster idle, and three in a row passed 10 s: Swarm stopped healthy
  // replicas, two at once, and nginx had none left (Compose only marks them unhealthy). So a
  // check may take 30 s before it counts as failed. The interval is short instead: a new task
  // enters DNS (and nginx) at its first passing check, and Docker 20.10 has no start_interval.
  // Not shorter: each check is a `docker exec` (runc), about 0.1 core-second even for the app's
  // bash probe, so every second would take a tenth of a core per task.
  for (const svc of [redis, app, nginx])
    if (svc.healthcheck)
      svc.healthcheck = { ...(svc.healthcheck as Record<string, unknown>), interval: "2s", timeout: "30s" };
  Object.assign(app.deploy!, {
    // A new task is started and healthy (so in DNS, so in nginx) before the old one gets SIGTERM.
    update_config: { parallelism: 1, delay: "1s", order: "start-first", failure_action: "rollback", monitor: "10s" },
    rollback_config: { parallelism: 1, order: "start-first" },
  });

  nginx.volumes = [{ type: "tmpfs", target: "/tmp" }];
  nginx.configs = [
    { source: "nginx_conf", target: "/etc/nginx/nginx.conf", mode: 0o444 },
    { source: "nginx_entrypoint", target: "/etc/nginx/swarm-entrypoint.sh", mode: 0o444 },
    { source: "nginx_proxy", target: "/etc/nginx/proxy.conf", mode: 0o444 },
    { source: "nginx_locations", target: "/etc/nginx/locations.conf", mode: 0o444 },
    { source: "nginx_client_limits", target: "/etc/nginx/client-limits.conf", mode: 0o444 },
  ];
  nginx.command = ["sh", "/etc/nginx/swarm-entrypoint.sh"];
  // Mode host: the container's port bound on the node itself (no routing mesh: it needs IPVS).
  // Swarm takes no host IP here, so the port listens on every interface of the node.
  nginx.ports = [{ target: 8080, published: opts.port, protocol: "tcp", mode: "host" }];
  nginx.deploy!.replicas = 1;
  // A second nginx on the same node would need the same host port: stop the old one first.
  nginx.deploy!.update_config = { parallelism: 1, order: "stop-first", failure_action: "rollback" };

  const networks = cfg.networks as Record<string, Record<string, unknown> | null>;
  for (const [name, n] of Object.entries(networks)) networks[name] = { ...n, driver: "overlay" };

  // `docker stack deploy` on Docker 20.10 reads the versioned format only.
  return stringify({ version: "3.9", ...cfg }, { lineWidth: 0 });
}
