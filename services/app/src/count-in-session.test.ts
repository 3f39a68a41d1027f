// The count lives inside the session's value, and every writer of that value must keep it: keyed
// increments run concurrently with logins (which rotate the session), logouts (which destroy it)
// and a stale write-back of the session by another replica's store, against a real Redis; every
// session left must hold exactly the increments it acknowledged plus what a login carried into it.
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../../infra/cluster/wait.ts";
import type { Reply } from "../../../loadtest/client/visitor.ts";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import { sessionIdOf } from "../../../test/session-cookie.ts";
import { createRedis, type RedisClient } from "./redis.ts";
import { createStore, keys, sessionLabel, sessionSerializer, type SessionStore } from "./session.ts";

const WORKERS = 6;
const KEYS_PER_WORKER = 40;
const ROUNDS = 3; // each: two logins, a stale write-back, a logout

let app: TestApp;
let otherReplica: RedisClient;
let otherStore: SessionStore;
beforeAll(async () => {
  // Every cookie-less increment after a logout starts a session: no per-address cap here.
  app = await startApp({ env: { NEW_SESSION_LIMIT: "0" } });
  otherReplica = createRedis(app.config, pino({ level: "silent" }));
  await waitFor("the second Redis client to be ready", () => otherReplica.status === "ready", 10_000, 20);
  otherStore = createStore(app.config, otherReplica);
});
afterAll(async () => {
  otherReplica?.disconnect();
  await app?.close();
});

describe("the count inside the session", () => {
  it("counts every acknowledged increment exactly once while logins, logouts and stale writes race it", async () => {
    const v = app.visitor();
    await v.startSession();
    const admin = app.redis!.admin;

    const acks = new Map<string, number[]>(); // session label -> counts it answered
    const carried = new Map<string, { from: string | undefined; count: number }>(); // login's new label
    const loggedOut: string[] = []; // session ids
    let acked = 0;

    const increment = async (key: string): Promise<void> => {
      // A 409 (the cookie a login just replaced, or a session a logout destroyed mid-request) applied
      // nothing: the client sends the same key again, with whatever cookie it holds now.
      for (let attempt = 0; attempt < 20; attempt++) {
        const r: Reply = await v.increment(key);
        if (r.status === 409) continue;
        expect(r.status, JSON.stringify(r.json)).toBe(200);
        expect(r.headers.get("idempotent-replayed")).toBeNull();
        const label = r.json?.session as string;
        acks.set(label, [...(acks.get(label) ?? []), r.json?.count as number]);
        acked++;
        return;
      }
      throw new Error(`increment ${key} refused 20 times`);
    };
    const worker = async (w: number) => {
      for (let i = 0; i < KEYS_PER_WORKER; i++) await increment(`w${w}-k${i}`);
    };
    // The logins, writes and logouts interleave with the increments by progress, not by time.
    const until = (n: number) => waitFor(`${n} increments acknowledged`, () => acked >= n, 60_000, 1);
    const step = Math.floor((WORKERS * KEYS_PER_WORKER) / (ROUNDS * 4 + 1));
    const control = async () => {
      let at = 0;
      for (let round = 0; round < ROUNDS; round++) {
        for (let login = 0; login < 2; login++) {
          await until((at += step));
          const from = v.cookie === undefined ? undefined : sessionIdOf(v.cookie);
          const r = await v.post("/api/login", {
            body: JSON.stringify({ name: `ada-${round}-${login}` }),
            headers: { "content-type": "application/json" },
          });
          expect(r.status, JSON.stringify(r.json)).toBe(200);
          carried.set(r.json?.session as string, {
            from: from && sessionLabel(from),
            count: r.json?.count as number,
          });
        }
        // Another replica's express-session writes back the copy of the session it read before
        // the increments since: the store keeps the count Redis holds.
        await until((at += step));
        const sid = sessionIdOf(v.cookie);
        const stale = await new Promise<Record<string, unknown> | null>((resolve, reject) =>
          otherStore.get(sid, (err, s: Record<string, unknown> | null) => (err ? reject(err) : resolve(s))),
        );
        if (stale) {
          await until((at += step));
          await new Promise<void>((resolve, reject) =>
            otherStore.set(sid, stale as never, (err) => (err ? reject(err) : resolve())),
          );
        }
        const out = v.cookie === undefined ? undefined : sessionIdOf(v.cookie);
        const r = await v.post("/api/logout");
        expect(r.status).toBe(200);
        if (out) loggedOut.push(out);
      }
    };
    await Promise.all([...Array.from({ length: WORKERS }, (_, w) => worker(w)), control()]);

    // Every key was acknowledged once, and within one session no count was answered twice.
    expect(acked).toBe(WORKERS * KEYS_PER_WORKER);
    for (const [label, counts] of acks) expect(new Set(counts).size, label).toBe(counts.length);
    // A session's total: what a login carried into it, plus its own acknowledged increments.
    const total = (label: string) => (carried.get(label)?.count ?? 0) + (acks.get(label)?.length ?? 0);
    // A login carried exactly the total of the session it replaced.
    for (const [, { from, count }] of carried) if (from !== undefined) expect(count).toBe(total(from));
    // Every session left holds exactly its total, in its own value, and nothing apart.
    const left = await admin.keys("sess:*");
    expect(left.length).toBeGreaterThan(0);
    for (const key of left) {
      const label = sessionLabel(key.slice("sess:".length));
      expect(sessionSerializer.parse((await admin.get(key))!).count ?? 0, label).toBe(total(label));
    }
    expect(await admin.keys("{sess:*}:count")).toEqual([]);
    // A logged-out session stays gone: no racing write brought it back.
    for (const sid of loggedOut) expect(await admin.exists(keys.session(sid))).toBe(0);
  });
});
