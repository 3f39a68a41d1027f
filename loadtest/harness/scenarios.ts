// The named scenarios `make verify` runs: what cluster each needs, what load, which faults
// (driven only through the Cluster interface), and what each one promises.
import { setTimeout as sleep } from "node:timers/promises";
import type { Cluster, RedisTopology, ReplicaInfo, Signal } from "../../infra/cluster/cluster.ts";
import type { ClusterKind } from "../../infra/cluster/open.ts";
import type { TaskTimeline } from "../../infra/cluster/swarm-cluster.ts";
import type { Expectations } from "./checker.ts";

export type FaultContext = {
  cluster: Cluster;
  /** How the cluster's Redis runs. */
  redis: RedisTopology;
  /** Resolves when this fraction of the planned load duration has passed. */
  at(fraction: number): Promise<void>;
  /**
   * Records a fault event on the timeline: "down" just before sending the signal, "up" once
   * the target is ready again.
   */
  mark(target: string, state: "down" | "up" | "note", label: string): void;
  /**
   * Resolves once the load balancer routes requests to this replica (its replicaId) again,
   * bounded: nginx keeps a replica it saw fail out of rotation for fail_timeout even after it is ready.
   */
  inRotation(replicaId: string): Promise<boolean>;
};

export type Scenario = {
  name: string;
  /** One line for the verdict table and the report. */
  title: string;
  /** Extra environment for every replica. */
  appEnv?: Record<string, string>;
  /** The counter this scenario must run with, whatever COUNTER says (memory-store: session). */
  counter?: "atomic" | "session";
  /** Requests in flight per session, unless the run overrides it. */
  concurrency?: number;
  expect: Expectations;
  /** Set for a negative control: the scenario passes when the checker finds a violation. */
  control?: string;
  /** Needs a Redis that can fail over (REDIS=sentinel or cluster); refused with REDIS=single. */
  needsFailover?: boolean;
  /**
   * Without WAIT (REDIS_WAIT_REPLICAS=0) a failover may lose acknowledged increments: then the
   * loss is reported but does not fail the run. With WAIT >= 1 it must be 0.
   */
  lossWithoutWait?: boolean;
  faults?: (ctx: FaultContext) => Promise<void>;
  /** The cluster kinds it applies to (default: every one); orchestrator-only scenarios name theirs. */
  kinds?: ClusterKind[];
};

/** A cluster whose orchestrator rolls its tasks (SwarmCluster). */
type Orchestrated = Cluster & {
  rollingUpdate(): Promise<void>;
  /** Epoch ms at which the slot's current task reached each step of its start. */
  taskTimeline(index: number): Promise<TaskTimeline>;
};

function orchestrated(c: Cluster): Orchestrated {
  if (!("rollingUpdate" in c)) throw new Error(`this scenario needs an orchestrator (CLUSTER=swarm), not ${c.kind}`);
  return c as Orchestrated;
}

/**
 * Takes the primary out (`cut` does it, given its name) and waits for another to serve writes;
 * marks both on the timeline's redis lane. Resolves with the old primary's name.
 */
async function failover(ctx: FaultContext, how: string, cut: (primary: string) => Promise<void>): Promise<string> {
  const primary = await ctx.cluster.waitForPrimary({ timeoutMs: 15_000 });
  ctx.mark("redis", "down", `${how} ${primary} (primary)`);
  await cut(primary);
  const next = await ctx.cluster.waitForPrimary({ exclude: primary, timeoutMs: 30_000 });
  ctx.mark("redis", "up", `${next} promoted`);
  return primary;
}

async function nth(cluster: Cluster, i: number): Promise<ReplicaInfo> {
  const all = await cluster.replicas();
  const r = all[i % all.length];
  if (!r) throw new Error("the cluster has no replicas");
  return r;
}

async function stopAndStart(
  ctx: FaultContext,
  i: number,
  signal: Signal,
  restartAt: number | undefined,
): Promise<void> {
  const r = await nth(ctx.cluster, i);
  ctx.mark(r.replicaId, "down", `${signal} ${r.name}`);
  await ctx.cluster.killReplica(r.index, signal);
  if (restartAt !== undefined) await ctx.at(restartAt);
  await ctx.cluster.startReplica(r.index);
  ctx.mark(r.replicaId, "up", `${r.name} ready`);
}

