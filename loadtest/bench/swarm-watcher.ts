// What the Swarm nginx's DNS watcher (infra/swarm/nginx-entrypoint.sh, nginx < 1.27.3) costs in
// `make bench` terms: wrk through the Swarm nginx to the app, with the watcher running and with
// it stopped (SIGSTOP), alternating in one run with the same client, plus the CPU the nginx
// container and dockerd (Docker's DNS answers the watcher's queries) used in each window.
// usage: node loadtest/bench/swarm-watcher.ts [rounds=3] [seconds=10]
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { docker, run } from "../../infra/cluster/docker.ts";
import { SwarmCluster } from "../../infra/cluster/swarm-cluster.ts";
import { LOAD_APP_ENV } from "../client/load-env.ts";
import { wrkRun } from "./load-run.ts";

const rounds = Number(process.argv[2] ?? 3);
const seconds = Number(process.argv[3] ?? 10);
const CONNECTIONS = 50;

/** CPU seconds a process has used (user + system), from /proc. */
function procCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** CPU seconds a container's cgroup has used (cgroup v1 cpuacct or v2 cpu.stat). */
async function containerCpu(id: string): Promise<number> {
  const out = await run("sh", [
    "-c",
    `f=$(find /sys/fs/cgroup -path "*${id}*" \\( -name cpu.stat -o -name cpuacct.usage \\) 2>/dev/null | head -1); ` +
      'case "$f" in *cpu.stat) awk \'/usage_usec/{print $2/1e6}\' "$f" ;; *) awk \'{print $1/1e9}\' "$f" ;; esac',
  ]);
  return Number(out.trim());
}

const cluster = SwarmCluster.create({
  dir: mkdtempSync(join(tmpdir(), "swarm-watcher-")),
  stack: `esc-watcher-${process.pid}`,
  replicas: 3,
  port: 0,
  clientLimits: false,
  appEnv: { ...LOAD_APP_ENV },
  log: (l) => console.log(l),
});
try {
  await cluster.start();
  const nginx = (
    await docker(["ps", "-q", "--no-trunc", "--filter", `label=com.docker.swarm.service.name=${cluster.stack}_nginx`])
  ).trim();
  // The watcher is the entrypoint's background subshell: an `sh` whose parent is nginx's master (PID 1).
  const watcher = (
    await docker([
      "exec",
      nginx,
      "sh",
      "-c",
      'for d in /proc/[0-9]*; do read -r pid comm state ppid rest < "$d/stat"; ' +
        '[ "$comm" = "(sh)" ] && [ "$ppid" = 1 ] && echo "$pid"; done; exit 0',
    ])
  ).trim();
  if (!/^\d+$/.test(watcher) || Number(watcher) <= 1) throw new Error(`watcher not found (got "${watcher}")`);
  const signal = (sig: "STOP" | "CONT") => docker(["exec", nginx, "sh", "-c", `kill -${sig} ${watcher}`]);
  // The watcher's own CPU with its children's (getent, sleep), from inside the container's pid namespace.
  const watcherCpu = async () => {
    const stat = await docker(["exec", nginx, "sh", "-c", `read -r s < /proc/${watcher}/stat; echo "$s"`]);
    const f = stat.split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  };
  const dockerd = Number((await run("sh", ["-c", "pgrep -xo dockerd"])).trim());
  const url = `${cluster.baseUrl()}/api/session`;
  // Warm-up: connections, JIT, the keep-alive pools.
  await wrkRun(url, CONNECTIONS, 3);
  type Row = { watcher: string; rps: number; p50: number; p99: number; errors: number } & Record<Cpu, number>;
  type Cpu = "nginxCpu" | "dockerdCpu" | "watcherCpu";
  const rows: Row[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const on of r % 2 === 0 ? [true, false] : [false, true]) {
      await signal(on ? "CONT" : "STOP");
      const c0 = await containerCpu(nginx);
      const d0 = procCpu(dockerd);
      const w0 = await watcherCpu();
      const w = await wrkRun(url, CONNECTIONS, seconds);
      if ("missing" in w) throw new Error(w.missing);
      const row = {
        watcher: on ? "running" : "stopped",
        rps: w.rps,
        p50: w.latencyMs.p50,
        p99: w.latencyMs.p99,
        errors: w.errors,
        nginxCpu: ((await containerCpu(nginx)) - c0) / seconds,
        dockerdCpu: (procCpu(dockerd) - d0) / seconds,
        watcherCpu: ((await watcherCpu()) - w0) / seconds,
      };
      rows.push(row);
      const load = (await run("cat", ["/proc/loadavg"])).split(" ").slice(0, 3).join(" ");
      console.log(
        `round ${r + 1} watcher ${row.watcher.padEnd(7)} ${row.rps.toFixed(0).padStart(6)} req/s  p50 ` +
          `${row.p50.toFixed(1)} ms  p99 ${row.p99.toFixed(1)} ms  errors ${row.errors}  nginx ` +
          `${(row.nginxCpu * 100).toFixed(1)}% of a core (watcher ${(row.watcherCpu * 100).toFixed(2)}%)  dockerd ` +
          `${(row.dockerdCpu * 100).toFixed(1)}%  [load ${load}]`,
      );
    }
  }
  await signal("CONT");
  const mean = (on: string, k: "rps" | "p99" | Cpu) => {
    const xs = rows.filter((x) => x.watcher === on).map((x) => x[k]);
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
  const pct = (on: string, k: Cpu) => `${(mean(on, k) * 100).toFixed(2)}%`;
  const line = (on: string) =>
    `watcher ${on}: ${mean(on, "rps").toFixed(0)} req/s, p99 ${mean(on, "p99").toFixed(1)} ms, nginx container ` +
    `${pct(on, "nginxCpu")} of a core (watcher ${pct(on, "watcherCpu")}), dockerd ${pct(on, "dockerdCpu")}`;
  console.log(
    `\nmean over ${rounds} rounds of ${seconds} s, ${CONNECTIONS} connections, GET /api/session through nginx:\n` +
      `${line("running")}\n${line("stopped")}\nratio running/stopped: ` +
      `${(mean("running", "rps") / mean("stopped", "rps")).toFixed(3)}x req/s, ` +
      `${(mean("running", "p99") / mean("stopped", "p99")).toFixed(3)}x p99`,
  );
} finally {
  await cluster.stop();
}
