// What `make bench` asks the cluster's Redis, through Cluster.redisCommand: INFO sections,
// command counts, and a fast fill with copies of a real session (a Lua loop, not HTTP).
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Cluster } from "../../infra/cluster/cluster.ts";

export async function info(cluster: Pick<Cluster, "redisCommand">, section: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const line of (await cluster.redisCommand("INFO", section)).split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** Calls per command since Redis started (commands a Lua script runs count too). */
export async function commandCalls(cluster: Pick<Cluster, "redisCommand">): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(await info(cluster, "commandstats"))) {
    const calls = /calls=(\d+)/.exec(v);
    if (calls) out[k.replace(/^cmdstat_/, "")] = Number(calls[1]);
  }
  return out;
}

export function perRequest(
  before: Record<string, number>,
  after: Record<string, number>,
  requests: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  // The bench's own INFO/SCAN/redis-cli calls are not the app's.
  const ours = new Set([
    "info",
    "scan",
    "ping",
    "auth",
    "config|set",
    "config|get",
    "memory|usage",
    "dbsize",
    "command|docs",
    "command",
  ]);
  for (const [cmd, n] of Object.entries(after)) {
    const d = n - (before[cmd] ?? 0);
    if (d > 0 && !ours.has(cmd) && requests > 0) out[cmd] = Math.round((d / requests) * 100) / 100;
  }
  return out;
}

/**
 * Empties Redis without blocking it (a synchronous FLUSHALL of a million keys outlasts the
 * client's timeout), then waits for the background free to finish so that neither memory
 * figures nor the next run share the box with it.
 */
export async function flushAll(cluster: Cluster, timeoutMs = 60_000): Promise<void> {
  await cluster.redisCommand("FLUSHALL", "ASYNC");
  const until = Date.now() + timeoutMs;
  while ((await info(cluster, "memory")).lazyfree_pending_objects !== "0") {
    if (Date.now() > until) throw new Error(`Redis still freeing the flushed keys after ${timeoutMs} ms`);
    await sleep(100);
  }
}

export async function usedMemory(cluster: Cluster): Promise<number> {
  return Number((await info(cluster, "memory")).used_memory);
}

/** Waits for any AOF rewrite to finish, so a measurement never shares the box with it. */
export async function aofIdle(cluster: Cluster, timeoutMs = 120_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const p = await info(cluster, "persistence");
    if (p.aof_rewrite_in_progress === "0" && p.aof_rewrite_scheduled === "0") return;
    await sleep(200);
  }
  throw new Error(`Redis AOF rewrite still running after ${timeoutMs} ms`);
}

/** Rewrites the AOF now (it grew by the fill) and waits, instead of letting Redis do it mid-run. */
export async function compactAof(cluster: Cluster): Promise<void> {
  await aofIdle(cluster);
  await cluster.redisCommand("BGREWRITEAOF");
  await sleep(100);
  await aofIdle(cluster);
}

export type SessionSample = { session: string; counter: string | undefined; ttl: number };

/** A real session as the app stored it (value, counter, TTL), taken from the cluster's Redis. */
export async function sampleSession(cluster: Cluster): Promise<SessionSample & { key: string }> {
  let cursor = "0";
  do {
    const [next, ...keys] = (await cluster.redisCommand("SCAN", cursor, "MATCH", "sess:*", "COUNT", "1000")).split(
      "\n",
    );
    cursor = next!;
    const key = keys.find((k) => k.startsWith("sess:"));
    if (key) {
      const sid = key.slice("sess:".length);
      // The count lives in the session's value; a separate counter only under the layout before.
      const counter = await cluster.redisCommand("GET", `{sess:${sid}}:count`);
      return {
        key,
        session: await cluster.redisCommand("GET", key),
        counter: counter === "" ? undefined : counter,
        ttl: Number(await cluster.redisCommand("TTL", key)),
      };
    }
  } while (cursor !== "0");
  throw new Error("no session in Redis to copy; the load run before the fill made none");
}

// Copies of one real session under new 32-character ids, the length express-session gives
// (uid-safe, 24 bytes). One EVAL per batch keeps Redis unblocked between batches.
const FILL_LUA = `
local prefix, from, n, val, ttl, cnt = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
for i = from, from + n - 1 do
  local sid = prefix .. string.format('%010d', i)
  redis.call('SET', 'sess:' .. sid, val, 'EX', ttl)
  if cnt ~= '' then redis.call('SET', '{sess:' .. sid .. '}:count', cnt, 'EX', ttl) end
end
return n
`;