export const scenarios: Scenario[] = [
  {
    name: "steady",
    title: "no faults: the baseline every other scenario is compared with",
    expect: { noFailures: true },
  },
  {
    name: "kill-replica",
    title: "SIGKILL one replica mid-run, start it again later",
    expect: {},
    faults: async (ctx) => {
      await ctx.at(0.3);
      await stopAndStart(ctx, 1, "SIGKILL", 0.6);
    },
  },
  {
    name: "drain-replica",
    title: "SIGTERM one replica mid-run (graceful drain), start it again later",
    expect: { noFailures: true },
    faults: async (ctx) => {
      await ctx.at(0.3);
      await stopAndStart(ctx, 1, "SIGTERM", 0.6);
    },
  },
  {
    name: "rolling-restart",
    title: "SIGTERM and restart every replica in turn, under load",
    expect: { noFailures: true },
    faults: async (ctx) => {
      const n = (await ctx.cluster.replicas()).length;
      for (let i = 0; i < n; i++) {
        await ctx.at(0.15 + (0.6 * i) / n);
        await stopAndStart(ctx, i, "SIGTERM", undefined);
        // As an orchestrator would: the next replica goes down only once this one takes
        // traffic again, or the load balancer is left with fewer replicas than planned.
        await ctx.inRotation((await nth(ctx.cluster, i)).replicaId);
      }
    },
  },
  {
    name: "restart-all",
    title: "every replica down at once (SIGTERM), then up again",
    expect: {},
    faults: async (ctx) => {
      await ctx.at(0.3);
      const all = await ctx.cluster.replicas();
      for (const r of all) ctx.mark(r.replicaId, "down", `SIGTERM ${r.name}`);
      await ctx.cluster.restartReplicas();
      for (const r of all) ctx.mark(r.replicaId, "up", `${r.name} ready`);
    },
  },
  {
    name: "redis-restart",
    title: "SIGTERM Redis, start it; SIGKILL Redis (AOF on), start it; all under load",
    expect: { fastFailuresMs: 2000 },
    faults: async (ctx) => {
      for (const [signal, downAt, upAt] of [
        ["SIGTERM", 0.2, 0.35],
        ["SIGKILL", 0.55, 0.7],
      ] as const) {
        await ctx.at(downAt);
        ctx.mark("redis", "down", `${signal} redis`);
        await ctx.cluster.stopRedis(signal);
        await ctx.at(upAt);
        await ctx.cluster.startRedis();
        ctx.mark("redis", "up", "redis ready, replicas reconnected");
      }
    },
  },
  {
    name: "redis-failover",
    title: "SIGKILL the Redis primary mid-run, twice (fail over, and again): lost, doubled, how long writes stop",
    needsFailover: true,
    lossWithoutWait: true,
    expect: { failovers: true },
    faults: async (ctx) => {
      for (const at of [0.25, 0.6]) {
        await ctx.at(at);
        const old = await failover(ctx, "SIGKILL", (p) => ctx.cluster.killRedisNode(p, "SIGKILL"));
        // Back with its AOF, it rejoins as a replica: the second failover again has two candidates.
        await ctx.cluster.startRedisNode(old);
        ctx.mark("redis", "note", `${old} restarted (rejoins as a replica)`);
      }
    },
  },
  {
    name: "redis-partition",
    title:
      "the Redis primary stops answering (CLIENT PAUSE ALL; Redis Cluster: SIGSTOP) without dying: failover while " +
      "it still holds clients",
    needsFailover: true,
    lossWithoutWait: true,
    expect: { failovers: true },
    faults: async (ctx) => {
      await ctx.at(0.3);
      if (ctx.redis === "cluster") {
        // Redis Cluster fails a primary over only when its peers stop hearing it on the cluster bus,
        // which CLIENT PAUSE leaves answering: the node is frozen instead (SIGSTOP), past
        // cluster-node-timeout, so its replica takes over; it then wakes up (SIGCONT), runs what its
        // clients queued, learns it was replaced and rejoins as a replica of the new primary.
        const pause = ctx.cluster.pauseRedisNode?.bind(ctx.cluster);
        if (!pause) throw new Error(`redis-partition on Redis Cluster needs pauseRedisNode (${ctx.cluster.kind})`);
        let resumed: Promise<void> = Promise.resolve();
        const old = await failover(ctx, "SIGSTOP 6 s", async (primary) => {
          resumed = pause(primary, 6000);
          // A rejection surfaces at the await below, not as an unhandled one meanwhile.
          resumed.catch(() => {});
        });
        await resumed;
        ctx.mark("redis", "note", `${old} resumed (SIGCONT; rejoins as a replica)`);
        return;
      }
      // Its clients (the app, the Sentinels' PINGs) wait; the Sentinels promote a replica. When the
      // pause ends the old primary runs what it queued and is then demoted: those writes, which no
      // client saw acknowledged, are discarded; their keys' retries went to the new primary.
      await failover(ctx, "CLIENT PAUSE 5 s", async () => {
        await ctx.cluster.redisCommand("CLIENT", "PAUSE", "5000", "ALL");
      });
    },
  },
  {
    name: "memory-store",
    title: "negative control: the seed's MemoryStore behind round-robin",
    appEnv: { STORE: "memory" },
    counter: "session",
    expect: {},
    control: "each replica keeps its own sessions, so counts reset and sessions change: the checker must report it",
  },
  {
    name: "concurrent-session",
    title: "several requests in flight on each session (several tabs)",
    concurrency: 5,
    expect: { noFailures: true },
  },
];

