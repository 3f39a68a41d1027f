// `make bench`: every scenario against baselines measured in the same run (B0 nginx alone,
// B1 bare Express), then growth (memory per session, p99 at 1k vs 1M sessions), a CPU
// profile of one replica, and the goals. Prints a line per scenario and a Markdown report;
// writes JSON, Markdown and an SVG chart to loadtest/reports/ (BENCH_OUT overrides).
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { RedisTopology } from "../../infra/cluster/cluster.ts";
import { LocalCluster } from "../../infra/cluster/local-cluster.ts";
import { LOAD_APP_ENV } from "../client/load-env.ts";
import { Visitor } from "../client/visitor.ts";
import { startHello, startNginx200, startNginxOverHello, startRedis, type Baseline } from "./baselines.ts";
import { summarizeProfile, type ProfileSummary } from "./cpu-profile.ts";
import { loadRun, wrkRun, type LoadResult, type LoadSpec, type WrkResult } from "./load-run.ts";
import { clusterComponents, type Component } from "./procs.ts";
import {
  commandCalls,
  compactAof,
  dbsize,
  fillSessions,
  flushAll,
  LAYOUTS,
  perRequest,
  sampleSession,
  usedMemory,
  weighLayout,
  type Layout,
} from "./redis-stats.ts";
import { renderMarkdown, renderSvg } from "./bench-report.ts";
import type { BenchRequest, VisitorMode } from "./visitors.ts";
import { freePort } from "../../infra/cluster/ports.ts";
import { fileStamp, onInterrupt, repoRoot } from "../lib/process.ts";
import { geometricMean, mean, median } from "../lib/stats.ts";

const QUICK = process.env.QUICK === "1" || process.argv.includes("--quick");
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 1 : 10));
const WARMUP = QUICK ? 0 : 2;
const MEMORY_SESSIONS = QUICK ? 10_000 : 100_000;
const GROWTH_SMALL = 1_000;
const GROWTH_LARGE = QUICK ? 20_000 : 1_000_000;
const GROWTH_PAIRS = QUICK ? 1 : 2;
// BENCH_ONLY=atomic,profile runs a subset (the baselines always run): for iterating on one
// optimization without the full run.
const ONLY = new Set(
  (process.env.BENCH_ONLY ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean),
);
const only = (part: string) => ONLY.size === 0 || ONLY.has(part);
const OUT = resolve(process.env.BENCH_OUT || join(repoRoot, "loadtest/reports"));

const SEED_GET: BenchRequest = { method: "GET", path: "/counter" };
const KEYED_POST: BenchRequest = { method: "POST", path: "/api/counter" };

export type ScenarioResult = {
  id: string;
  label: string;
  group: "baseline" | "direct" | "nginx" | "growth";
  replicas: number | null;
  counter: "atomic" | "session" | null;
  store: "redis" | "memory" | null;
  visitors: VisitorMode | null;
  keepalive: boolean | null;
  request: string;
  result: LoadResult;
  /** CPU µs per request, per component (node = all replicas together). */
  cpuUsPerReq: Record<string, number>;
  /** Redis commands per request (those a script runs included). */
  redisPerReq?: Record<string, number>;
  ratioB1: number;
  ratioB0: number;
};

// ---- bookkeeping: everything started is stopped, also on Ctrl-C or a failure -----------

const cleanups = new Set<() => Promise<void>>();
async function cleanupAll(): Promise<void> {
  for (const c of [...cleanups].reverse()) await c().catch((e) => console.error(`cleanup: ${(e as Error).message}`));
  cleanups.clear();
}
onInterrupt((signal) => {
  console.error(`\n${signal}: stopping everything the benchmark started...`);
  return cleanupAll();
});

const workDir = mkdtempSync(join(tmpdir(), "bench-"));
cleanups.add(async () => rmSync(workDir, { recursive: true, force: true }));

async function startCluster(
  name: string,
  opts: { replicas: number; appEnv?: Record<string, string>; upstreamKeepalive?: boolean; redis?: RedisTopology },
) {
  const cluster = LocalCluster.create({
    dir: join(workDir, name),
    replicas: opts.replicas,
    redis: opts.redis ?? "single",
    appEnv: { LOG_LEVEL: "info", ...LOAD_APP_ENV, ...opts.appEnv },
    upstreamKeepalive: opts.upstreamKeepalive,
    clientLimits: false,
  });
  const stop = () => cluster.stop();
  cleanups.add(stop);
  await cluster.start();
  // Sentinel and Cluster: every redis-server (and Sentinel) process counts, not only the one INFO names.
  const components =
    cluster.redisTopology !== "single"
      ? [
          ...(await clusterComponents(cluster)).filter((c) => c.name !== "redis"),
          { name: "redis", pids: () => cluster.redisPids() },
        ]
      : await clusterComponents(cluster);
  return {
    cluster,
    components,
    async stop() {
      cleanups.delete(stop);
      await stop();
    },
  };
}
type RunningCluster = Awaited<ReturnType<typeof startCluster>>;

// ---- measuring ---------------------------------------------------------------------------

const results: ScenarioResult[] = [];
const b0Runs: LoadResult[] = [];
const b1Runs: LoadResult[] = [];
const b0 = () => mean(b0Runs.map((r) => r.rps));
const b1 = () => mean(b1Runs.map((r) => r.rps));
let step = 0;

function perReq(cpuMs: Record<string, number>, requests: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, ms] of Object.entries(cpuMs))
    out[k] = requests > 0 ? Math.round(((ms * 1000) / requests) * 10) / 10 : Number.NaN;
  return out;
}

