// Behaviour every Cluster implementation must show, through the load balancer only.
// Local processes and Docker Compose both run this same suite.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Cluster, ClusterOptions } from "../infra/cluster/cluster.ts";
import { waitFor } from "../infra/cluster/wait.ts";
import { LOAD_APP_ENV } from "../loadtest/client/load-env.ts";
import { Visitor } from "../loadtest/client/visitor.ts";

export type ClusterFactory = (opts: ClusterOptions) => Promise<Cluster> | Cluster;

async function counts(v: Visitor, n: number): Promise<{ counts: number[]; replicas: string[]; statuses: number[] }> {
  const out = { counts: [] as number[], replicas: [] as string[], statuses: [] as number[] };
  for (let i = 0; i < n; i++) {
    const r = await v.get("/counter");
    out.statuses.push(r.status);
    if (r.status === 200) out.counts.push(Number(r.text.replace("count is ", "")));
    if (r.replica) out.replicas.push(r.replica);
  }
  return out;
}

/**
 * Resolves once Redis has handed its AOF buffer to the kernel (INFO persistence: aof_buffer_length:0).
 * With appendfsync everysec an acknowledged write is not always there yet: while the previous
 * second's background fsync still runs (a busy disk), Redis postpones the write(2) for up to 2 s
 * and answers clients meanwhile, so a SIGKILL then loses it. A SIGKILL test that expects the
 * count back waits for this first; what it tests is the restart, not Redis's fsync policy.
 */
