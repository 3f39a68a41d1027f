// Redis refusals that ran nothing answer 503 store_unavailable ("nothing was changed"), against a
// real redis-server put into each state (a login on a full Redis among them); and an error answer
// writes nothing to the session after it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import { StoreUnavailableError } from "./errors.ts";
import { toStoreError } from "./redis.ts";

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

describe("the app", () => {
  it("answers 503 store_unavailable, nothing applied, while a script keeps Redis busy", async () => {
    const v = app.visitor();
    expect((await v.increment("busy-1")).json?.count).toBe(1);
    await admin().config("SET", "busy-reply-threshold", "50");
    // A connection of its own runs the endless script; another ends it.
    const looper = admin().duplicate();
    const killer = admin().duplicate();
    await Promise.all([looper.ping(), killer.ping()]);
    try {
      const running = looper.eval("while true do end", 0).catch(() => "killed");
      await new Promise((r) => setTimeout(r, 200));
      const refused = await v.increment("busy-2");
      expect(refused.status).toBe(503);
      expect(refused.json?.error).toBe("store_unavailable");
      await killer.script("KILL");
      await running;
    } finally {
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