function progress(label: string, r: LoadResult, extra = ""): void {
  step++;
  const l = r.latencyMs;
  const ratio = b1Runs.length ? `  ${(r.rps / b1()).toFixed(2)}x B1` : "";
  console.log(
    `[${String(step).padStart(2)}] ${label.padEnd(52)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ` +
      `${l.p50.toFixed(1)}  p97.5 ${l.p97_5.toFixed(1)}  p99 ${l.p99.toFixed(1)} ms  ` +
      `load ${r.loadAverage1m.toFixed(1)}  errors ${r.errors}${
        r.errors
          ? ` (${Object.entries(r.errorKinds)
              .map(([k, n]) => `${k} ${n}`)
              .join(", ")})`
          : ""
      }  non-2xx ${r.non2xx}${ratio}${extra}`,
  );
}

type Def = Omit<ScenarioResult, "result" | "cpuUsPerReq" | "redisPerReq" | "ratioB1" | "ratioB0">;

// Fresh Node processes run slower for their first seconds (JIT, heap sizing), so a cluster's
// first measurement gets a longer warm-up. A fresh 3-replica cluster under the exactly-once load,
// in back-to-back 5 s runs (2026-11-30): 3437, 4311, 5502, 5375, 5483, 5818, 5753, 5867, 6083
// req/s, node CPU per request 345 falling to 167-176 µs from the 30th second on. 8 s measured
// the goal scenario while it was still warming, at about 0.9x of its later speed (one series).
const WARMUP_FRESH = QUICK ? 0 : Number(process.env.BENCH_WARMUP_FRESH ?? 30);
const warmed = new WeakSet<object>();

async function measure(
  def: Def,
  spec: Omit<LoadSpec, "connections" | "seconds" | "warmupSeconds">,
  components: Component[],
  cluster?: Pick<LocalCluster, "redisCommand">,
  processes: object | undefined = cluster,
): Promise<ScenarioResult> {
  const fresh = processes !== undefined && !warmed.has(processes);
  if (processes) warmed.add(processes);
  const full: LoadSpec = {
    ...spec,
    connections: CONNECTIONS,
    seconds: SECONDS,
    warmupSeconds: fresh ? WARMUP_FRESH : WARMUP,
  };
  let before: Record<string, number> | undefined;
  let after: Record<string, number> | undefined;
  const result = await loadRun(
    full,
    components,
    cluster
      ? {
          before: async () => void (before = await commandCalls(cluster)),
          after: async () => void (after = await commandCalls(cluster)),
        }
      : {},
  );
  const s: ScenarioResult = {
    ...def,
    result,
    cpuUsPerReq: perReq(result.cpuMs, result.requests),
    ...(before && after ? { redisPerReq: perRequest(before, after, result.requests) } : {}),
    ratioB1: Number.NaN,
    ratioB0: Number.NaN,
  };
  progress(def.label, result);
  results.push(s);
  return s;
}

const keyed = { request: KEYED_POST, uniqueIdempotencyKey: true } as const;
const base = { replicas: null, counter: null, store: null, visitors: null, keepalive: null } as const;

/**
 * Returning visitors' exactly-once increments (POST + Idempotency-Key) through nginx over the 3 replicas
 * of `c`: the row each variant of the default topology measures. `redisStats: false` where INFO
 * commandstats cannot give per-request Redis command counts (Redis Cluster: it is per node).
 */
function measureKeyed3(
  c: RunningCluster,
  row: { id: string; label: string; keepalive?: boolean; redisStats?: boolean },
): Promise<ScenarioResult> {
  return measure(
    {
      ...base,
      id: row.id,
      label: row.label,
      group: "nginx",
      replicas: 3,
      counter: "atomic",
      store: "redis",
      visitors: "returning",
      keepalive: row.keepalive ?? true,
      request: "POST /api/counter + Idempotency-Key",
    },
    { url: c.cluster.baseUrl(), ...keyed, visitors: "returning" },
    c.components,
    row.redisStats === false ? undefined : c.cluster,
    c.cluster,
  );
}

/** The ceiling's nginx and hello-worlds; the reference's are the same plus the hello-worlds' Redis. */
type Ceiling = { url: string; components: Component[]; referenceComponents: Component[] };
type Turn = "ceiling" | "shape" | "goal" | "b1" | "shapeNew" | "goalNew";
/** One round of takeTurns: each run's req/s, CPU µs per request, and whether it had errors or non-2xx. */
export type PairedRound = Record<Turn, { rps: number; cpuUsPerReq: Record<string, number>; clean: boolean }>;
const PAIR_ROUNDS = QUICK ? 1 : 3;
const PAIR_SECONDS = QUICK ? 1 : 5;
/** The context row under goals 1 and 3: what the cheapest Express app on a Redis path serves here. */
const REFERENCE_GOAL =
  "... reference: Express hello-worlds behind this nginx, one Redis round trip per request (measured)";

/**
 * Goals 1 and 3 measured against their references seconds apart: a few short rounds, the order
 * rotating, of the goal scenario (exactly-once, nginx + 3 replicas of `c`, already warm), the
 * ceiling (GET / over the hello-worlds), the reference (the exactly-once request on those hello-worlds,
 * one Redis round trip each), B1, and the same three for new visitors. This host's speed drifts by tens
 * of percent over minutes (B1 13260 and 22045 req/s at the start and the end of one run), more than a
 * goal's distance to its reference.
 */
