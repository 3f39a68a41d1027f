// Runs one scenario end to end: a fresh cluster (through createCluster, so local processes
// or Compose), sessions, load and faults side by side, the final reads, a health check, the
// checker's verdict. Prints progress while it runs.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Cluster, RedisTopology } from "../../infra/cluster/cluster.ts";
import type { SwarmCluster } from "../../infra/cluster/swarm-cluster.ts";
import { createCluster, type ClusterKind } from "../../infra/cluster/open.ts";
import { LOAD_APP_ENV } from "../client/load-env.ts";
import { Visitor } from "../client/visitor.ts";
import { check, type Verdict } from "./checker.ts";
import type { FaultEvent, History } from "./history.ts";
import { Load } from "./virtual-users.ts";
import type { FaultContext, Scenario } from "./scenarios.ts";

export type RunOptions = {
  kind: ClusterKind;
  /** How Redis runs in the cluster this starts (default single). */
  redis?: RedisTopology;
  counter: "atomic" | "session";
  users: number;
  durationMs: number;
  /** Send Idempotency-Keys (default: with COUNTER=atomic). */
  keyed?: boolean;
  /** Overrides the scenario's per-session concurrency. */
  concurrency?: number;
  /** Increments per user at most (default: unbounded within the duration, capped at 100000). */
  opsPerUser?: number;
  replicas?: number;
  /** REDIS_WAIT_REPLICAS for the app (default 0). */
  waitReplicas?: number;
  /** Run against this cluster instead of starting one; it is left running. */
  cluster?: Cluster;
  /** Progress lines; default console.log. */
  log?: (line: string) => void;
  /** Seconds between progress lines (0: none). */
  progressEverySeconds?: number;
};

export type ScenarioResult = {
  scenario: string;
  title: string;
  control: string | undefined;
  kind: ClusterKind;
  counter: "atomic" | "session";
  users: number;
  concurrency: number;
  durationMs: number;
  history: History;
  verdict: Verdict;
  /** The scenario's verdict: all checks held, or for a control, the violation was caught. */
  pass: boolean;
  /** Increments acknowledged per second during the load phase. */
  throughput: number;
};

/** Clusters this process started and has not stopped yet, for a Ctrl-C handler to clean up. */
export const activeClusters = new Set<Cluster>();

const fmt = (ms: number) => `${(ms / 1000).toFixed(1).padStart(5)}s`;

async function endHealth(cluster: Cluster): Promise<{ ok: boolean; detail: string }> {
  const problems: string[] = [];
  const replicas = await cluster.replicas();
  const stopped = replicas.filter((r) => !r.running).map((r) => r.name);
  if (stopped.length) problems.push(`not running: ${stopped.join(", ")}`);
  const pong = await cluster.redisCommand("PING").catch((err: Error) => err.message);
  if (pong !== "PONG") problems.push(`redis: ${pong}`);
  // Through the load balancer, as a user would: a read, once per replica so each is asked.
  const statuses = await Promise.all(
    replicas.map(() =>
      new Visitor(cluster.baseUrl()).get("/api/session", { timeoutMs: 5000 }).then(
        (r) => r.status,
        () => 0,
      ),
    ),
  );
  if (statuses.some((s) => s !== 200)) problems.push(`load balancer answered ${statuses.join(", ")}`);
  return problems.length
    ? { ok: false, detail: problems.join("; ") }
    : { ok: true, detail: `${replicas.length} replicas running, redis up, load balancer answers` };
}

/**
 * Waits until round-robin reaches every replica: nginx keeps a replica it saw fail out of
 * rotation for fail_timeout (2 s) even after it is ready again, which matters when runs
 * follow each other on one cluster. Read-only probes without a cookie create nothing.
 */
