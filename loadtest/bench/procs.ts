// CPU time of processes from /proc/<pid>/stat, so a benchmark can charge each component
// (replicas, nginx, redis, load generator) its CPU per request, the steadiest cost figure on a shared box.
import { readdirSync, readFileSync } from "node:fs";
import type { Cluster } from "../../infra/cluster/cluster.ts";
import { info } from "./redis-stats.ts";

/** Clock ticks per second of utime/stime in /proc/<pid>/stat; 100 on every Linux we run on. */
const CLK_TCK = 100;

type Stat = { pid: number; ppid: number; cpuMs: number };

function readStat(pid: number): Stat | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is in parentheses and may hold spaces; the fields after it are fixed.
    const rest = raw.slice(raw.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(rest[1]);
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return { pid, ppid, cpuMs: ((utime + stime) * 1000) / CLK_TCK };
  } catch {
    return undefined; // gone between listing and reading
  }
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

function allPids(): number[] {
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

/** Pids whose command line contains `marker`, plus all their descendants (nginx workers). */
export function findProcesses(marker: string): number[] {
  const stats = allPids()
    .map(readStat)
    .filter((s): s is Stat => s !== undefined);
  const roots = new Set(stats.filter((s) => cmdline(s.pid).includes(marker)).map((s) => s.pid));
  let grew = true;
  while (grew) {
    grew = false;
    for (const s of stats) {
      if (!roots.has(s.pid) && roots.has(s.ppid)) {
        roots.add(s.pid);
        grew = true;
      }
    }
  }
  return [...roots];
}

/** read+write syscalls a process made (/proc/<pid>/io syscr + syscw); 0 when unreadable. */
export function syscalls(pid: number): number {
  try {
    const io = readFileSync(`/proc/${pid}/io`, "utf8");
    return Number(/syscr: (\d+)/.exec(io)?.[1] ?? 0) + Number(/syscw: (\d+)/.exec(io)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Summed user+system CPU milliseconds of `pids` (processes that exited count as 0). */
export function cpuMs(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += readStat(pid)?.cpuMs ?? 0;
  return total;
}

export type Component = { name: string; pids: () => number[] };

/**
 * The measured parts of a started local cluster: its replicas and nginx by their command lines, Redis by the pid it
 * reports.
 */
export async function clusterComponents(
  cluster: Pick<Cluster, "redisCommand"> & { dir: string },
): Promise<Component[]> {
  const redisPid = Number((await info(cluster, "server")).process_id);
  return [
    { name: "node", pids: () => findProcesses(`--cluster-dir=${cluster.dir}`) },
    { name: "nginx", pids: () => findProcesses(`${cluster.dir}/nginx/nginx.conf`) },
    { name: "redis", pids: () => [redisPid] },
  ];
}

/**
 * Snapshot of each component's CPU time; stop() gives the delta. Pids are resolved at both
 * ends, so a process started mid-run is counted from zero and one that exited mid-run
 * counts for nothing (its last ticks are unknowable).
 */
export class CpuMeter {
  readonly #components: Component[];
  #start = new Map<string, Map<number, number>>();
  #startIo = new Map<string, Map<number, number>>();
  /** read+write syscalls per component during the last start()..stop(). */
  syscalls: Record<string, number> = {};
  #self = process.cpuUsage();
  constructor(components: Component[]) {
    this.#components = components;
  }
  start(): void {
    this.#start.clear();
    for (const c of this.#components) {
      const pids = c.pids();
      this.#start.set(c.name, new Map(pids.map((p) => [p, cpuMs([p])])));
      this.#startIo.set(c.name, new Map(pids.map((p) => [p, syscalls(p)])));
    }
    this.#self = process.cpuUsage();
  }
  /** CPU ms per component since start(), with the load generator (this process) as "loadgen". */
  stop(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.#components) {
      const before = this.#start.get(c.name) ?? new Map<number, number>();
      let ms = 0;
      for (const pid of new Set([...before.keys(), ...c.pids()])) {
        const end = readStat(pid)?.cpuMs;
        if (end !== undefined) ms += end - (before.get(pid) ?? 0);
      }
      out[c.name] = ms;
      const io0 = this.#startIo.get(c.name) ?? new Map<number, number>();
      let n = 0;
      for (const pid of new Set([...io0.keys(), ...c.pids()])) {
        const end = syscalls(pid);
        if (end > 0) n += end - (io0.get(pid) ?? 0);
      }
      this.syscalls[c.name] = n;
    }
    const self = process.cpuUsage(this.#self);
    out.loadgen = (self.user + self.system) / 1000;
    return out;
  }
}
