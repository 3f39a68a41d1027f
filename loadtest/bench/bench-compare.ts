// `make bench-compare BASE=<git ref>`: what a change is worth. Runs the app at BASE (a git
// worktree, its own nginx config and cluster driver) and this checkout side by side, and
// alternates short load runs between them (ABAB...) so that both see the same noise.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LocalCluster } from "../../infra/cluster/local-cluster.ts";
import { LOAD_APP_ENV } from "../client/load-env.ts";
import { loadRun, type LoadResult } from "./load-run.ts";
import { clusterComponents } from "./procs.ts";
import { commandCalls, perRequest } from "./redis-stats.ts";
import type { BenchRequest, VisitorMode } from "./visitors.ts";
import { repoRoot } from "../lib/process.ts";
import { geometricMean, median, percentChange } from "../lib/stats.ts";

const BASE = process.env.BASE || "HEAD";
const ROUNDS = Number(process.env.ROUNDS ?? 4);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const REPLICAS = Number(process.env.REPLICAS ?? 3);
// RATE=<req/s>: both sides get the same fixed load instead of as much as they take. On a busy
// shared box the CPU per request is then compared at the same batching (requests per event-loop
// turn), which throughput-bound runs do not give when the two sides' rates differ.
const RATE = Number(process.env.RATE ?? 0);
const WARMUP_FRESH = Number(process.env.BENCH_WARMUP_FRESH ?? 30);
// VIA=direct loads replica 1 without nginx; PATHNAME=/counter uses the seed's GET.
const VIA = process.env.VIA === "direct" ? "direct" : "nginx";
const REQUEST: BenchRequest =
  process.env.PATHNAME === "/counter" ? { method: "GET", path: "/counter" } : { method: "POST", path: "/api/counter" };