/** Adds `count` sessions like `sample` (same value, counter and TTL) in batches. */
export async function fillSessions(
  cluster: Cluster,
  sample: SessionSample,
  count: number,
  batch = 10_000,
): Promise<void> {
  const prefix = randomBytes(17).toString("base64url").slice(0, 22);
  for (let from = 0; from < count; from += batch) {
    const n = Math.min(batch, count - from);
    try {
      await cluster.redisCommand(
        "EVAL",
        FILL_LUA,
        "0",
        prefix,
        String(from),
        String(n),
        sample.session,
        String(Math.max(sample.ttl, 60)),
        sample.counter ?? "",
      );
    } catch (err) {
      // The error would carry the whole command line, password included; say what failed instead
      // (and so no `cause`, which a stack print would show).
      // eslint-disable-next-line preserve-caught-error
      throw new Error(
        `filling Redis with sessions failed at ${from} of ${count}: ` +
          `${(err as { stderr?: string }).stderr || (err as Error).message.split("\n")[0]}`,
      );
    }
  }
}

export async function dbsize(cluster: Cluster): Promise<number> {
  return Number(await cluster.redisCommand("DBSIZE"));
}

// Other ways to store the same session, weighed side by side with the app's own layout to
// show where a session's bytes go (per-key overhead vs value) and what would fit a budget.
export const LAYOUTS = {
  "two-keys": 'the layout before: sess:<32-char id> = {"createdAt":<ms>} plus {sess:<id>}:count, each with a TTL',
  "count-in-json": 'one key, the count inside, with readable names: {"createdAt":<ms>,"count":<n>}',
  "with-idempotency-key": "the app's own session plus its {sess:<id>}:idem hash holding one Idempotency-Key",
  "one-hash": "one hash per session, sess:<32-char id> {c: createdAt, n: count}",
  "one-hash-short-id": "one hash per session under s:<22-char id> (128 random bits) {c, n}",
} as const;
export type Layout = keyof typeof LAYOUTS;

const LAYOUT_LUA = `
local layout, prefix, n, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local created, cnt, value = ARGV[5], ARGV[6], ARGV[7]
local rec = string.rep('f', 22) .. ' ' .. cnt .. ' ' .. created
for i = 0, n - 1 do
  local num = string.format('%010d', i)
  local sid = prefix .. num
  if layout == 'two-keys' then
    redis.call('SET', 'sess:' .. sid, '{"createdAt":' .. created .. '}', 'EX', ttl)
    redis.call('SET', '{sess:' .. sid .. '}:count', cnt, 'EX', ttl)
  elseif layout == 'count-in-json' then
    redis.call('SET', 'sess:' .. sid, '{"createdAt":' .. created .. ',"count":' .. cnt .. '}', 'EX', ttl)
  elseif layout == 'with-idempotency-key' then
    redis.call('SET', 'sess:' .. sid, value, 'EX', ttl)
    -- A UUID, as clients send them, and a record as the counter's script writes it.
    local key = '{sess:' .. sid .. '}:idem'
    redis.call('HSET', key, string.format('%08d-0000-4000-8000-%012d', i, i), rec)
    redis.call('EXPIRE', key, ttl)
  elseif layout == 'one-hash' then
    local key = 'sess:' .. sid
    redis.call('HSET', key, 'c', created, 'n', cnt)
    redis.call('EXPIRE', key, ttl)
  else
    local key = 's:' .. string.sub(prefix, 1, 12) .. num
    redis.call('HSET', key, 'c', created, 'n', cnt)
    redis.call('EXPIRE', key, ttl)
  end
end
return n
`;

/** Bytes per session (INFO used_memory delta) for `count` sessions stored in `layout`; leaves Redis empty. */
export async function weighLayout(
  cluster: Cluster,
  layout: Layout,
  count: number,
  sample: SessionSample,
  batch = 10_000,
): Promise<number> {
  await flushAll(cluster);
  const m0 = await usedMemory(cluster);
  const created = /"(?:c|createdAt)":(\d+)/.exec(sample.session)?.[1] ?? String(Date.now());
  const counted = sample.counter ?? /"n":(\d+)\}$/.exec(sample.session)?.[1] ?? "1";
  for (let from = 0; from < count; from += batch) {
    const prefix = `${randomBytes(17).toString("base64url").slice(0, 16)}${String(from / batch).padStart(6, "0")}`;
    const n = Math.min(batch, count - from);
    await cluster.redisCommand(
      "EVAL",
      LAYOUT_LUA,
      "0",
      layout,
      prefix,
      String(n),
      String(Math.max(sample.ttl, 60)),
      created,
      counted,
      sample.session,
    );
  }
  const m1 = await usedMemory(cluster);
  await flushAll(cluster);
  return (m1 - m0) / count;
}
