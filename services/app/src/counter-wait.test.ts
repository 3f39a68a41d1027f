// REDIS_WAIT_REPLICAS: an increment too few replicas acknowledged is a 503 store_timeout (maybe
// applied), and a retry with its key never applies it twice. One Redis without replicas makes
// every WAIT come back short.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";

let waiting: TestApp;
let plain: TestApp;
beforeAll(async () => {
  waiting = await startApp({ env: { REDIS_WAIT_REPLICAS: "1", REDIS_WAIT_TIMEOUT_MS: "50" } });
  plain = await startApp({ redis: waiting.redis });
});
afterAll(async () => {
  await plain?.close();
  await waiting?.close();
});

describe("REDIS_WAIT_REPLICAS", () => {
  it("answers 503 store_timeout when fewer replicas acknowledged, and a keyed retry does not count twice", async () => {
    const v = waiting.visitor();
    expect((await v.startSession()).status).toBe(201);
    const first = await v.increment("wait-key-1");
    expect(first.status).toBe(503);
    expect(first.json?.error).toBe("store_timeout");
    // The retry replays the stored result, and WAITs again: still short of a replica.
    const retry = await v.increment("wait-key-1");
    expect(retry.json?.error).toBe("store_timeout");
    // Applied once on the primary: the same session, read by an app that does not WAIT.
    const read = await plain.visitor(v.cookie).get("/api/session");
    expect(read.json?.count).toBe(1);
  });

  it("answers without waiting when REDIS_WAIT_REPLICAS is 0 (the default)", async () => {
    const v = plain.visitor();
    await v.startSession();
    const r = await v.increment("wait-key-2");
    expect(r.status).toBe(200);
    expect(r.json?.count).toBe(1);
  });
});
