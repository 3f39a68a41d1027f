// The docker and Compose command lines, found in one place: `docker compose` (v2, what
// Docker ships today) when the plugin answers, else `docker-compose` (1.29, what Debian ships).
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type Command = { file: string; args: readonly string[] };

export type RunOptions = {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
};

/**
 * Runs a command and returns its stdout; a failure throws with the command and its stderr (`cause`: the exec error,
 * with its code).
 */
export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 60_000, env: opts.env ?? process.env, cwd: opts.cwd, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const why = (stderr || stdout || err.message).trim().split("\n").slice(-15).join("\n");
        const timedOut = err.killed && err.signal === "SIGTERM" ? ` (killed after ${opts.timeoutMs ?? 60_000} ms)` : "";
        reject(new Error(`\`${[file, ...args].join(" ")}\` failed${timedOut}:\n${why}`, { cause: err }));
      },
    );
  });
}

export function docker(args: readonly string[], opts?: RunOptions): Promise<string> {
  return run("docker", args, opts);
}

/** True when a Docker engine answers (not just a docker client on PATH). */
export function dockerAvailable(): boolean {
  try {
    execFileSync("docker", ["info", "--format", "{{.ServerVersion}}"], { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function answers(file: string, args: string[]): boolean {
  try {
    execFileSync(file, args, { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

let compose: Command | null | undefined;

/** `docker compose` (v2) or `docker-compose` (v1), or undefined when neither is installed. */
export function composeCommand(): Command | undefined {
  if (compose === undefined) {
    if (answers("docker", ["compose", "version"])) compose = { file: "docker", args: ["compose"] };
    else if (answers("docker-compose", ["version"])) compose = { file: "docker-compose", args: [] };
    else compose = null;
  }
  return compose ?? undefined;
}

/** The Compose project name that `docker compose` picks by default for a folder. */
export function defaultProjectName(folder: string): string {
  const name = folder
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, "")
    .replace(/^[^a-z0-9]+/, "");
  return name || "default";
}

// What the Compose and Swarm drivers do the same way inside their containers.

/** The secrets docker-compose.yml (and the stack made from it) reads, with their random lengths in bytes. */
const SECRETS = [
  ["redis_app_password", 24],
  ["redis_health_password", 24],
  ["redis_admin_password", 24],
  ["session_secret", 48],
] as const;

/**
 * Writes a random value for each secret missing from `dir` (0700). `mode`: Compose bind-mounts
 * the file with its own mode, so non-root containers need 0644; Swarm copies it into a secret.
 */
export function writeSecrets(dir: string, mode: number, extra: readonly (readonly [string, number])[] = []): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  for (const [name, bytes] of [...SECRETS, ...extra]) {
    const file = join(dir, name);
    if (!existsSync(file)) writeFileSync(file, `${randomBytes(bytes).toString("base64url")}\n`, { mode });
  }
}

export function dockerExec(containerId: string, args: readonly string[], timeoutMs = 10_000): Promise<string> {
  return docker(["exec", containerId, ...args], { timeoutMs });
}

// Replicas publish no port and traffic from the host goes only to 127.0.0.1, so a direct
// probe of one replica runs inside its container, on the operator listener (OPS_PORT, 9091 by
// default) that nginx never proxies to, with the image's own probe (services/app/probe.sh, its
// HEALTHCHECK too): a bash process, where a `node -e fetch(...)` took seconds on a loaded host.
// It exits non-zero unless 200; `|| :` keeps the status it printed (503 while draining).

/** The status an app container's operator listener answers for `path`, 0 when it does not answer. */
export async function probeApp(containerId: string, path: string): Promise<number> {
  const args = ["-e", "PROBE_TIMEOUT_S=2", containerId, "bash", "-c", 'bash /app/probe.sh "$0" || :', path];
  const out = await docker(["exec", ...args], { timeoutMs: 30_000 }).catch(() => "0");
  return Number(out.trim()) || 0;
}

/**
 * redis-cli in the Redis container, as the admin user. The password stays inside the container:
 * read from the secret, passed in the environment (redis-cli reads REDISCLI_AUTH), never in argv.
 */
export async function redisCli(containerId: string, args: readonly string[], port = 6379): Promise<string> {
  const script =
    "read -r REDISCLI_AUTH < /run/secrets/redis_admin_password; export REDISCLI_AUTH; " +
    'exec redis-cli --user admin -p "$0" "$@"';
  return (await dockerExec(containerId, ["sh", "-c", script, String(port), ...args])).trim();
}

/** Log lines of several containers, each with its timestamp, merged oldest first. */
export function mergeLogs(rows: { at: string; line: string }[]): string {
  return rows
    .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0))
    .map((r) => r.line)
    .join("\n");
}
