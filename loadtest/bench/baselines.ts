// The two baselines every `make bench` figure is divided by, started as bare processes:
// B0 a separate nginx whose only location is `return 200` (same shared settings and access
// log as the cluster's nginx), B1 the bare Express hello-world (hello.ts).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { waitFor, httpStatus } from "../../infra/cluster/wait.ts";
import { run } from "../lib/process.ts";
import { findProcesses } from "./procs.ts";
import { loadBalancerHttp, localNginxConf } from "../../infra/cluster/local-cluster.ts";
import { redisConf } from "../../infra/cluster/redis-conf.ts";

export type Baseline = { url: string; pids: () => number[]; stop: () => Promise<void> };

function stopChild(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(timer);
      done();
    });
    child.kill(signal);
  });
}

// Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
const nginxBin = existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";

async function startNginx(
  dir: string,
  title: string,
  http: (accessLog: string) => string,
  probe: string,
): Promise<Baseline> {
  const d = resolve(dir);
  mkdirSync(d, { recursive: true });
  const conf = join(d, "nginx.conf");
  writeFileSync(conf, localNginxConf(d, join(d, "access.log"), title, http(join(d, "access.log"))));
  const args = ["-p", d, "-c", conf, "-e", join(d, "error.log")];
  await run(nginxBin, [...args, "-t", "-q"]);
  const child = spawn(nginxBin, [...args, "-g", "daemon off;"], { stdio: "ignore" });
  await waitFor(title, async () => (await httpStatus(probe)) === 200, 10_000);
  return {
    url: new URL(probe).origin,
    pids: () => findProcesses(`-p ${d} -c ${conf}`),
    stop: async () => {
      await stopChild(child, "SIGQUIT"); // nginx's graceful stop
      rmSync(d, { recursive: true, force: true });
    },
  };
}

export function startNginx200(dir: string, port: number): Promise<Baseline> {
  const http = () => `  server {
    listen 127.0.0.1:${port};
    location / {
      default_type text/plain;
      return 200 "ok\\n";
    }
  }
`;
  return startNginx(
    dir,
    "B0 of make bench: nginx alone, answering 200 with the cluster nginx's shared settings",
    http,
    `http://127.0.0.1:${port}/`,
  );
}

/**
 * The topology's own ceiling: the cluster's nginx config (same proxy.conf, locations.conf,
 * upstream keep-alive) in front of `replicas` bare hello-world processes instead of the app,
 * whose exactly-once request makes one round trip to the Redis on `redisPort` when given.
 */
export async function startNginxOverHello(
  dir: string,
  port: number,
  replicas: number,
  redisPort?: number,
): Promise<Baseline & { nodePids: () => number[] }> {
  const hellos = await Promise.all(Array.from({ length: replicas }, () => startHello(redisPort)));
  const ports = hellos.map((h) => Number(new URL(h.url).port));
  try {
    const nginx = await startNginx(
      dir,
      "make bench: the load balancer's nginx over bare hello-world replicas",
      () => loadBalancerHttp(ports, port, true),
      `http://127.0.0.1:${port}/`,
    );
    return {
      url: nginx.url,
      pids: nginx.pids,
      nodePids: () => hellos.flatMap((h) => h.pids()),
      stop: async () => {
        await nginx.stop();
        await Promise.all(hellos.map((h) => h.stop()));
      },
    };
  } catch (err) {
    await Promise.all(hellos.map((h) => h.stop()));
    throw err;
  }
}

export async function startHello(redisPort?: number): Promise<Baseline> {
  const child = spawn(process.execPath, [join(import.meta.dirname, "hello.ts")], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { PATH: process.env.PATH, NODE_ENV: "production", HELLO_REDIS_PORT: String(redisPort ?? "") },
  });
  const port = await new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("hello-world did not start within 10 s")), 10_000);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      const m = /listening (\d+)/.exec(chunk);
      if (m) {
        clearTimeout(timer);
        ok(Number(m[1]));
      }
    });
    child.once("exit", (code) => fail(new Error(`hello-world exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, pids: () => (child.pid ? [child.pid] : []), stop: () => stopChild(child) };
}

/**
 * A Redis for the hello-worlds' round trip, persisting as the cluster's does (redisConf: AOF,
 * fsync every second), with one user, the default, allowed everything and no password.
 */
export async function startRedis(
  dir: string,
  port: number,
): Promise<Baseline & { port: number; redisCommand(...args: string[]): Promise<string> }> {
  const d = resolve(dir);
  mkdirSync(d, { recursive: true });
  const aclfile = join(d, "users.acl");
  writeFileSync(aclfile, "user default on nopass ~* &* +@all\n");
  const conf = join(d, "redis.conf");
  writeFileSync(conf, redisConf({ port, bind: "127.0.0.1", dir: d, aclfile, maxmemory: "256mb" }));
  const child = spawn("redis-server", [conf], { stdio: "ignore" });
  let failed: Error | undefined;
  child.once("error", (err) => (failed = err)); // no redis-server on PATH: the wait below says so
  const ping = () => run("redis-cli", ["-p", String(port), "PING"], { timeoutMs: 2000 }).catch(() => "");
  try {
    await waitFor(
      `the hello-worlds' redis on port ${port}`,
      async () => {
        if (failed) throw failed;
        return (await ping()).trim() === "PONG";
      },
      15_000,
    );
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    redisCommand: async (...args: string[]) => (await run("redis-cli", ["-p", String(port), ...args])).trim(),
    pids: () => (child.pid ? [child.pid] : []),
    stop: async () => {
      await stopChild(child);
      rmSync(d, { recursive: true, force: true });
    },
  };
}
