// Redis refusals that ran nothing answer 503 store_unavailable ("nothing was changed"), against a
// real redis-server put into each state (a login on a full Redis among them); and an error answer
// writes nothing to the session after it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import { waitFor } from "../../../infra/cluster/wait.ts";
import type { Reply } from "../../../loadtest/client/visitor.ts";
import { StoreUnavailableError } from "./errors.ts";
import { execAndWait, toStoreError } from "./redis.ts";

let app: TestApp;
beforeAll(async () => {
  app = await startApp({ env: { NEW_SESSION_LIMIT: "0", REDIS_COMMAND_TIMEOUT_MS: "2000" } });
});
afterAll(async () => {
  await app?.close();
});
const admin = () => app.redis!.admin;

describe("toStoreError", () => {
  it.each([
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
    "MISCONF Errors writing to the AOF file: No space left on device",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
  ])("maps a refusal that ran nothing to a 503, not applied: %s", (message) => {
    const mapped = toStoreError(new Error(message));
    expect(mapped).toBeInstanceOf(StoreUnavailableError);
    expect((mapped as StoreUnavailableError).applied).toBe("no");
  });

  it("leaves other errors alone, BUSYGROUP and WRONGTYPE among them", () => {
    for (const message of ["BUSYGROUP Consumer Group name already exists", "WRONGTYPE Operation against a key"])
      expect(toStoreError(new Error(message))).not.toBeInstanceOf(StoreUnavailableError);
  });

  it("maps a transaction Redis discarded because a replica refused its write (EXECABORT) to a 503", async () => {
    // A replica of an address where nothing listens: read-only, as a demoted primary is.
    await admin().replicaof("127.0.0.1", 1);
    try {
      const err = await admin()
        .multi()
        .expire("sess:x", 10)
        .exec()
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect((err as Error).message).toMatch(/^EXECABORT/);
      const mapped = toStoreError(err);
      expect(mapped).toBeInstanceOf(StoreUnavailableError);
      expect((mapped as StoreUnavailableError).applied).toBe("no");
    } finally {
      await admin().replicaof("NO", "ONE");
    }
  });
});

describe("execAndWait", () => {
  it("reports a refusal inside a pipeline whose other commands ran as 'may have applied', not 'nothing'", async () => {
    await admin().set("pipe:gone", "x");
    await admin().config("SET", "maxmemory", "1");
    let err: unknown;
    try {
      // A full Redis refuses the SET and runs the DEL.
      err = await execAndWait(admin(), { replicas: 0, timeoutMs: 0 }, (p) => {
        p.set("pipe:new", "1");
        p.del("pipe:gone");
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
    } finally {
      await admin().config("SET", "maxmemory", "0");
    }
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).applied).toBe("unknown");
    expect(await admin().exists("pipe:gone")).toBe(0);
  });
});

describe("the app", () => {
  it("answers 503 store_unavailable, nothing applied, while a script keeps Redis busy", async () => {
    const v = app.visitor();
    expect((await v.increment("busy-1")).json?.count).toBe(1);
    await admin().config("SET", "busy-reply-threshold", "50");
    // A connection of its own runs the endless script; another ends it.
    const looper = admin().duplicate();
    const killer = admin().duplicate();
    await Promise.all([looper.ping(), killer.ping()]);
    const running = looper.eval("while true do end", 0).catch(() => "killed");
    try {
      // Busy once Redis answers others with BUSY.
      await waitFor(
        "Redis busy",
        () =>
          killer.ping().then(
            () => false,
            (e: Error) => e.message.startsWith("BUSY"),
          ),
        5000,
      );
      const refused = await v.increment("busy-2");
      expect(refused.status).toBe(503);
      expect(refused.json?.error).toBe("store_unavailable");
    } finally {
      // Whatever failed above: an endless script would leave this Redis spinning past the test.
      await killer.script("KILL").catch(() => undefined);
      await running;
      looper.disconnect();
      killer.disconnect();
      await admin().config("SET", "busy-reply-threshold", "5000");
    }
    // Nothing was applied: the retry of the same key counts once.
    expect((await v.increment("busy-2")).json).toMatchObject({ count: 2 });
  });

  it("refuses a login on a full Redis (maxmemory, noeviction) with a 503, the session kept as it was", async () => {
    const v = app.visitor();
    expect((await v.increment()).json?.count).toBe(1);
    const before = v.cookie;
    await admin().config("SET", "maxmemory", "1");
    try {
      const login = await v.post("/api/login", { body: JSON.stringify({ name: "ada" }) });
      expect(login.status).toBe(503);
      expect(login.json).toMatchObject({ error: "store_unavailable" });
    } finally {
      await admin().config("SET", "maxmemory", "0");
    }
    expect(v.cookie).toBe(before);
    expect((await v.get("/api/session")).json).toMatchObject({ count: 1 });
  });

  it("keeps refreshing the TTLs of sessions read on a full Redis, and a 4xx answer refreshes them too", async () => {
    const v = app.visitor();
    expect((await v.increment()).json?.count).toBe(1);
    const sid = /^sid=s%3A([^.]+)\./.exec(v.cookie!)![1]!;
    await admin().expire(`sess:${sid}`, 100);
    await admin().config("SET", "maxmemory", "1");
    try {
      expect((await v.get("/api/session")).status).toBe(200);
    } finally {
      await admin().config("SET", "maxmemory", "0");
    }
    expect(await admin().ttl(`sess:${sid}`)).toBeGreaterThan(100);
    await admin().expire(`sess:${sid}`, 100);
    expect((await v.get("/api/me")).status).toBe(401);
    expect(await admin().ttl(`sess:${sid}`)).toBeGreaterThan(100);
  });

  it("answers a logout on a read-only Redis (a demoted primary) 503 store_unavailable, the session kept", async () => {
    const v = app.visitor();
    expect((await v.increment()).json?.count).toBe(1);
    await admin().replicaof("127.0.0.1", 1);
    try {
      const out = await v.post("/api/logout");
      expect([out.status, out.json?.error]).toEqual([503, "store_unavailable"]);
    } finally {
      await admin().replicaof("NO", "ONE");
    }
    // A READONLY makes the app's client reconnect (to find the new primary): answers 503 until it has.
    let after: Reply | undefined;
    await waitFor("the app back on its Redis", async () => (after = await v.get("/api/session")).status === 200, 5000);
    expect(after!.json).toMatchObject({ count: 1 });
  });

  it("writes nothing to the session after answering with an error: no save, no touch", async () => {
    const v = app.visitor();
    expect((await v.increment()).json?.count).toBe(1);
    const sid = /^sid=s%3A([^.]+)\./.exec(v.cookie!)![1];
    await admin().expire(`sess:${sid}`, 100);
    // The app's Redis user may not run MGET: reading the session's count fails, a 500.
    await admin().call("ACL", "SETUSER", "default", "-mget");
    try {
      expect((await v.get("/api/session")).status).toBe(500);
    } finally {
      await admin().call("ACL", "SETUSER", "default", "+@all");
    }
    // express-session's touch after the answer would have set the idle timeout again.
    expect(await admin().ttl(`sess:${sid}`)).toBeLessThanOrEqual(100);
    const after = await v.get("/api/session");
    expect(after.json, after.text).toMatchObject({ count: 1 });
  });
});