export async function inRotation(cluster: Cluster, names: string[], timeoutMs = 10_000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  const seen = new Set<string>();
  while (Date.now() < until) {
    seen.clear();
    const probes = (await cluster.replicas()).length * 2;
    for (let i = 0; i < probes; i++) {
      const r = await new Visitor(cluster.baseUrl()).get("/api/session", { timeoutMs: 2000 }).catch(() => undefined);
      if (r?.replica) seen.add(r.replica);
    }
    if (names.every((n) => seen.has(n))) return true;
    await sleep(200);
  }
  return false;
}

async function reloadsToFollowTasks(c: Cluster): Promise<boolean> {
  const f = (c as Partial<Pick<SwarmCluster, "followsTasksByReload">>).followsTasksByReload;
  return f ? f.call(c) : false;
}

export async function runScenario(s: Scenario, o: RunOptions): Promise<ScenarioResult> {
  const log = o.log ?? ((line: string) => console.log(line));
  const counter = s.counter ?? o.counter;
  const concurrency = o.concurrency ?? s.concurrency ?? 1;
  const keyed = counter === "atomic" && (o.keyed ?? true);
  const own = o.cluster === undefined;
  const redis = o.redis ?? "single";
  if (s.needsFailover && redis === "single" && own)
    throw new Error(`scenario ${s.name} needs a Redis that fails over: REDIS=sentinel or REDIS=cluster`);
  const wait = o.waitReplicas ?? 0;
  const expect = { ...s.expect, lossAllowed: s.lossWithoutWait === true && wait === 0 };
  const cluster =
    o.cluster ??
    createCluster(o.kind, {
      replicas: o.replicas ?? 3,
      port: 0,
      appEnv: {
        ...LOAD_APP_ENV,
        COUNTER: counter,
        ...(wait > 0 ? { REDIS_WAIT_REPLICAS: String(wait) } : {}),
        ...s.appEnv,
      },
      redis,
      // Every simulated user is 127.0.0.1: nginx's per-client limits would refuse the load itself.
      clientLimits: false,
      dir: mkdtempSync(join(tmpdir(), `verify-${s.name}-`)),
    });
  const tag = `[${s.name}]`;
  const cleanup: (() => void)[] = [];
  try {
    if (own) {
      activeClusters.add(cluster);
      const redisNote = redis !== "single" || wait > 0 ? `REDIS=${redis}, REDIS_WAIT_REPLICAS=${wait}, ` : "";
      log(
        `${tag} starting a ${o.kind} cluster (${redisNote}COUNTER=${counter}${
          s.appEnv
            ? `, ${Object.entries(s.appEnv)
                .map(([k, v]) => `${k}=${v}`)
                .join(", ")}`
            : ""
        })`,
      );
      await cluster.start();
    }
    // The ids responses carry in X-Replica, which the checker and the timeline go by.
    const replicas = (await cluster.replicas()).map((r) => r.replicaId);
    if (!(await inRotation(cluster, replicas)))
      log(`${tag} not every replica answers through the load balancer yet; starting anyway`);
    const origin = performance.now();
    const clock = () => performance.now() - origin;
    const load = new Load({
      baseUrl: cluster.baseUrl(),
      users: o.users,
      concurrency,
      keyed,
      opsPerUser: o.opsPerUser ?? 100_000,
      clock,
    });
    const events: FaultEvent[] = [];
    log(
      `${tag} ${o.users} users, ${concurrency} in flight each, ` +
        `${keyed ? "Idempotency-Key on every increment" : "no keys"}, ${(o.durationMs / 1000).toFixed(0)} s`,
    );
    const started = await load.startSessions();
    if (started < o.users) log(`${tag} ${o.users - started} users could not start a session`);

    const loadStart = clock();
    // Cancels every pending at() when the run ends, so no timer outlives it.
    const done = new AbortController();
    cleanup.push(() => done.abort());
    const ctx: FaultContext = {
      cluster,
      // A cluster passed in says its own topology when it can (LocalCluster); o.redis otherwise.
      redis: own ? redis : ((cluster as { redisTopology?: RedisTopology }).redisTopology ?? redis),
      at: async (fraction) => {
        const wait = loadStart + fraction * o.durationMs - clock();
        if (wait > 0) await sleep(wait, undefined, { signal: done.signal });
      },
      inRotation: (name) => inRotation(cluster, [name]),
      mark: (target, state, label) => {
        events.push({ t: clock(), target, state, label });
        if (label) log(`${tag} ${fmt(clock())}  ${state === "down" ? "▼" : state === "up" ? "▲" : "•"} ${label}`);
      },
    };

    let last = { t: clock(), ok: 0 };
    const every = (o.progressEverySeconds ?? 1) * 1000;
    const ticker =
      every > 0
        ? setInterval(() => {
            const st = load.stats;
            const now = clock();
            const rate = ((st.ok - last.ok) * 1000) / Math.max(1, now - last.t);
            last = { t: now, ok: st.ok };
            const reps = [...st.byReplica]
              .sort()
              .map(([r, n]) => `${r} ${n}`)
              .join("  ");
            log(
              `${tag} ${fmt(now)}  ok ${st.ok}  failed ${st.failed}  indeterminate ${st.indeterminate}  ` +
                `${Math.round(rate)}/s  in flight ${st.inFlight}  | ${reps}`,
            );
          }, every)
        : undefined;
    if (ticker) cleanup.push(() => clearInterval(ticker));

    const running = load.run();
    let faultError: unknown;
    const faults = (s.faults?.(ctx) ?? Promise.resolve()).catch((err: unknown) => {
      faultError = err;
    });
    // The load covers the planned duration (or ends early once every user has sent opsPerUser
    // increments) and every fault plus a little recovery after it, bounded so a stuck fault
    // cannot keep it going forever.
    await Promise.race([ctx.at(1), running]);
    const tail = s.faults ? Math.min(2000, o.durationMs * 0.15) : 0;
    await Promise.race([faults.then(() => sleep(tail)), sleep(120_000, undefined, { ref: false })]);
    load.stop();
    await running;
    const loadEnd = clock();
    if (ticker) clearInterval(ticker);
    await Promise.race([faults, sleep(60_000, undefined, { ref: false })]);
    if (faultError) log(`${tag} the fault script failed: ${(faultError as Error).message}`);

    await load.readFinals();
    const health = await endHealth(cluster);
    if (faultError) {
      health.ok = false;
      health.detail = `fault script failed: ${(faultError as Error).message}; ${health.detail}`;
    }
    const history: History = {
      scenario: s.name,
      keyed,
      users: o.users,
      concurrency,
      replicas,
      loadStart,
      loadEnd,
      ops: load.ops,
      events,
      endHealth: health,
    };
    // On Swarm with nginx < 1.27.3, nginx follows a replaced task by reloading, and a reload
    // closes idle client keep-alive connections: a POST racing that close is reset unanswered,
    // and its user resends it with its Idempotency-Key (as in rolling-update). There a drain's
    // promise holds for requests: every increment acknowledged, and only attempts whose
    // connection closed unanswered resent (reported by reason); an answered 503 or 502 still
    // fails it. A scenario without faults (no task replaced, no reload) keeps the strict promise.
    if (expect.noFailures && s.faults && keyed && (await reloadsToFollowTasks(cluster))) {
      expect.noFailures = false;
      expect.noFailedRequests = true;
      expect.resendOnlyClosedConnections = true;
      log(`${tag} nginx follows the tasks by reloading: "no failures" counts requests, not attempts`);
    }
    const verdict = check(history, expect);
    return {
      scenario: s.name,
      title: s.title,
      control: s.control,
      kind: cluster.kind,
      counter,
      users: o.users,
      concurrency,
      durationMs: o.durationMs,
      history,
      verdict,
      pass: s.control ? !verdict.consistent : verdict.ok,
      throughput: (verdict.totals.acknowledged * 1000) / Math.max(1, loadEnd - loadStart),
    };
  } finally {
    for (const f of cleanup) f();
    if (own) {
      await cluster.stop().catch((err: Error) => log(`${tag} could not stop the cluster: ${err.message}`));
      activeClusters.delete(cluster);
    }
  }
}
