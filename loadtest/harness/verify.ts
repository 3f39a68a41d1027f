// `make verify`: runs the named scenarios (all by default) against fresh clusters, prints
// progress and a verdict table, writes reports, and exits 1 when any scenario fails.
// Knobs (environment or flags): SCENARIO, CLUSTER=auto|local|compose|swarm, COUNTER=atomic|session,
// USERS, DURATION (seconds per scenario), CONCURRENCY (overrides the scenario's),
// REDIS=single|sentinel|cluster, REDIS_WAIT_REPLICAS (the app's WAIT after each increment).
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseRedisTopology } from "../../infra/cluster/cluster.ts";
import { chooseKind } from "../../infra/cluster/open.ts";
import { fileStamp, onInterrupt } from "../lib/process.ts";
import { failureLines, verdictTable, writeReports } from "./verify-report.ts";
import { activeClusters, runScenario, type ScenarioResult } from "./run-scenario.ts";
import { findScenario, scenarios } from "./scenarios.ts";

const { values } = parseArgs({
  options: {
    scenario: { type: "string", default: process.env.SCENARIO || "all" },
    cluster: { type: "string", default: process.env.CLUSTER || "auto" },
    counter: { type: "string", default: process.env.COUNTER || "atomic" },
    users: { type: "string", default: process.env.USERS || "50" },
    duration: { type: "string", default: process.env.DURATION || "10" },
    concurrency: { type: "string", default: process.env.CONCURRENCY || "" },
    redis: { type: "string", default: process.env.REDIS || "single" },
    "wait-replicas": { type: "string", default: process.env.REDIS_WAIT_REPLICAS || "0" },
    reports: { type: "string", default: resolve(import.meta.dirname, "../reports") },
  },
});

function positive(name: string, v: string, max: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > max)
    throw new Error(`${name} must be a number from 1 to ${max}, not "${v}"`);
  return n;
}

async function main(): Promise<number> {
  const redis = parseRedisTopology(values.redis);
  // Redis Cluster runs as local processes only; CLUSTER=auto picks them for it.
  const kind = redis === "cluster" && values.cluster === "auto" ? "local" : chooseKind(values.cluster);
  if (values.counter !== "atomic" && values.counter !== "session")
    throw new Error(`COUNTER must be atomic or session, not "${values.counter}"`);
  const counter = values.counter;
  const users = Math.round(positive("USERS", values.users, 2000));
  const durationMs = positive("DURATION", values.duration, 3600) * 1000;
  const concurrency = values.concurrency ? Math.round(positive("CONCURRENCY", values.concurrency, 200)) : undefined;
  const waitReplicas = Number(values["wait-replicas"]);
  if (!Number.isInteger(waitReplicas) || waitReplicas < 0 || waitReplicas > 16)
    throw new Error(`REDIS_WAIT_REPLICAS must be a whole number from 0 to 16, not "${values["wait-replicas"]}"`);
  // "all" leaves out the orchestrator-only scenarios elsewhere, and the failover ones when Redis cannot fail over.
  const applies = (s: (typeof scenarios)[number]) => !s.kinds || s.kinds.includes(kind);
  const chosen =
    values.scenario === "all"
      ? scenarios.filter((s) => applies(s) && (redis !== "single" || !s.needsFailover))
      : values.scenario.split(",").map((n) => findScenario(n.trim()));
  for (const s of chosen)
    if (!applies(s)) throw new Error(`scenario ${s.name} runs on CLUSTER=${s.kinds!.join("|")} only, not ${kind}`);

  const results: ScenarioResult[] = [];
  const errors: string[] = [];
  for (const s of chosen) {
    let r: ScenarioResult;
    try {
      r = await runScenario(s, { kind, counter, users, durationMs, concurrency, redis, waitReplicas });
    } catch (err) {
      // The cluster could not start or stop: no verdict, but the other scenarios still run.
      errors.push(`${s.name}: could not run: ${(err as Error).message}`);
      console.log(`[${s.name}] ERROR: ${(err as Error).message}\n`);
      continue;
    }
    console.log(
      `[${s.name}] ${r.pass ? "PASS" : "FAIL"}${r.control ? " (negative control)" : ""}: ` +
        `${r.verdict.totals.acknowledged} acknowledged, ${r.verdict.totals.lost} lost, ` +
        `${r.verdict.totals.duplicated} duplicated\n`,
    );
    results.push(r);
  }

  const summary = writeReports(results, resolve(values.reports, `${fileStamp()}-${counter}`));
  console.log(`\n${verdictTable(results)}\n`);
  for (const line of [...failureLines(results), ...errors]) console.log(`  ${line}`);
  console.log(`\nreports: ${summary} (and a .json, .md and .svg timeline per scenario)`);
  const failed = [...results.filter((r) => !r.pass).map((r) => r.scenario), ...errors.map((e) => e.split(":")[0]!)];
  console.log(
    failed.length ? `verify: FAILED (${failed.join(", ")})` : `verify: all ${results.length} scenarios passed`,
  );
  return failed.length ? 1 : 0;
}

onInterrupt((signal) => {
  console.error(`\nverify: ${signal}, stopping ${activeClusters.size} cluster(s)...`);
  return Promise.allSettled([...activeClusters].map((c) => c.stop()));
});

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    console.error(`verify: ${err.message}`);
    process.exitCode = 2;
  },
);