// Scenarios only an orchestrator has: it replaces tasks itself, and nginx must follow alone.
scenarios.push(
  {
    name: "rolling-update",
    title: "docker service update --force of the app under load: every task replaced, start-first",
    kinds: ["swarm"],
    // Requests, not attempts: nginx < 1.27.3 follows the tasks by reloading (nginx-entrypoint.sh),
    // and a reload closes idle client keep-alive connections; a request racing that close is
    // reset unanswered, and the user resends it with its Idempotency-Key. The check reports them.
    expect: { noFailedRequests: true },
    faults: async (ctx) => {
      await ctx.at(0.1);
      const all = await ctx.cluster.replicas();
      for (const r of all) ctx.mark(r.replicaId, "down", `rolling update of ${r.name}`);
      await orchestrated(ctx.cluster).rollingUpdate();
      for (const r of all) ctx.mark(r.replicaId, "up", `${r.name} replaced and routed`);
    },
  },
  {
    name: "task-restart",
    title: "SIGKILL one task; Swarm starts a new one in its slot, nginx routes to it by itself",
    kinds: ["swarm"],
    expect: {},
    faults: async (ctx) => {
      await ctx.at(0.2);
      const r = await nth(ctx.cluster, 1);
      ctx.mark(r.replicaId, "down", `SIGKILL ${r.name} (no start: Swarm replaces it)`);
      const killedAt = Date.now();
      await ctx.cluster.killReplica(r.index, "SIGKILL");
      // The new task keeps the hostname (X-Replica) of its slot; nobody calls startReplica.
      // Fresh connections, one at a time, until one is answered by it: 120 s at most.
      let back = false;
      for (let i = 0; i < 2400 && !back && Date.now() - killedAt < 120_000; i++) {
        const res = await fetch(`${ctx.cluster.baseUrl()}/api/session`, { signal: AbortSignal.timeout(2000) }).catch(
          () => undefined,
        );
        await res?.body?.cancel();
        back = res?.headers.get("x-replica") === r.replicaId;
        if (!back) await sleep(50);
      }
      const routedAt = Date.now();
      const s = (ms: number | undefined, from = killedAt) =>
        ms === undefined ? "?" : `${((ms - from) / 1000).toFixed(1)} s`;
      if (!back) throw new Error(`${r.name}'s new task took no traffic within ${s(routedAt)} of the SIGKILL`);
      const t = await orchestrated(ctx.cluster).taskTimeline(r.index);
      // From the container's death (its FinishedAt), not from the kill command: `docker kill`
      // through the CLI took seconds on a loaded host, and the goal is from the task's death.
      const died = t.killed ?? killedAt;
      ctx.mark(
        r.replicaId,
        "up",
        `${r.name}'s new task takes traffic ${s(routedAt, died)} after its container died (kill command ` +
          `${s(killedAt, died)}; task created ${s(t.created, died)}, container started ${s(t.started, died)}, ` +
          `app listening ${s(t.listening, died)}, healthy so in DNS ${s(t.healthy, died)}, ` +
          `nginx reloaded ${s(t.reloaded, died)})`,
      );
    },
  },
);

export function findScenario(name: string): Scenario {
  const s = scenarios.find((x) => x.name === name);
  if (!s) throw new Error(`no scenario "${name}"; choose one of: ${scenarios.map((x) => x.name).join(", ")}`);
  return s;
}
