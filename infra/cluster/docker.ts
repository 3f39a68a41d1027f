// The docker and Compose command lines, found in one place: `docker compose` (v2, what
// Docker ships today) when the plugin answers, else `docker-compose` (1.29, what Debian ships).
import { execFile, execFileSync } from "node:child_process";

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