const KEYED = REQUEST.path === "/api/counter";
// VISITORS=new: every request from a new visitor (no cookie: a session starts), as `make bench`'s
// "new visitors" scenario; default returning visitors.
const VISITORS: VisitorMode = process.env.VISITORS === "new" ? "new" : "returning";
// APP_ENV=K=V,K=V for both sides; APP_ENV_B only for B: a setting's worth, e.g. APP_ENV_B=LOG_LEVEL=warn.
const envOf = (v: string | undefined) =>
  Object.fromEntries(
    (v ?? "")
      .split(",")
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
const APP_ENV = envOf(process.env.APP_ENV);
const APP_ENV_B = envOf(process.env.APP_ENV_B);

// BASE's own driver (typed as today's: only create, start, stop, dir, redisCommand and a
// replica's url are used, which every version has; an older one ignores clientLimits).
type LocalClusterModule = {
  LocalCluster: {
    create(o: { dir: string; replicas: number; appEnv?: Record<string, string>; clientLimits?: false }): LocalCluster;
  };
};

const work = mkdtempSync(join(tmpdir(), "bench-compare-"));
const baseTree = join(work, "base");
const started: LocalCluster[] = [];

async function side(name: string, root: string, extraEnv: Record<string, string> = {}) {
  const { LocalCluster } = (await import(join(root, "infra/cluster/local-cluster.ts"))) as LocalClusterModule;
  const cluster = LocalCluster.create({
    dir: join(work, `cluster-${name}`),
    replicas: REPLICAS,
    appEnv: { LOG_LEVEL: "info", ...LOAD_APP_ENV, ...APP_ENV, ...extraEnv },
    clientLimits: false,
  });
  started.push(cluster);
  await cluster.start();
  const components = await clusterComponents(cluster);
  const url = VIA === "direct" ? (await cluster.replicas())[0]!.url : cluster.baseUrl();
  return { name, cluster, components, url, runs: [] as LoadResult[], redis: {} as Record<string, number> };
}

async function main(): Promise<void> {
  const sha = execFileSync("git", ["rev-parse", "--short", BASE], { cwd: repoRoot, encoding: "utf8" }).trim();
  const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: repoRoot, encoding: "utf8" }).trim();
  const dirty =
    execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], {
      cwd: repoRoot,
      encoding: "utf8",
    }).trim() !== "";
  execFileSync("git", ["worktree", "add", "--detach", "--quiet", baseTree, sha], { cwd: repoRoot });
  // Same dependencies: the comparison is about the code, not about a reinstall.
  symlinkSync(join(repoRoot, "node_modules"), join(baseTree, "node_modules"));
  const withEnv = Object.keys(APP_ENV_B).length ? ` with ${process.env.APP_ENV_B}` : "";
  console.log(
    `bench-compare: A = ${BASE} (${sha}), B = this checkout ` +
      `(${head}${dirty ? " + uncommitted changes" : ""}${withEnv}); ` +
      `${VIA === "nginx" ? `nginx + ${REPLICAS} replicas` : "1 replica direct"}, ${REQUEST.method} ` +
      `${REQUEST.path}${KEYED ? " + Idempotency-Key" : ""}, ${VISITORS} visitors, c=${CONNECTIONS}` +
      `${RATE > 0 ? ` at ${RATE} req/s` : ""}, ${ROUNDS} ` +
      `x ${SECONDS} s each, alternating`,
  );
  const a = await side("A", baseTree);
  const b = await side("B", repoRoot, APP_ENV_B);
  for (let round = 1; round <= ROUNDS; round++) {
    // Alternate who goes first, so neither side always follows the other's leftovers.
    for (const s of round % 2 ? [a, b] : [b, a]) {
      // Counted around the measured part only (loadRun's hooks), not the warm-up.
      let before: Record<string, number> = {};
      let after: Record<string, number> = {};
      const r = await loadRun(
        {
          url: s.url,
          request: REQUEST,
          uniqueIdempotencyKey: KEYED,
          visitors: VISITORS,
          connections: CONNECTIONS,
          seconds: SECONDS,
          // Each side's cluster is fresh before its first run: warm it as make bench does.
          warmupSeconds: round === 1 ? WARMUP_FRESH : 0,
          ...(RATE > 0 && { rate: RATE }),
        },
        s.components,
        {
          before: async () => void (before = await commandCalls(s.cluster)),
          after: async () => void (after = await commandCalls(s.cluster)),
        },
      );
      s.runs.push(r);
      for (const [cmd, n] of Object.entries(perRequest(before, after, 1))) s.redis[cmd] = (s.redis[cmd] ?? 0) + n;
      console.log(
        `round ${round} ${s.name}: ${r.rps.toFixed(0).padStart(6)} req/s  p50 ` +
          `${r.latencyMs.p50.toFixed(1)}  p99 ${r.latencyMs.p99.toFixed(1)} ms  node ` +
          `${((r.cpuMs.node! * 1000) / r.requests).toFixed(0)} µs/req  syscalls/req node ` +
          `${((r.syscalls.node ?? 0) / r.requests).toFixed(2)} nginx ` +
          `${((r.syscalls.nginx ?? 0) / r.requests).toFixed(2)} redis ` +
          `${((r.syscalls.redis ?? 0) / r.requests).toFixed(2)}  errors ${r.errors} non-2xx ${r.non2xx}`,
      );
    }
  }
  const sum = (s: typeof a) => {
    const req = s.runs.reduce((x, r) => x + r.requests, 0);
    const cpu = (k: string) => (s.runs.reduce((x, r) => x + (r.cpuMs[k] ?? 0), 0) * 1000) / req;
    const io = (k: string) => s.runs.reduce((x, r) => x + (r.syscalls[k] ?? 0), 0) / req;
    return {
      sysNode: io("node"),
      sysNginx: io("nginx"),
      sysRedis: io("redis"),
      rps: median(s.runs.map((r) => r.rps)),
      p99: median(s.runs.map((r) => r.latencyMs.p99)),
      node: cpu("node"),
      nginx: cpu("nginx"),
      redis: cpu("redis"),
      loadgen: cpu("loadgen"),
      errors: s.runs.reduce((x, r) => x + r.errors + r.non2xx, 0),
    };
  };
  const A = sum(a);
  const B = sum(b);
  // Each round's B/A pair saw nearly the same noise, so the geometric mean of the paired
  // ratios is steadier than a ratio of medians.
  const paired = (f: (r: LoadResult) => number) => geometricMean(a.runs.map((ra, i) => f(b.runs[i]!) / f(ra)));
  const nodePerReq = (r: LoadResult) => (r.cpuMs.node ?? 0) / r.requests;
  console.log("\n| | req/s (median) | p99 ms (median) | node µs/req | nginx µs/req | redis µs/req | errors |");
  console.log("|---|--:|--:|--:|--:|--:|--:|");
  console.log(
    `| A ${BASE} | ${A.rps.toFixed(0)} | ${A.p99.toFixed(1)} | ${A.node.toFixed(0)} | ` +
      `${A.nginx.toFixed(0)} | ${A.redis.toFixed(0)} | ${A.errors} |`,
  );
  console.log(
    `| B this checkout | ${B.rps.toFixed(0)} | ${B.p99.toFixed(1)} | ${B.node.toFixed(0)} | ` +
      `${B.nginx.toFixed(0)} | ${B.redis.toFixed(0)} | ${B.errors} |`,
  );
  console.log(
    `| B vs A | ${percentChange(A.rps, B.rps)} | ${percentChange(A.p99, B.p99)} | ` +
      `${percentChange(A.node, B.node)} | ${percentChange(A.nginx, B.nginx)} | ` +
      `${percentChange(A.redis, B.redis)} | |`,
  );
  console.log(
    `\nread+write syscalls per request: node ${A.sysNode.toFixed(2)} -> ${B.sysNode.toFixed(2)}, nginx ` +
      `${A.sysNginx.toFixed(2)} -> ${B.sysNginx.toFixed(2)}, redis ${A.sysRedis.toFixed(2)} -> ` +
      `${B.sysRedis.toFixed(2)}`,
  );
  const commands = (s: typeof a) => {
    const req = s.runs.reduce((x, r) => x + r.requests, 0);
    return Object.entries(s.redis)
      .map(([cmd, n]) => `${cmd} ${(n / req).toFixed(2)}`)
      .join(", ");
  };
  console.log(`Redis commands per request (scripts' own included): A ${commands(a)}; B ${commands(b)}`);
  const g = (ratio: number) => percentChange(1, ratio);
  console.log(
    `\npaired by round (geometric mean of B/A): req/s ${g(paired((r) => r.rps))}, p99 ` +
      `${g(paired((r) => r.latencyMs.p99))}, node CPU per request ${g(paired(nodePerReq))}`,
  );
}

try {
  await main();
} finally {
  for (const c of started) await c.stop().catch(() => {});
  if (existsSync(baseTree))
    execFileSync("git", ["worktree", "remove", "--force", baseTree], { cwd: repoRoot, stdio: "ignore" });
  rmSync(work, { recursive: true, force: true });
}
