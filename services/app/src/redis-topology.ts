// The startup check of a Redis Cluster topology (REDIS_CLUSTER_NODES): a replica refuses to
// start (exit 78) on a cluster it could never serve from, naming the problem, instead of
// listening and answering 503 forever (ioredis' Cluster retries such a cluster silently).
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import type { Config } from "./config.ts";

const SLOTS = 16384;

type SlotRange = [start: number, end: number, primary: [host: string, port: number, ...unknown[]], ...unknown[]];

/** Every problem found, or [] once the cluster serves every slot from a primary that answers. */
export async function clusterTopologyProblems(config: Config, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  // A cluster still being created, or in the middle of a failover, is briefly "fail": retry.
  for (;;) {
    const problems = await checkOnce(config);
    if (problems.length === 0 || Date.now() >= deadline) return problems;
    await sleep(Math.min(250, Math.max(0, deadline - Date.now())));
  }
}

async function checkOnce(config: Config): Promise<string[]> {
  const seeds = config.redis.clusterNodes.map((n) => `${n.host}:${n.port}`);
  const seedErrors: string[] = [];
  for (const seed of config.redis.clusterNodes) {
    const where = `${seed.host}:${seed.port}`;
    let info: string;
    let slots: SlotRange[];
    try {
      [info, slots] = await withNode(config, seed, async (r) => [
        String(await r.call("CLUSTER", "INFO")),
        (await r.call("CLUSTER", "SLOTS")) as SlotRange[],
      ]);
    } catch (err) {
      const m = (err as Error).message;
      seedErrors.push(
        m.includes("cluster support disabled")
          ? `REDIS_CLUSTER_NODES: ${where} is a Redis without cluster mode (cluster-enabled no); use REDIS_URL for it`
          : `REDIS_CLUSTER_NODES: ${where} does not answer (${m})`,
      );
      continue;
    }
    // The first seed that answers speaks for the cluster; the others are only seeds.
    const problems: string[] = [];
    const state = /^cluster_state:(\w+)/m.exec(info)?.[1];
    if (state !== "ok") problems.push(`Redis Cluster (seen from ${where}): cluster_state is ${state ?? "unknown"}`);
    const uncovered = uncoveredRanges(slots);
    if (uncovered.length > 0)
      problems.push(
        `Redis Cluster (seen from ${where}): hash slots ${uncovered.join(", ")} have no primary; assign them ` +
          "(redis-cli --cluster fix) before starting replicas",
      );
    for (const [start, end, [host, port]] of slots) {
      const primary = { host: host === "" ? seed.host : host, port };
      try {
        await withNode(config, primary, (r) => r.ping());
      } catch (err) {
        problems.push(
          `Redis Cluster: ${primary.host}:${port}, the primary of slots ${start}-${end}, does not answer from ` +
            `here (${(err as Error).message}); check the address nodes announce (cluster-announce-ip)`,
        );
      }
    }
    return problems;
  }
  return seedErrors.length > 0 ? seedErrors : [`REDIS_CLUSTER_NODES: no seed node among ${seeds.join(", ")}`];
}

/** The slot ranges ("0-5460") that CLUSTER SLOTS assigns to no node. */
export function uncoveredRanges(slots: readonly SlotRange[]): string[] {
  const covered = new Uint8Array(SLOTS);
  for (const [start, end] of slots) covered.fill(1, start, end + 1);
  const out: string[] = [];
  for (let i = 0; i < SLOTS; i++) {
    if (covered[i]) continue;
    let j = i;
    while (j + 1 < SLOTS && !covered[j + 1]) j++;
    out.push(i === j ? String(i) : `${i}-${j}`);
    i = j;
  }
  return out;
}

/** One short-lived connection to one node, as the app's user, with the app's timeouts. */
async function withNode<T>(
  config: Config,
  node: { host: string; port: number },
  fn: (r: Redis) => Promise<T>,
): Promise<T> {
  const r = new Redis({
    host: node.host,
    port: node.port,
    username: config.redis.username,
    password: config.redis.password,
    connectTimeout: config.redis.connectTimeoutMs,
    commandTimeout: config.redis.commandTimeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableReadyCheck: false,
    lazyConnect: true,
  });
  r.on("error", () => {}); // reported through the command's rejection
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}
