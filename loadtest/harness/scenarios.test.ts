// Short versions of every `make verify` scenario against real clusters (CLUSTER=compose runs
// them on Docker Compose), asserting the verdicts: all hold with COUNTER=atomic, and the
// checker catches the negative controls (MemoryStore, the seed's counter under concurrency).
import { describe, expect, it } from "vitest";
import type { Check } from "./checker.ts";
import { runScenario, type RunOptions, type ScenarioResult } from "./run-scenario.ts";
import { findScenario } from "./scenarios.ts";

const base: RunOptions = {
  kind: process.env.CLUSTER === "compose" ? "compose" : "local",
  counter: "atomic",
  users: 12,
  durationMs: 3000,
  progressEverySeconds: 0,
  log: () => {},
};

const run = (name: string, o: Partial<RunOptions> = {}) => runScenario(findScenario(name), { ...base, ...o });
const failing = (r: ScenarioResult) => r.verdict.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.summary}`);
const checkOf = (r: ScenarioResult, name: string): Check => {
  const c = r.verdict.checks.find((x) => x.name === name);
  if (!c) throw new Error(`no check named ${name}`);
  return c;
};

describe("make verify scenarios (short)", { timeout: 90_000 }, () => {
  it("steady: counts every acknowledged increment exactly once, no request fails", async () => {
    const r = await run("steady");
    expect(failing(r)).toEqual([]);
    expect(r.verdict.totals.acknowledged).toBeGreaterThan(100);
    expect(checkOf(r, "exactly-once").ok).toBe(true);
  });

  it("kill-replica: loses and doubles nothing when a replica is SIGKILLed mid-run and started again", async () => {
    const r = await run("kill-replica");
    expect(failing(r)).toEqual([]);
    expect(r.history.events.map((e) => e.state)).toEqual(["down", "up"]);
    expect(r.history.events[0]!.label).toMatch(/^SIGKILL /);
  });

  it("drain-replica: a SIGTERM drain fails no request and leaves none indeterminate", async () => {
    const r = await run("drain-replica");
    expect(failing(r)).toEqual([]);
    expect(checkOf(r, "no failures").figures).toMatchObject({ failed: 0, indeterminate: 0, promised: "yes" });
  });

  it("rolling-restart: every replica restarted in turn under load, nothing failed or lost", async () => {
    const r = await run("rolling-restart");
    expect(failing(r)).toEqual([]);
    expect(r.history.events.filter((e) => e.state === "down")).toHaveLength(3);
  });

  it("restart-all: with every replica down at once, keyed retries still count each increment once", async () => {
    const r = await run("restart-all");
    expect(failing(r)).toEqual([]);
    // The outage was real: some attempts got no answer from any replica.
    expect(r.verdict.totals.indeterminate).toBeGreaterThan(0);
  });

  it("redis-restart: fast 503s while Redis is down (SIGTERM, then SIGKILL), nothing acknowledged lost", async () => {
    const r = await run("redis-restart", { durationMs: 4000 });
    expect(failing(r)).toEqual([]);
    expect(r.verdict.totals.failed).toBeGreaterThan(0);
    expect(checkOf(r, "fast failures").ok).toBe(true);
  });

  it("memory-store: the checker reports the MemoryStore cluster as inconsistent (negative control)", async () => {
    const r = await run("memory-store");
    expect(r.pass).toBe(true);
    expect(r.verdict.consistent).toBe(false);
    expect(checkOf(r, "bounds").ok).toBe(false);
    expect(checkOf(r, "session continuity").ok).toBe(false);
    expect(r.verdict.totals.lost).toBeGreaterThan(0);
  });

  it("concurrent-session: 5 requests in flight per session lose nothing with COUNTER=atomic", async () => {
    const r = await run("concurrent-session");
    expect(failing(r)).toEqual([]);
    expect(r.concurrency).toBe(5);
  });

  it("concurrent-session: the seed's COUNTER=session loses updates, and the checker says so", async () => {
    const r = await run("concurrent-session", { counter: "session" });
    expect(r.pass).toBe(false);
    expect(checkOf(r, "bounds").ok).toBe(false);
    expect(r.verdict.totals.lost).toBeGreaterThan(0);
    expect(r.verdict.totals.duplicated).toBe(0);
  });
});