async function takeTurns(ceiling: Ceiling, hello: Baseline, c: RunningCluster): Promise<PairedRound[]> {
  const app = c.cluster.baseUrl();
  const specs = {
    ceiling: { url: ceiling.url, request: { method: "GET", path: "/" }, visitors: "new" },
    shape: { url: ceiling.url, ...keyed, visitors: "returning" },
    goal: { url: app, ...keyed, visitors: "returning" },
    b1: { url: hello.url, request: { method: "GET", path: "/" }, visitors: "new" },
    shapeNew: { url: ceiling.url, ...keyed, visitors: "new" },
    goalNew: { url: app, ...keyed, visitors: "new" },
  } as const;
  const components = (name: Turn) =>
    name.startsWith("goal")
      ? c.components
      : name === "b1"
        ? [{ name: "node", pids: hello.pids }]
        : name === "ceiling"
          ? ceiling.components
          : ceiling.referenceComponents;
  const order = Object.keys(specs) as Turn[];
  const rounds: PairedRound[] = [];
  for (let i = 0; i < PAIR_ROUNDS; i++) {
    const round: Partial<PairedRound> = {};
    for (const name of order.map((_, k) => order[(k + i) % order.length]!)) {
      const r = await loadRun(
        { ...specs[name], connections: CONNECTIONS, seconds: PAIR_SECONDS, warmupSeconds: 0 },
        components(name),
      );
      round[name] = {
        rps: r.rps,
        cpuUsPerReq: perReq(r.cpuMs, r.requests),
        clean: r.errors === 0 && r.non2xx === 0,
      };
    }
    const x = round as PairedRound;
    rounds.push(x);
    step++;
    console.log(
      `[${String(step).padStart(2)}] ${`goals in turns with their references, round ${i + 1}`.padEnd(52)} ` +
        `exactly-once ${(x.goal.rps / x.ceiling.rps).toFixed(2)}x the ceiling (${x.goal.rps.toFixed(0)} vs ` +
        `${x.ceiling.rps.toFixed(0)} req/s), new visitors ${(x.goalNew.rps / x.b1.rps).toFixed(2)}x B1 ` +
        `(${x.goalNew.rps.toFixed(0)} vs ${x.b1.rps.toFixed(0)} req/s)`,
    );
  }
  return rounds;
}

async function baselines(nginx200: Baseline, hello: Baseline, round: number): Promise<void> {
  for (const [kind, target] of [
    ["B0", nginx200],
    ["B1", hello],
  ] as const) {
    const comps: Component[] = [{ name: kind === "B0" ? "nginx" : "node", pids: target.pids }];
    const result = await loadRun(
      {
        url: target.url,
        request: { method: "GET", path: "/" },
        visitors: "new",
        connections: CONNECTIONS,
        seconds: SECONDS,
        // B1's process is fresh for its first round; nginx has no JIT to warm.
        warmupSeconds: kind === "B1" && round === 1 ? WARMUP_FRESH : WARMUP,
      },
      comps,
    );
    (kind === "B0" ? b0Runs : b1Runs).push(result);
    progress(
      `${kind} ${kind === "B0" ? "nginx alone, return 200" : "bare Express 5 hello-world"} (round ${round})`,
      result,
    );
  }
}

function versionOf(cmd: string, args: string[]): string {
  // nginx -v prints to stderr, redis-server --version to stdout.
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n")[0] || "unknown";
}

function machine() {
  const os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? "unknown";
  const pkg = (name: string) =>
    (JSON.parse(readFileSync(join(repoRoot, "node_modules", name, "package.json"), "utf8")) as { version: string })
      .version;
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? "unknown",
    os,
    node: process.version,
    nginx: versionOf(existsNginx(), ["-v"]).replace(/^nginx version: nginx\//, ""),
    redis: /v=([\d.]+)/.exec(versionOf("redis-server", ["--version"]))?.[1] ?? "unknown",
    autocannon: pkg("autocannon"),
    express: pkg("express"),
    expressSession: pkg("express-session"),
  };
}
function existsNginx(): string {
  try {
    readFileSync("/usr/sbin/nginx");
    return "/usr/sbin/nginx";
  } catch {
    return "nginx";
  }
}

