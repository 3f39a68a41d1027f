// Hostile traffic (issue 14, "Done when"): one client address floods the cluster for a few
// seconds with new Idempotency-Keys on one session, new sessions (no cookie, forged cookies)
// and idle connections, while a second address counts with keyed increments. The second
// client must be unharmed and its count exact, and what the flood leaves in Redis bounded.
// Real nginx (default per-client limits), redis-server and three Node replicas.
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CLIENT_LIMITS } from "../infra/cluster/client-limits.ts";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { AddressClient, rawConnection, type Answer } from "./address-client.ts";

const FLOOD_MS = 8000;
const FLOOD_MAX_REQUESTS = 60_000;
// The bystander behaves: fewer live Idempotency-Keys than its session may hold (IDEMPOTENCY_MAX_KEYS,
// 100), spread over the flood.
const BYSTANDER_INCREMENTS = 60;
const IDLE_CONNECTIONS = 300;

async function usedMemory(cluster: LocalCluster): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await cluster.redisCommand("INFO", "memory"))?.[1]);
}

/** A well-formed signed-cookie shape with a signature no secret made. */
const forgedCookie = () =>
  `sid=s%3A${randomBytes(24).toString("base64url")}.${randomBytes(32).toString("base64").replace(/=+$/, "")}`;

describe("hostile traffic from one address leaves another address's counting exact", () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = LocalCluster.create({ dir: mkdtempSync(join(tmpdir(), "hostile-")), replicas: 3 });
    await cluster.start();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("serves every keyed increment of 127.0.0.3, in order, while 127.0.0.2 floods", async () => {
    const base = cluster.baseUrl();
    const port = Number(new URL(base).port);
    const memoryBefore = await usedMemory(cluster);
    const keysBefore = Number(await cluster.redisCommand("DBSIZE"));

    // The flooder: one session that keeps sending new Idempotency-Keys, plus requests that
    // would each create a session (no cookie, a forged cookie).
    const keyed = new AddressClient(base, "127.0.0.2", { maxSockets: 16 });
    const anonymous = new AddressClient(base, "127.0.0.2", { maxSockets: 16 });
    const flood = { sent: 0, errors: 0, byStatus: new Map<string, number>() };
    const tally = (a: Answer) => {
      const k =
        a.status === 429 ? `429 ${a.error === "too_many_requests" ? "nginx" : `app:${a.error}`}` : String(a.status);
      flood.byStatus.set(k, (flood.byStatus.get(k) ?? 0) + 1);
    };
    const idle: Socket[] = [];
    let flooding = true;
    const started = Date.now();
    const floodDone = (async () => {
      // Many connections that never send a request: nginx closes them (client_header_timeout).
      for (let i = 0; i < IDLE_CONNECTIONS; i++) {
        const s = await rawConnection(port, "127.0.0.2").catch(() => undefined);
        if (s) {
          s.on("error", () => {});
          idle.push(s);
        }
      }
      const kinds = [
        () => keyed.increment(randomUUID()),
        () =>
          anonymous.request("/api/counter", {
            method: "POST",
            headers: { cookie: "", "idempotency-key": randomUUID() },
            body: '{"by":1}',
            keepCookie: false,
          }),
        () => anonymous.request("/counter", { headers: { cookie: forgedCookie() }, keepCookie: false }),
      ];
      await Promise.all(
        Array.from({ length: 24 }, async (_, i) => {
          while (flooding && flood.sent < FLOOD_MAX_REQUESTS) {
            flood.sent++;
            try {
              tally(await kinds[i % kinds.length]!());
            } catch {
              flood.errors++;
            }
          }
        }),
      );
    })();

    // The bystander: keyed increments on its own session, one at a time. A 503 (a Redis call
    // timed out on two shared cores: applied or not, unknown) is retried with the same key,
    // which the app applies at most once; a 429 is never retried, and must not happen.
    const bystander = new AddressClient(base, "127.0.0.3", { maxSockets: 1 });
    const counts: number[] = [];
    const firstTry = new Map<number, number>();
    const failures: string[] = [];
    try {
      while (Date.now() - started < FLOOD_MS && counts.length + failures.length < BYSTANDER_INCREMENTS) {
        const key = randomUUID();
        let a: Answer | undefined;
        for (let attempt = 1; attempt <= 5; attempt++) {
          a = await bystander
            .increment(key)
            .catch((err: Error) => ({ status: 0, error: err.message, body: "", headers: {} }));
          if (attempt === 1) firstTry.set(a.status, (firstTry.get(a.status) ?? 0) + 1);
          if (a.status !== 503 && a.status !== 0) break;
          await sleep(200);
        }
        if (a!.status === 200) counts.push((JSON.parse(a!.body) as { count: number }).count);
        else failures.push(`${a!.status} ${a!.body}`);
        await sleep(FLOOD_MS / BYSTANDER_INCREMENTS);
      }
    } finally {
      flooding = false;
      await floodDone;
      for (const s of idle) s.destroy();
      keyed.close();
      anonymous.close();
    }
    const seconds = (Date.now() - started) / 1000;
    const memoryAfter = await usedMemory(cluster);
    const keysAfter = Number(await cluster.redisCommand("DBSIZE"));
    const accepted = [...flood.byStatus].filter(([k]) => !k.startsWith("429")).reduce((n, [, v]) => n + v, 0);
    const finalCount = JSON.parse((await bystander.increment(randomUUID())).body) as { count: number };
    bystander.close();

    console.log(
      [
        `hostile traffic over ${seconds.toFixed(1)} s from 127.0.0.2: ${flood.sent} requests ` +
          `(+${IDLE_CONNECTIONS} idle connections), ${flood.errors} transport errors`,
        `  answers: ${JSON.stringify(Object.fromEntries([...flood.byStatus].sort()))} (429 nginx = ` +
          `per-client limit, 429 app:* = the app's own limits)`,
        `  reached the app: ${accepted} (${(accepted / seconds).toFixed(0)}/s)`,
        `bystander 127.0.0.3: ${counts.length} increments, first attempts ` +
          `${JSON.stringify(Object.fromEntries(firstTry))}, failures ${failures.length}`,
        `redis: used_memory ${(memoryBefore / 1024 / 1024).toFixed(2)} MiB -> ` +
          `${(memoryAfter / 1024 / 1024).toFixed(2)} MiB, keys ${keysBefore} -> ${keysAfter}`,
      ].join("\n"),
    );

    // The bystander: every increment applied once, in order, none refused.
    expect(failures).toEqual([]);
    expect(firstTry.get(429)).toBeUndefined();
    expect(counts.length).toBeGreaterThan(10);
    expect(counts).toEqual(counts.map((_, i) => i + 1));
    expect(finalCount.count).toBe(counts.length + 1);
    // The flood: nginx refused it past the per-client allowance, so what reached the app (and
    // could write to Redis) is bounded by the rate, not by how fast the flooder sends.
    expect(flood.byStatus.get("429 nginx") ?? 0).toBeGreaterThan(0);
    const { rate, burst } = DEFAULT_CLIENT_LIMITS;
    expect(accepted).toBeLessThanOrEqual(rate * seconds + burst + rate);
    // Each accepted request writes at most a session, a count and a key's result.
    expect(keysAfter - keysBefore).toBeLessThanOrEqual(3 * (accepted + counts.length + 1));
  });
});
