// Exactly-once counting through nginx and three real replicas: the atomic counter under
// concurrency, Idempotency-Key semantics (draft-ietf-httpapi-idempotency-key-header, Stripe),
// and a replica SIGKILLed between its Redis write and its answer. CLUSTER=compose runs the
// same tests against Docker Compose.
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Cluster, ClusterOptions } from "../infra/cluster/cluster.ts";
import { createCluster } from "../infra/cluster/open.ts";
import { Visitor, type Reply } from "../loadtest/client/visitor.ts";

const kind = process.env.CLUSTER === "compose" ? "compose" : "local";
const FAULT_PREFIX = "sigkill-";

async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const c = createCluster(kind, {
    replicas: 3,
    port: 0,
    clientLimits: false,
    ...opts,
    dir: mkdtempSync(join(tmpdir(), "exactly-once-")),
  });
  try {
    await c.start();
  } catch (err) {
    await c.stop().catch(() => {});
    throw err;
  }
  return c;
}

async function visitor(cluster: Cluster): Promise<Visitor> {
  const v = new Visitor(cluster.baseUrl());
  expect((await v.startSession()).status).toBe(201);
  return v;
}

const count = async (v: Visitor) => (await v.get("/api/session")).json?.count;

/** Sends the same keyed increment until a replica other than `not` answers it. */
async function fromAnotherReplica(v: Visitor, key: string, not: string): Promise<Reply> {
  for (let i = 0; i < 12; i++) {
    const r = await v.increment(key);
    if (r.replica !== not) return r;
  }
  throw new Error(`every answer came from ${not}`);
}

