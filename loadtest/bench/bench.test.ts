// `make bench QUICK=1` end to end against real nginx, Redis and Node processes: the report
// is produced and well formed. It asserts shape and sanity, never a speed.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../lib/process.ts";
import type { Report } from "./bench.ts";

const out = mkdtempSync(join(tmpdir(), "bench-report-"));

describe("make bench QUICK=1", { timeout: 240_000 }, () => {
  let run: SpawnSyncReturns<string>;
  beforeAll(() => {
    // -o: never reinstall node_modules (npm ci) under the running test runner; `make test`
    // has just installed them.
    run = spawnSync("make", ["--no-print-directory", "-o", "node_modules/.installed", "bench", "QUICK=1"], {
      cwd: repoRoot,
      env: { ...process.env, BENCH_OUT: out },
      encoding: "utf8",
      timeout: 230_000,
    });
  }, 240_000);
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("exits 0 and prints a progress line per scenario, then the table", () => {
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/^\[ ?\d+\] B0 nginx alone/m);
    expect(run.stdout).toContain("| Scenario | req/s | ×B1 | ×B0 |");
    expect(run.stdout).toContain("### Goals");
  });

  it("writes a JSON report with every scenario, its ratios, latencies and CPU per request", () => {
    const report = JSON.parse(readFileSync(join(out, "bench-latest.json"), "utf8")) as Report;
    expect(report.meta.quick).toBe(true);
    expect(report.meta.machine.cores).toBeGreaterThan(0);
    expect(report.baselines.b0.runs).toHaveLength(2);
    expect(report.baselines.b1.runs).toHaveLength(2);
    const ids = report.scenarios.map((s) => s.id);
    for (const id of [
      "direct-session",
      "direct-atomic",
      "direct-keyed",
      "direct-memory",
      "nginx1-keyed",
      "nginx2-keyed",
      "nginx3-keyed",
      "nginx3-keyed-new",
      "nginx3-keyed-nokeepalive",
      "nginx3-hello",
      "nginx3-hello-keyed",
      "nginx3-hello-keyed-new",
      "nginx3-keyed-redis-cluster",
      "nginx3-keyed-sentinel-wait1",
      "growth-large-1",
      "growth-small-2",
    ]) {
      expect(ids).toContain(id);
    }
    for (const s of report.scenarios) {
      expect(s.result.requests, s.id).toBeGreaterThan(0);
      expect(s.ratioB1, s.id).toBeCloseTo(s.result.rps / report.baselines.b1.rps, 6);
      expect(s.ratioB0, s.id).toBeCloseTo(s.result.rps / report.baselines.b0.rps, 6);
      const l = s.result.latencyMs;
      expect(l.p50, s.id).toBeGreaterThan(0);
      expect(l.p50).toBeLessThanOrEqual(l.p97_5);
      expect(l.p97_5).toBeLessThanOrEqual(l.p99);
      // Every request the harness sends is valid: anything but 2xx is a harness or app bug.
      expect(s.result.non2xx, `${s.id}: ${JSON.stringify(s.result.statusCodes)}`).toBe(0);
      // The topology's ceiling (nginx over hello-worlds) has no Redis.
      for (const part of s.store === null ? ["node", "nginx", "loadgen"] : ["node", "nginx", "redis", "loadgen"])
        expect(Number.isFinite(s.cpuUsPerReq[part]), `${s.id} ${part}`).toBe(true);
    }
    // The exactly-once path of a returning visitor costs Redis one script per request.
    const keyed = report.scenarios.find((s) => s.id === "nginx3-keyed")!;
    expect(keyed.redisPerReq?.evalsha).toBeGreaterThanOrEqual(0.99);
    // ... and with REDIS_WAIT_REPLICAS=1 a WAIT after it, on the Sentinels' primary.
    const wait1 = report.scenarios.find((s) => s.id === "nginx3-keyed-sentinel-wait1")!;
    expect(wait1.redisPerReq?.wait).toBeGreaterThanOrEqual(0.99);
    const growth = report.growth as {
      memory: { bytesPerSession: number; layouts: Record<string, { bytesPerSession: number }> };
      p99: { small: number[]; large: number[]; ratio: number };
    };
    expect(growth.memory.bytesPerSession).toBeGreaterThan(0);
    expect(Object.keys(growth.memory.layouts)).toEqual([
      "two-keys",
      "count-in-json",
      "with-idempotency-key",
      "one-hash",
      "one-hash-short-id",
    ]);
    // QUICK: one pair (few, many, few); a full run alternates two.
    expect(growth.p99.small).toHaveLength(2);
    expect(growth.p99.large).toHaveLength(1);
    expect(Number.isFinite(growth.p99.ratio)).toBe(true);
    expect(report.goals.length).toBeGreaterThanOrEqual(5);
    // Goals 1 and 3 each come with their reference, measured: hello-worlds behind the same nginx
    // that make one Redis round trip (one script) per exactly-once request.
    const references = report.goals.filter((g) => g.met === null && g.goal.includes("one Redis round trip"));
    expect(references).toHaveLength(2);
    const shapes = { exactlyOnce: "nginx3-hello-keyed", newVisitors: "nginx3-hello-keyed-new" } as const;
    for (const [name, id] of Object.entries(shapes)) {
      const shape = report.scenarios.find((s) => s.id === id)!;
      expect(shape.result.non2xx, id).toBe(0);
      expect(shape.redisPerReq?.evalsha, id).toBeGreaterThanOrEqual(0.99);
      expect(report.references[name as keyof typeof shapes]?.rps, name).toBeGreaterThan(0);
    }
    // The goals also ran in turns with their references (QUICK: one round), and goals 1 and 3 say so.
    expect(report.paired).toHaveLength(1);
    for (const run of Object.values(report.paired[0]!)) expect(run.rps).toBeGreaterThan(0);
    const byGoal = (prefix: string) => report.goals.find((g) => g.goal.startsWith(prefix))!;
    expect(byGoal("exactly-once counter, nginx + 3").measured).toContain("taking turns with it");
    expect(byGoal("exactly-once, new visitors").measured).toContain("taking turns with it");
    for (const p of [report.profile, report.profileNewVisitors]) {
      const profile = p as { top?: unknown[]; error?: string };
      expect(profile.error).toBeUndefined();
      expect(profile.top?.length).toBeGreaterThan(0);
    }
  });

  it("writes the Markdown report and an SVG chart with a bar per scenario", () => {
    const report = JSON.parse(readFileSync(join(out, "bench-latest.json"), "utf8")) as Report;
    const svg = readFileSync(join(out, "bench-latest.svg"), "utf8");
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    for (const s of report.scenarios)
      expect(svg).toContain(s.label.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;"));
    expect(svg).toContain("p99");
    const md = readFileSync(join(out, "bench-latest.md"), "utf8");
    expect(md).toContain("| Scenario | req/s |");
    expect(md).toMatch(
      /Redis topologies vs one Redis.*Sentinel \+ REDIS_WAIT_REPLICAS=1: [\d.]+x.*Redis Cluster.*: [\d.]+x/,
    );
    expect(md.split("\n").filter((l) => l.startsWith("| ") && / \| \d+ \| [\d.]+ \| [\d.]+ \| /.test(l)).length).toBe(
      report.scenarios.length + 4,
    );
  });
});