// ---- the run ----------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = new Date();
  const load0 = loadavg();
  console.log(
    `make bench${QUICK ? " (QUICK)" : ""}: c=${CONNECTIONS}, ${SECONDS} s per ` +
      `scenario${WARMUP ? ` after ${WARMUP} s warm-up (${WARMUP_FRESH} s on fresh processes)` : ""}; load average ` +
      `${load0.map((x) => x.toFixed(2)).join(" ")}`,
  );

  const nginx200 = await startNginx200(join(workDir, "b0"), await freePort());
  cleanups.add(nginx200.stop);
  const hello = await startHello();
  cleanups.add(hello.stop);

  await baselines(nginx200, hello, 1);
  const wrk: WrkResult = await wrkRun(`${nginx200.url}/`, CONNECTIONS, SECONDS);
  step++;
  if ("missing" in wrk) console.log(`[${String(step).padStart(2)}] B0 with wrk: skipped, ${wrk.missing}`);
  else
    console.log(
      `[${String(step).padStart(2)}] ${"B0 nginx alone, driven by wrk -t2".padEnd(52)} ` +
        `${wrk.rps.toFixed(0).padStart(6)} req/s  p50 ${wrk.latencyMs.p50.toFixed(1)}  p99 ` +
        `${wrk.latencyMs.p99.toFixed(1)} ms  errors ${wrk.errors}  ${(wrk.rps / b0Runs[0]!.rps).toFixed(2)}x ` +
        `autocannon`,
    );

  // The ceiling of the topology: the load balancer's nginx over 3 bare hello-worlds. No app
  // behind this nginx on this box can beat it, whatever it does per request. It stays up until
  // the goal scenario has been measured in turns with it (takeTurns). For the reference of goals
  // 1 and 3, their exactly-once request makes one round trip to a Redis of their own, persisting
  // as the cluster's does.
  const helloRedis = only("atomic") ? await startRedis(join(workDir, "ceiling-redis"), await freePort()) : undefined;
  if (helloRedis) cleanups.add(helloRedis.stop);
  const lb = await startNginxOverHello(join(workDir, "ceiling"), await freePort(), 3, helloRedis?.port);
  cleanups.add(lb.stop);
  const ceilingComponents = [
    { name: "nginx", pids: lb.pids },
    { name: "node", pids: lb.nodePids },
  ];
  const ceiling: Ceiling = {
    url: lb.url,
    components: ceilingComponents,
    referenceComponents: [...ceilingComponents, { name: "redis", pids: helloRedis?.pids ?? (() => []) }],
  };
  {
    const comps = ceiling.components;
    await measure(
      {
        ...base,
        id: "nginx3-hello",
        label: "ceiling: nginx + 3 bare hello-world replicas",
        group: "nginx",
        replicas: 3,
        keepalive: true,
        request: "GET /",
      },
      { url: lb.url, request: { method: "GET", path: "/" }, visitors: "new" },
      comps,
      undefined,
      lb,
    );
    // The same, for the exactly-once request itself (POST, Idempotency-Key, cookie, JSON answer)
    // after one Redis round trip: that request served by the cheapest Express on a Redis path,
    // the reference goals 1 and 3 are read against (buildReport).
    for (const visitors of only("atomic") ? (["returning", "new"] as const) : [])
      await measure(
        {
          ...base,
          id: visitors === "new" ? "nginx3-hello-keyed-new" : "nginx3-hello-keyed",
          label: `reference: nginx + 3 hello-worlds + 1 Redis round trip${visitors === "new" ? ", new visitors" : ""}`,
          group: "nginx",
          replicas: 3,
          visitors,
          keepalive: true,
          request: "POST /api/counter + Idempotency-Key",
        },
        { url: lb.url, ...keyed, visitors },
        ceiling.referenceComponents,
        helloRedis,
        // Warmed on its own (30 s): the hello-worlds' Redis client and script are new code to them.
        helloRedis,
      );
  }
  let ceilingUp = true;
  const stopCeiling = async () => {
    if (!ceilingUp) return;
    ceilingUp = false;
    cleanups.delete(lb.stop);
    await lb.stop();
    if (helloRedis) {
      cleanups.delete(helloRedis.stop);
      await helloRedis.stop();
    }
  };

  // The seed's counter (read the session, add, save it back), direct and through nginx.
  if (only("session")) {
    const c = await startCluster("session", { replicas: 3, appEnv: { COUNTER: "session" } });
    const direct = (await c.cluster.replicas())[0]!.url;
    await measure(
      {
        ...base,
        id: "direct-session",
        label: "1 replica direct, COUNTER=session, GET /counter",
        group: "direct",
        replicas: 1,
        counter: "session",
        store: "redis",
        visitors: "returning",
        request: "GET /counter",
      },
      { url: direct, request: SEED_GET, visitors: "returning" },
      c.components,
      c.cluster,
    );
    await measure(
      {
        ...base,
        id: "nginx3-session",
        label: "nginx + 3 replicas, COUNTER=session, GET /counter",
        group: "nginx",
        replicas: 3,
        counter: "session",
        store: "redis",
        visitors: "returning",
        keepalive: true,
        request: "GET /counter",
      },
      { url: c.cluster.baseUrl(), request: SEED_GET, visitors: "returning" },
      c.components,
      c.cluster,
    );
    await c.stop();
  }

  // The default, exactly-once counter (one Lua script), then growth on the same cluster.
  let growth: Record<string, unknown> = {};
  let paired: PairedRound[] = [];
  if (only("atomic") || only("growth")) {
    const c = await startCluster("atomic", { replicas: 3 });
    const url = c.cluster.baseUrl();
    const d = {
      ...base,
      counter: "atomic",
      store: "redis",
      keepalive: true,
      request: "POST /api/counter + Idempotency-Key",
    } as const;
    if (only("atomic")) {
      await measureKeyed3(c, { id: "nginx3-keyed", label: "nginx + 3 replicas, exactly-once (POST + key)" });
      paired = await takeTurns(ceiling, hello, c);
      await stopCeiling();
      await measure(
        {
          ...d,
          id: "nginx3-keyed-new",
          label: "nginx + 3 replicas, exactly-once, new visitors",
          group: "nginx",
          replicas: 3,
          visitors: "new",
        },
        { url, ...keyed, visitors: "new" },
        c.components,
        c.cluster,
      );
      await measure(
        {
          ...d,
          id: "nginx3-seed-atomic",
          label: "nginx + 3 replicas, COUNTER=atomic, GET /counter",
          group: "nginx",
          replicas: 3,
          visitors: "returning",
          request: "GET /counter",
        },
        { url, request: SEED_GET, visitors: "returning" },
        c.components,
        c.cluster,
      );
      await c.cluster.scale(2);
      await measure(
        {
          ...d,
          id: "nginx2-keyed",
          label: "nginx + 2 replicas, exactly-once",
          group: "nginx",
          replicas: 2,
          visitors: "returning",
        },
        { url, ...keyed, visitors: "returning" },
        c.components,
        c.cluster,
      );
      await c.cluster.scale(1);
      await measure(
        {
          ...d,
          id: "nginx1-keyed",
          label: "nginx + 1 replica, exactly-once",
          group: "nginx",
          replicas: 1,
          visitors: "returning",
        },
        { url, ...keyed, visitors: "returning" },
        c.components,
        c.cluster,
      );
      const direct = (await c.cluster.replicas())[0]!.url;
      await measure(
        {
          ...d,
          id: "direct-atomic",
          label: "1 replica direct, COUNTER=atomic, GET /counter",
          group: "direct",
          replicas: 1,
          keepalive: null,
          visitors: "returning",
          request: "GET /counter",
        },
        { url: direct, request: SEED_GET, visitors: "returning" },
        c.components,
        c.cluster,
      );
      await measure(
        {
          ...d,
          id: "direct-keyed",
          label: "1 replica direct, exactly-once (POST + key)",
          group: "direct",
          replicas: 1,
          keepalive: null,
          visitors: "returning",
        },
        { url: direct, ...keyed, visitors: "returning" },
        c.components,
        c.cluster,
      );
    }
    if (only("growth")) growth = await measureGrowth(c, d);
    await c.stop();
  }
  await stopCeiling();

  if (only("nokeepalive")) {
    const c = await startCluster("no-keepalive", { replicas: 3, upstreamKeepalive: false });
    await measureKeyed3(c, {
      id: "nginx3-keyed-nokeepalive",
      label: "nginx + 3 replicas, exactly-once, no upstream keepalive",
      keepalive: false,
    });
    await c.stop();
  }

  // The same exactly-once path on Redis Cluster (3 primaries + 3 replicas): what spreading the
  // sessions over three shards, and ioredis' Cluster client, cost or gain against one Redis.
  if (only("redis-cluster")) {
    const c = await startCluster("redis-cluster", { replicas: 3, redis: "cluster" });
    await measureKeyed3(c, {
      id: "nginx3-keyed-redis-cluster",
      label: "nginx + 3 replicas, exactly-once, Redis Cluster (3 primaries + 3 replicas)",
      redisStats: false,
    });
    await c.stop();
  }

  // The same path on Sentinel (a primary, 2 replicas, 3 Sentinels) with REDIS_WAIT_REPLICAS=1: what waiting
  // for one replica's acknowledgement after every increment costs against one Redis.
  if (only("redis-sentinel")) {
    const c = await startCluster("redis-sentinel", {
      replicas: 3,
      redis: "sentinel",
      appEnv: { REDIS_WAIT_REPLICAS: "1" },
    });
    await measureKeyed3(c, {
      id: "nginx3-keyed-sentinel-wait1",
      label: "nginx + 3 replicas, exactly-once, Sentinel + REDIS_WAIT_REPLICAS=1",
    });
    await c.stop();
  }

  if (only("memory")) {
    const c = await startCluster("memory", { replicas: 1, appEnv: { STORE: "memory", COUNTER: "session" } });
    const direct = (await c.cluster.replicas())[0]!.url;
    await measure(
      {
        ...base,
        id: "direct-memory",
        label: "1 replica direct, MemoryStore, GET /counter",
        group: "direct",
        replicas: 1,
        counter: "session",
        store: "memory",
        visitors: "returning",
        request: "GET /counter",
      },
      { url: direct, request: SEED_GET, visitors: "returning" },
      c.components,
      undefined,
      c.cluster,
    );
    await c.stop();
  }

  const notRun = { error: "not run (BENCH_ONLY)" };
  const profile = only("profile") ? await profileReplica("returning") : notRun;
  // The first request of a session takes express-session's whole path (goal 3): where that goes.
  const profileNewVisitors = only("profile") ? await profileReplica("new") : notRun;

  await baselines(nginx200, hello, 2);
  await hello.stop();
  cleanups.delete(hello.stop);
  await nginx200.stop();
  cleanups.delete(nginx200.stop);

  for (const s of results) {
    s.ratioB1 = s.result.rps / b1();
    s.ratioB0 = s.result.rps / b0();
  }
  const finished = new Date();
  const report = buildReport({ started, finished, load0, wrk, growth, profile, profileNewVisitors, paired });
  mkdirSync(OUT, { recursive: true });
  const stamp = fileStamp(started);
  const md = renderMarkdown(report);
  const svg = renderSvg(report);
  for (const name of [`bench-${stamp}`, "bench-latest"]) {
    writeFileSync(join(OUT, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(join(OUT, `${name}.md`), md);
    writeFileSync(join(OUT, `${name}.svg`), svg);
  }
  console.log(`\n${md}`);
  console.log(
    `wrote ${join(OUT, `bench-${stamp}.{json,md,svg}`)} (and bench-latest.*) in ` +
      `${((finished.getTime() - started.getTime()) / 1000).toFixed(0)} s`,
  );
}

async function measureGrowth(
  c: RunningCluster,
  d: Omit<Def, "id" | "label" | "group" | "replicas" | "visitors">,
): Promise<Record<string, unknown>> {
  const { cluster } = c;
  // One real visitor, so there is a session, a counter and an idempotency key to copy and weigh.
  await new Visitor(cluster.baseUrl()).increment(`bench-${Date.now()}`);
  const sample = await sampleSession(cluster);
  const sessBytes = Number(await cluster.redisCommand("MEMORY", "USAGE", sample.key, "SAMPLES", "0"));
  // 0 unless the session's count is still apart, as the layout before kept it.
  const countBytes = Number(await cluster.redisCommand("MEMORY", "USAGE", `{${sample.key}}:count`, "SAMPLES", "0"));
  const idemKey = (await cluster.redisCommand("SCAN", "0", "MATCH", "{sess:*}:idem", "COUNT", "10000"))
    .split("\n")
    .slice(1)
    .find((k) => k.endsWith("}:idem"));
  const idemBytes = idemKey ? Number(await cluster.redisCommand("MEMORY", "USAGE", idemKey, "SAMPLES", "0")) : null;

  // Memory per session: an empty Redis, then MEMORY_SESSIONS copies of a real session.
  await flushAll(cluster);
  await compactAof(cluster);
  const m0 = await usedMemory(cluster);
  await fillSessions(cluster, sample, MEMORY_SESSIONS);
  const m1 = await usedMemory(cluster);
  const perSession = (m1 - m0) / MEMORY_SESSIONS;
  step++;
  console.log(
    `[${String(step).padStart(2)}] Redis memory per stored session: ${perSession.toFixed(0)} bytes ` +
      `(used_memory +${((m1 - m0) / 1e6).toFixed(1)} MB for ${MEMORY_SESSIONS} sessions; MEMORY USAGE sess ` +
      `${sessBytes} B${countBytes ? ` + count ${countBytes} B` : ", the count inside"})`,
  );

  // The same sessions in other layouts, to show where the bytes go.
  const layouts: Record<string, { bytesPerSession: number; what: string }> = {};
  for (const [layout, what] of Object.entries(LAYOUTS)) {
    layouts[layout] = {
      bytesPerSession: Math.round(await weighLayout(cluster, layout as Layout, MEMORY_SESSIONS, sample)),
      what,
    };
  }
  step++;
  console.log(
    `[${String(step).padStart(2)}] the same sessions stored otherwise: ${Object.entries(layouts)
      .map(([k, v]) => `${k} ${v.bytesPerSession} B`)
      .join(", ")}`,
  );

  // p99 with few and with many stored sessions, alternating (few, many, few, many, few): on a
  // shared box two runs of the same thing differ by more than the 10% the goal allows, so the
  // figure is the median of the runs with many over the median of the runs with few.
  const spec = {
    url: cluster.baseUrl(),
    request: KEYED_POST,
    uniqueIdempotencyKey: true,
    visitors: "returning" as const,
  };
  const g = { ...d, group: "growth" as const, replicas: 3, visitors: "returning" as const };
  await cluster.scale(3);
  warmed.delete(cluster); // two of the three replicas were just started
  const small = async (round: number) => {
    await flushAll(cluster);
    await fillSessions(cluster, sample, GROWTH_SMALL);
    await compactAof(cluster);
    return measure(
      {
        ...g,
        id: `growth-small-${round}`,
        label: `nginx + 3, exactly-once, ${fmtCount(GROWTH_SMALL)} sessions stored (${round})`,
      },
      spec,
      c.components,
      cluster,
    );
  };
  let atLarge = { keys: 0, usedMemory: 0, bytesPerSession: 0 };
  const large = async (round: number) => {
    await flushAll(cluster);
    await compactAof(cluster);
    const mEmpty = await usedMemory(cluster);
    await fillSessions(cluster, sample, GROWTH_LARGE);
    await compactAof(cluster);
    const mLarge = await usedMemory(cluster);
    atLarge = {
      keys: await dbsize(cluster),
      usedMemory: mLarge,
      bytesPerSession: Math.round((mLarge - mEmpty) / GROWTH_LARGE),
    };
    return measure(
      {
        ...g,
        id: `growth-large-${round}`,
        label: `nginx + 3, exactly-once, ${fmtCount(GROWTH_LARGE)} sessions stored (${round})`,
      },
      spec,
      c.components,
      cluster,
    );
  };
  const smalls = [await small(1)];
  const larges: ScenarioResult[] = [];
  for (let round = 1; round <= GROWTH_PAIRS; round++) {
    larges.push(await large(round));
    smalls.push(await small(round + 1));
  }
  await flushAll(cluster);
  const p99 = (xs: ScenarioResult[]) => xs.map((x) => x.result.latencyMs.p99);
  const rps = (xs: ScenarioResult[]) => xs.map((x) => x.result.rps);
  return {
    memory: {
      sessions: MEMORY_SESSIONS,
      usedMemoryBefore: m0,
      usedMemoryAfter: m1,
      bytesPerSession: Math.round(perSession),
      memoryUsage: { session: sessBytes, counter: countBytes, idempotencyKey: idemBytes },
      sessionValue: sample.session,
      sessionValueBytes: Buffer.byteLength(sample.session),
      counterValue: sample.counter ?? null,
      ttlSeconds: sample.ttl,
      layouts,
      atLarge: { sessions: GROWTH_LARGE, ...atLarge },
    },
    p99: {
      smallSessions: GROWTH_SMALL,
      largeSessions: GROWTH_LARGE,
      small: p99(smalls),
      large: p99(larges),
      ratio: median(p99(larges)) / median(p99(smalls)),
      rpsRatio: median(rps(larges)) / median(rps(smalls)),
    },
  };
}

function fmtCount(n: number): string {
  return n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n);
}