async function aofWritten(cluster: Cluster): Promise<void> {
  await waitFor(
    "Redis to write its AOF buffer",
    async () => /^aof_buffer_length:0\r?$/m.test(await cluster.redisCommand("INFO", "persistence")),
    10_000,
    20,
  );
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

export function clusterScenarios(label: string, make: ClusterFactory, timeouts = { start: 120_000 }): void {
  describe(`${label}: a cluster of 3 replicas sharing sessions through Redis`, () => {
    let cluster: Cluster;
    beforeAll(async () => {
      // Load from one address (127.0.0.1), with thousands of keys on a few sessions, is the point
      // of several scenarios: no per-client limit, no new-session limit, no key cap.
      cluster = await make({ replicas: 3, port: 0, clientLimits: false, appEnv: { ...LOAD_APP_ENV } });
      await cluster.start();
    }, timeouts.start);
    afterAll(async () => {
      await cluster?.stop();
    }, timeouts.start);

    it("spreads 30 requests round-robin over all 3 replicas", async () => {
      const seen = new Map<string, number>();
      for (let i = 0; i < 30; i++) {
        const r = await new Visitor(cluster.baseUrl()).get("/api/session");
        expect(r.status).toBe(200);
        seen.set(r.replica!, (seen.get(r.replica!) ?? 0) + 1);
      }
      expect(seen.size).toBe(3);
      for (const n of seen.values()) expect(n).toBeGreaterThanOrEqual(5);
    });

    it("counts 1..20 without gaps for one session served by every replica", async () => {
      const v = new Visitor(cluster.baseUrl());
      const r = await counts(v, 20);
      expect(r.counts).toEqual(range(1, 20));
      expect(new Set(r.replicas).size).toBe(3);
    });

    it("keeps the count when a replica is SIGKILLed mid-stream, and the replica rejoins when started", async () => {
      const v = new Visitor(cluster.baseUrl());
      expect((await counts(v, 5)).counts).toEqual(range(1, 5));
      await cluster.killReplica(2, "SIGKILL");
      const [victim] = (await cluster.replicas()).filter((x) => x.index === 2);
      const during = await counts(v, 10);
      expect(during.statuses.every((s) => s === 200)).toBe(true);
      expect(during.counts).toEqual(range(6, 15));
      expect(during.replicas).not.toContain(victim!.replicaId);
      await cluster.startReplica(2);
      // nginx skips a failed replica for fail_timeout (2 s), then tries it again.
      const after: string[] = [];
      let expected = 16;
      const until = Date.now() + 10_000;
      while (!after.includes(victim!.replicaId) && Date.now() < until) {
        const r = await v.get("/counter");
        expect(r.text).toBe(`count is ${expected++}`);
        after.push(r.replica!);
        await sleep(100);
      }
      expect(after).toContain(victim!.replicaId);
    });

    it("fails no request while a replica drains on SIGTERM", async () => {
      const visitors = Array.from({ length: 8 }, () => new Visitor(cluster.baseUrl()));
      const statuses: number[] = [];
      let stop = false;
      const load = visitors.map(async (v, i) => {
        for (let n = 0; !stop && n < 2000; n++) {
          // Half the visitors use the seed's GET, half the keyed POST (both retried safely).
          const r = i % 2 === 0 ? await v.get("/counter") : await v.increment(randomUUID());
          statuses.push(r.status);
        }
      });
      await sleep(300);
      await cluster.killReplica(1, "SIGTERM");
      await sleep(300);
      stop = true;
      await Promise.all(load);
      await cluster.startReplica(1);
      expect(statuses.length).toBeGreaterThan(50);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
    });

    it("keeps the count when every replica restarts", async () => {
      const v = new Visitor(cluster.baseUrl());
      expect((await counts(v, 3)).counts).toEqual([1, 2, 3]);
      await cluster.restartReplicas();
      expect((await counts(v, 3)).counts).toEqual([4, 5, 6]);
    });

    it("keeps the count when Redis restarts after SIGTERM and after SIGKILL (AOF)", async () => {
      const v = new Visitor(cluster.baseUrl());
      expect((await counts(v, 3)).counts).toEqual([1, 2, 3]);
      await cluster.stopRedis("SIGTERM");
      await cluster.startRedis();
      expect((await counts(v, 3)).counts).toEqual([4, 5, 6]);
      await aofWritten(cluster);
      await cluster.stopRedis("SIGKILL");
      await cluster.startRedis();
      expect((await counts(v, 3)).counts).toEqual([7, 8, 9]);
    });

    it("answers a fast JSON 503 while Redis is down and recovers without restarting replicas", async () => {
      const v = new Visitor(cluster.baseUrl());
      expect((await v.increment()).json?.count).toBe(1);
      await aofWritten(cluster);
      await cluster.stopRedis("SIGKILL");
      try {
        for (let i = 0; i < 6; i++) {
          const r = await v.increment(undefined, { timeoutMs: 5000 });
          expect(r.status).toBe(503);
          expect(r.ms).toBeLessThan(2000);
          expect(r.json?.error).toMatch(/^store_/);
          expect(r.headers.get("retry-after")).toBe("1");
        }
        for (const replica of await cluster.replicas()) {
          expect(await cluster.probeReplica(replica.index, "/readyz")).toBe(503);
          expect(await cluster.probeReplica(replica.index, "/healthz")).toBe(200);
        }
      } finally {
        await cluster.startRedis();
      }
      const back = await v.increment();
      expect(back.status).toBe(200);
      expect(back.json?.count).toBe(2);
    });

    // 240 s: starting containers and probing each new one (a `node` process in it) takes minutes on a busy host.
    it("keeps every keyed increment exactly once while scaling 3 -> 5 -> 2 -> 3; round-robin follows", async () => {
      // After scale(n) returns, requests must reach exactly the running replicas: polls with
      // fresh sessions until each was seen (bounded), then checks nothing else answered.
      const expectServedByRunning = async () => {
        const running = new Set((await cluster.replicas()).filter((r) => r.running).map((r) => r.replicaId));
        const seen = new Set<string>();
        for (let i = 0; i < 100 && seen.size < running.size; i++)
          seen.add((await new Visitor(cluster.baseUrl()).get("/api/session")).replica!);
        expect([...seen].sort()).toEqual([...running].sort());
        return running.size;
      };
      // A keyed increment is sent again with the same key when the answer was lost (an nginx
      // reload closes idle client connections, racing a request sent on one) or was a 503
      // with Retry-After (a starved Redis call timed out: applied or not, unknown). That is
      // the API's contract for clients; the counts below prove no retry was applied twice.
      const firstAttempt: number[] = [];
      const send = async (v: Visitor, key: string) => {
        for (let attempt = 1; ; attempt++) {
          try {
            const r = await v.increment(key);
            if (attempt === 1) firstAttempt.push(r.status);
            if (r.status !== 503 || !r.headers.get("retry-after") || attempt === 5) return r;
            await sleep(Number(r.headers.get("retry-after")) * 1000);
          } catch (err) {
            if (attempt === 5) throw err;
          }
        }
      };
      const visitors = Array.from({ length: 4 }, () => new Visitor(cluster.baseUrl()));
      const statuses: number[] = [];
      const counts: number[][] = visitors.map(() => []);
      let stop = false;
      const deadline = Date.now() + 120_000;
      const load = Promise.all(
        visitors.map(async (v, i) => {
          for (let n = 0; !stop && n < 5000 && Date.now() < deadline; n++) {
            const r = await send(v, randomUUID());
            statuses.push(r.status);
            if (r.status === 200) counts[i]!.push(r.json?.count as number);
            await sleep(5);
          }
        }),
      );
      load.catch(() => {}); // awaited below; this only keeps an early failure from going unhandled
      try {
        await cluster.scale(5);
        expect(await expectServedByRunning()).toBe(5);
        await cluster.scale(2);
        expect(await expectServedByRunning()).toBe(2);
        await cluster.scale(3);
        expect(await expectServedByRunning()).toBe(3);
      } finally {
        stop = true;
        await load;
      }
      expect(statuses.length).toBeGreaterThan(50);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      // nginx never answered for a replica it could not reach (502/504): it failed over.
      expect(firstAttempt.filter((s) => s === 502 || s === 504)).toEqual([]);
      for (const c of counts) expect(c).toEqual(range(1, c.length));
    }, 240_000);

    it("starts a new session for a tampered or unsigned cookie instead of failing", async () => {
      const v = new Visitor(cluster.baseUrl());
      await v.get("/counter");
      const [name, value] = v.cookie!.split("=") as [string, string];
      const tampered = `${name}=${value.slice(0, -3)}abc`;
      const unsigned = `${name}=${encodeURIComponent(decodeURIComponent(value).replace(/^s:/, "").split(".")[0]!)}`;
      for (const cookie of [tampered, unsigned, `${name}=garbage`, `${name}=s%3Aforged.sig`]) {
        const r = await new Visitor(cluster.baseUrl(), cookie).get("/counter");
        expect(r.status).toBe(200);
        expect(r.text).toBe("count is 1");
      }
      expect((await v.get("/counter")).text).toBe("count is 2");
    });
  });

  describe(`${label}: the seed's MemoryStore behind round-robin (negative control)`, () => {
    let cluster: Cluster;
    beforeAll(async () => {
      cluster = await make({ replicas: 3, port: 0, appEnv: { STORE: "memory" } });
      await cluster.start();
    }, timeouts.start);
    afterAll(async () => {
      await cluster?.stop();
    }, timeouts.start);

    it("diverges: each replica keeps its own count, so the session's count is not 1..N", async () => {
      const v = new Visitor(cluster.baseUrl());
      const r = await counts(v, 12);
      expect(r.statuses.every((s) => s === 200)).toBe(true);
      expect(r.counts).not.toEqual(range(1, 12));
      // Each replica counted only the requests it saw, after resetting the unknown session.
      expect(Math.max(...r.counts)).toBeLessThan(12);
    });
  });
}