describe(`exactly-once counting (${kind}): nginx and 3 replicas, COUNTER=atomic`, () => {
  let cluster: Cluster;
  beforeAll(async () => {
    // The fault hook only fires for keys that start with FAULT_PREFIX; every other test is unaffected.
    cluster = await startCluster({ appEnv: { NODE_ENV: "test", FAULT_SIGKILL_AFTER_INCREMENT: FAULT_PREFIX } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("counts 600 concurrent increments on one session exactly, each count handed out once", async () => {
    const v = await visitor(cluster);
    const seen: number[] = [];
    const replicas = new Set<string>();
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        for (let i = 0; i < 30; i++) {
          const r = await v.increment();
          expect(r.status).toBe(200);
          seen.push(r.json!.count as number);
          replicas.add(r.replica!);
        }
      }),
    );
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
    expect(replicas.size).toBe(3);
    expect(await count(v)).toBe(600);
  });

  it("replays a key on another replica: the stored count, Idempotent-Replayed: true, no second increment", async () => {
    const v = await visitor(cluster);
    await v.increment();
    const key = randomUUID();
    const first = await v.increment(key);
    expect(first.status).toBe(200);
    expect(first.json?.count).toBe(2);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    const again = await fromAnotherReplica(v, key, first.replica!);
    expect(again.status).toBe(200);
    expect(again.json?.count).toBe(2);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await count(v)).toBe(2);
  });

  it("answers concurrent duplicates of one key with the same count and applies it once", async () => {
    const v = await visitor(cluster);
    const key = randomUUID();
    const replies = await Promise.all(Array.from({ length: 12 }, () => v.increment(key)));
    // The check and the increment are one Lua script, so there is no in-flight window to 409 on.
    expect(replies.map((r) => r.status)).toEqual(Array(12).fill(200));
    expect(new Set(replies.map((r) => r.json?.count))).toEqual(new Set([1]));
    expect(replies.filter((r) => r.headers.get("idempotent-replayed") !== "true")).toHaveLength(1);
    expect(await count(v)).toBe(1);
  });

  it("refuses a key reused with a different request with 422, and counts nothing", async () => {
    const v = await visitor(cluster);
    const key = randomUUID();
    expect((await v.increment(key, { body: JSON.stringify({ by: 2 }) })).json?.count).toBe(2);
    const other = await v.increment(key, { body: JSON.stringify({ by: 3 }) });
    expect(other.status).toBe(422);
    expect(other.json?.error).toBe("idempotency_key_reused");
    // The same request spelled differently is still the same request: it replays.
    expect((await v.increment(key, { body: '{ "by": 2 }' })).headers.get("idempotent-replayed")).toBe("true");
    expect(await count(v)).toBe(2);
  });

  it("refuses a malformed key with 400 and counts nothing", async () => {
    const v = await visitor(cluster);
    // "a, b" is what two Idempotency-Key headers become once joined.
    for (const bad of ["", "has space", "x".repeat(129), "é", '"', "a, b", '"unterminated']) {
      const r = await v.increment(bad);
      expect(r.status, `Idempotency-Key: ${JSON.stringify(bad)}`).toBe(400);
      expect(r.json?.error).toBe("invalid_idempotency_key");
    }
    expect(await count(v)).toBe(0);
  });

  it('accepts the key as the draft\'s structured-field string: "k" and k are one key', async () => {
    const v = await visitor(cluster);
    const key = randomUUID();
    expect((await v.increment(`"${key}"`)).json?.count).toBe(1);
    expect((await v.increment(key)).headers.get("idempotent-replayed")).toBe("true");
    expect(await count(v)).toBe(1);
  });

  it("scopes a key to its session: the same key in another session counts there", async () => {
    const [a, b] = [await visitor(cluster), await visitor(cluster)];
    const key = randomUUID();
    expect((await a.increment(key)).json?.count).toBe(1);
    const r = await b.increment(key);
    expect(r.json?.count).toBe(1);
    expect(r.headers.get("idempotent-replayed")).toBeNull();
  });

  it("starts a session without counting, and reports an existing one on a repeat", async () => {
    const v = new Visitor(cluster.baseUrl());
    const first = await v.startSession();
    expect(first.status).toBe(201);
    expect(first.json).toMatchObject({ count: 0, session: expect.any(String) as unknown });
    const again = await v.startSession();
    expect(again.status).toBe(200);
    expect(again.json?.session).toBe(first.json?.session);
    expect(await count(v)).toBe(0);
  });

  it("counts once when a replica is SIGKILLed after its Redis write: nginx retries elsewhere, a replay", async () => {
    const v = await visitor(cluster);
    await v.increment();
    const before = (await cluster.replicas()).filter((r) => r.running).length;
    const r = await v.increment(`${FAULT_PREFIX}${randomUUID()}`);
    expect(r.status).toBe(200);
    expect(r.json?.count).toBe(2);
    expect(r.headers.get("idempotent-replayed")).toBe("true");
    // The replica that applied it really died mid-request.
    const after = await cluster.replicas();
    expect(after.filter((x) => x.running)).toHaveLength(before - 1);
    expect(await count(v)).toBe(2);
    for (const x of after) if (!x.running) await cluster.startReplica(x.index);
  });

  it("counts once when the client retries a 502 (the only replica died after writing): the retry replays", async () => {
    const v = await visitor(cluster);
    await v.increment();
    const all = await cluster.replicas();
    for (const x of all.slice(1)) await cluster.killReplica(x.index, "SIGKILL");
    const key = `${FAULT_PREFIX}${randomUUID()}`;
    try {
      // The last replica applies the increment and dies; nginx has nowhere to retry.
      const lost = await v.increment(key);
      expect(lost.status).toBe(502);
    } finally {
      for (const x of all) await cluster.startReplica(x.index);
    }
    let retry: Reply | undefined;
    // nginx keeps failed replicas out for fail_timeout (2 s); retry like a client would.
    for (let i = 0; i < 40 && retry?.status !== 200; i++) {
      retry = await v.increment(key);
      if (retry.status !== 200) await sleep(250);
    }
    expect(retry?.status).toBe(200);
    expect(retry?.json?.count).toBe(2);
    expect(retry?.headers.get("idempotent-replayed")).toBe("true");
    expect(await count(v)).toBe(2);
  });
});

describe(`exactly-once counting (${kind}): IDEMPOTENCY_TTL_SECONDS=1`, () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ replicas: 2, appEnv: { IDEMPOTENCY_TTL_SECONDS: "1" } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("forgets a key once it expires: a repeat after the TTL is a new increment", async () => {
    const v = await visitor(cluster);
    const key = randomUUID();
    expect((await v.increment(key)).json?.count).toBe(1);
    expect((await v.increment(key)).headers.get("idempotent-replayed")).toBe("true");
    await sleep(2100);
    const late = await v.increment(key);
    expect(late.json?.count).toBe(2);
    expect(late.headers.get("idempotent-replayed")).toBeNull();
  });
});