/** One replica under the exactly-once load with --cpu-prof; V8 writes the profile when it exits. */
async function profileReplica(
  visitors: VisitorMode,
): Promise<(ProfileSummary & { seconds: number; file: string }) | { error: string }> {
  const profDir = join(OUT, "profiles");
  mkdirSync(profDir, { recursive: true });
  const already = new Set(readdirSync(profDir));
  const c = await startCluster("profile", {
    replicas: 1,
    appEnv: { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` },
  });
  const direct = (await c.cluster.replicas())[0]!.url;
  const r = await loadRun(
    {
      url: direct,
      request: KEYED_POST,
      uniqueIdempotencyKey: true,
      visitors,
      connections: CONNECTIONS,
      seconds: SECONDS,
      warmupSeconds: WARMUP_FRESH,
    },
    c.components,
  );
  progress(`profile: 1 replica direct, exactly-once, ${visitors} visitors, --cpu-prof`, r);
  await c.stop();
  const file = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile") && !already.has(f));
  if (!file) return { error: "the replica wrote no .cpuprofile (did it exit cleanly?)" };
  // Keep the last two runs' profiles (returning and new visitors); each is megabytes.
  const old = readdirSync(profDir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .sort()
    .slice(0, -4);
  for (const f of old) rmSync(join(profDir, f), { force: true });
  // Only the measured 10 s: not the replica's start-up (module loading), the warm-up or its shutdown.
  const summary = summarizeProfile(join(profDir, file), 15, r.window);
  return { ...summary, seconds: SECONDS, file: join(profDir, file) };
}

function buildReport(x: {
  started: Date;
  finished: Date;
  load0: number[];
  wrk: WrkResult;
  growth: Record<string, unknown>;
  profile: unknown;
  profileNewVisitors: unknown;
  paired: PairedRound[];
}) {
  const byId = (id: string) => results.find((s) => s.id === id);
  const goal = byId("nginx3-keyed");
  const ceilingRun = byId("nginx3-hello");
  const g = x.growth as {
    memory?: { bytesPerSession: number };
    p99?: { ratio: number; small: number[]; large: number[] };
  };
  const directKeyed = byId("direct-keyed");
  const newVisitors = byId("nginx3-keyed-new");
  // B1's node CPU per request, the mean of its runs: what a bare Express request costs here.
  const b1NodeUs = mean(b1Runs.map((r) => ((r.cpuMs.node ?? Number.NaN) * 1000) / r.requests));
  const load = (s: ScenarioResult) => `load ${s.result.loadAverage1m.toFixed(1)}`;
  const viaNginx = results.filter((s) => s.group === "nginx" && !s.id.startsWith("nginx3-hello"));
  const cores = cpus().length;
  // The reference for goals 1 and 3: the exactly-once request served by hello-worlds behind this
  // nginx after one Redis round trip each (`shape`), what the cheapest Express app on a Redis path
  // serves here with this load generator. Undefined when its run had errors.
  const reference = (shape: ScenarioResult) => {
    if (shape.result.errors > 0 || shape.result.non2xx > 0) return undefined;
    const us = (k: string) => (shape.cpuUsPerReq[k] ?? Number.NaN).toFixed(0);
    const why =
      `${shape.result.rps.toFixed(0)} req/s; per request node ${us("node")}, nginx ${us("nginx")}, ` +
      `Redis ${us("redis")}, load generator ${us("loadgen")} µs`;
    return { rps: shape.result.rps, why };
  };
  // A goal and its reference in turns (takeTurns): each round's ratio, and their geometric mean.
  const inTurns = (f: (r: PairedRound) => number | undefined) => {
    const ratios = x.paired.map(f);
    if (!ratios.length || ratios.some((v) => v === undefined)) return undefined;
    const each = ratios as number[];
    return { ratio: geometricMean(each), each };
  };
  const turnsText = (t: { ratio: number; each: number[] }, unit: string) =>
    `; in ${t.each.length} rounds of ${PAIR_SECONDS} s taking turns with it: **${t.ratio.toFixed(2)}x ${unit}** ` +
    `(${t.each.map((v) => v.toFixed(2)).join(", ")})`;
  // A round whose goal run had errors or non-2xx answers gives no ratio (autocannon counts those in
  // req/s), and the goal is not met.
  const unclean = (run: "goal" | "goalNew") => x.paired.some((r) => !r[run].clean);
  const turns = inTurns((r) => (r.goal.clean ? r.goal.rps / r.ceiling.rps : undefined));
  const turnsNew = inTurns((r) => (r.goalNew.clean ? r.goalNew.rps / r.b1.rps : undefined));
  const turnsReference = inTurns((r) => (r.shape.clean ? r.shape.rps / r.ceiling.rps : undefined));
  const turnsReferenceNew = inTurns((r) => (r.shapeNew.clean ? r.shapeNew.rps / r.b1.rps : undefined));
  const shape = byId("nginx3-hello-keyed");
  const shapeNew = byId("nginx3-hello-keyed-new");
  const goalReference = shape && reference(shape);
  const newReference = shapeNew && reference(shapeNew);
  // The app does more per request than the reference; where it served more, the run was too noisy to read.
  const beaten = (t: { each: number[] } | undefined, app: { each: number[] } | undefined) =>
    t && app && app.each.some((v, i) => v > t.each[i]!)
      ? "; **the app beat its reference in a round: too noisy to read**"
      : "";
  const socketErrors = viaNginx.reduce((n, s) => n + s.result.errors, 0);
  const goals = [
    goal &&
      ceilingRun && {
        goal: "exactly-once counter, nginx + 3 replicas, c=50: >= 0.70x the ceiling (nginx + 3 bare hello-worlds)",
        measured:
          `${(goal.result.rps / ceilingRun.result.rps).toFixed(2)}x (${goal.result.rps.toFixed(0)} vs ` +
          `${ceilingRun.result.rps.toFixed(0)} req/s; ${goal.ratioB1.toFixed(2)}x B1; ${load(goal)})` +
          (turns ? turnsText(turns, "the ceiling") : "") +
          (unclean("goal") ? "; **a round in turns had errors or non-2xx answers**" : ""),
        met: !unclean("goal") && (turns?.ratio ?? goal.result.rps / ceilingRun.result.rps) >= 0.7,
      },
    goal && {
      goal: "... with p99 <= 20 ms",
      measured: `${goal.result.latencyMs.p99.toFixed(1)} ms`,
      met: goal.result.latencyMs.p99 <= 20,
    },
    goal && {
      goal: "... with zero errors",
      measured: `${goal.result.errors} errors, ${goal.result.non2xx} non-2xx`,
      met: goal.result.errors === 0 && goal.result.non2xx === 0,
    },
    goalReference &&
      ceilingRun && {
        goal: REFERENCE_GOAL,
        measured:
          `${(goalReference.rps / ceilingRun.result.rps).toFixed(2)}x the ceiling (${goalReference.why})` +
          (turnsReference ? turnsText(turnsReference, "the ceiling") : "") +
          beaten(turnsReference, turns),
        met: null,
      },
    viaNginx.length > 0 && {
      goal: "no socket errors through nginx, in any scenario",
      measured:
        `${socketErrors} in ${viaNginx.length} scenarios` +
        (socketErrors
          ? ` (${viaNginx
              .filter((s) => s.result.errors)
              .map((s) => `${s.id}: ${JSON.stringify(s.result.errorKinds)}`)
              .join("; ")})`
          : ""),
      met: socketErrors === 0,
    },
    directKeyed && {
      goal: "node CPU per exactly-once request, 1 replica direct: <= 2x B1's",
      measured:
        `${(directKeyed.cpuUsPerReq.node! / b1NodeUs).toFixed(2)}x (${directKeyed.cpuUsPerReq.node!.toFixed(0)} vs ` +
        `${b1NodeUs.toFixed(0)} µs; ${load(directKeyed)})`,
      met: directKeyed.cpuUsPerReq.node! <= 2 * b1NodeUs,
    },
    newVisitors && {
      goal: "exactly-once, new visitors, nginx + 3 replicas: >= 0.25x B1",
      measured:
        `${newVisitors.ratioB1.toFixed(2)}x B1 (${newVisitors.result.rps.toFixed(0)} req/s; ${load(newVisitors)})` +
        (turnsNew ? turnsText(turnsNew, "B1") : "") +
        (unclean("goalNew") ? "; **a round in turns had errors or non-2xx answers**" : ""),
      met: !unclean("goalNew") && (turnsNew?.ratio ?? newVisitors.ratioB1) >= 0.25,
    },
    newReference && {
      goal: REFERENCE_GOAL,
      measured:
        `${(newReference.rps / b1()).toFixed(2)}x B1 (${newReference.why})` +
        (turnsReferenceNew ? turnsText(turnsReferenceNew, "B1") : "") +
        beaten(turnsReferenceNew, turnsNew),
      met: null,
    },
    g.memory && {
      goal: "Redis holds a session in <= 200 bytes",
      measured: `${g.memory.bytesPerSession} bytes`,
      met: g.memory.bytesPerSession <= 200,
    },
    g.p99 && {
      goal: `p99 with ${fmtCount(GROWTH_LARGE)} stored sessions within 10% of p99 with ${fmtCount(GROWTH_SMALL)}`,
      measured:
        `median ${median(g.p99.large).toFixed(1)} ms (${g.p99.large.map((v) => v.toFixed(1)).join(", ")}) vs ` +
        `${median(g.p99.small).toFixed(1)} ms (${g.p99.small.map((v) => v.toFixed(1)).join(", ")}): ` +
        `${g.p99.ratio >= 1 ? "+" : ""}${((g.p99.ratio - 1) * 100).toFixed(0)}%`,
      met: g.p99.ratio <= 1.1,
    },
  ].filter((g) => g !== false && g !== undefined && g !== null);
  // The goal's CPU budget: every part of the path runs on the same cores, so the summed CPU
  // per request bounds the throughput no matter how well the replicas scale.
  const budget = goal && {
    usPerRequest: goal.cpuUsPerReq,
    totalUs: Object.values(goal.cpuUsPerReq).reduce((a, b) => a + b, 0),
    withoutLoadgenUs: Object.entries(goal.cpuUsPerReq)
      .filter(([k]) => k !== "loadgen")
      .reduce((a, [, v]) => a + v, 0),
    cores,
  };
  const ceiling = budget && {
    ...budget,
    maxRps: (cores * 1e6) / budget.totalUs,
    maxRatioB1: (cores * 1e6) / budget.totalUs / b1(),
    maxRatioB1WithoutLoadgen: (cores * 1e6) / budget.withoutLoadgenUs / b1(),
  };
  return {
    cpuBudget: ceiling,
    meta: {
      date: x.started.toISOString(),
      seconds: Math.round((x.finished.getTime() - x.started.getTime()) / 1000),
      quick: QUICK,
      connections: CONNECTIONS,
      secondsPerScenario: SECONDS,
      warmupSeconds: WARMUP,
      warmupFreshSeconds: WARMUP_FRESH,
      loadAverage: { start: x.load0, end: loadavg() },
      machine: machine(),
    },
    baselines: {
      b0: { rps: b0(), runs: b0Runs },
      b1: { rps: b1(), runs: b1Runs },
      wrk: x.wrk,
      wrkOverAutocannon: "missing" in x.wrk ? null : x.wrk.rps / b0Runs[0]!.rps,
    },
    scenarios: results,
    growth: x.growth,
    profile: x.profile,
    profileNewVisitors: x.profileNewVisitors,
    paired: x.paired,
    references: {
      exactlyOnce: goalReference && { rps: goalReference.rps, inTurns: turnsReference },
      newVisitors: newReference && { rps: newReference.rps, inTurns: turnsReferenceNew },
    },
    goals,
  };
}
export type Report = ReturnType<typeof buildReport>;

try {
  await main();
} finally {
  await cleanupAll();
}
