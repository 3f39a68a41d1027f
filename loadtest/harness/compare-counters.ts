// `make compare-counters`: the seed's COUNTER=session against COUNTER=atomic, side by side
// in one run on two clusters that are up at the same time: lost updates at per-session
// concurrency 1, 5 and 20; the exactly-once check under kill-replica (SIGKILL) repeated;
// and throughput through nginx as a ratio to the seed's counter, rounds interleaved so
// both modes see the same machine noise.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Cluster } from "../../infra/cluster/cluster.ts";
import { chooseKind, createCluster } from "../../infra/cluster/open.ts";
import { LOAD_APP_ENV } from "../client/load-env.ts";
import { fileStamp, onInterrupt } from "../lib/process.ts";
import { median, percentOf } from "../lib/stats.ts";
import { activeClusters, runScenario, type RunOptions, type ScenarioResult } from "./run-scenario.ts";
import { findScenario, type Scenario } from "./scenarios.ts";

const { values } = parseArgs({
  options: {
    cluster: { type: "string", default: process.env.CLUSTER || "auto" },
    users: { type: "string", default: process.env.USERS || "10" },
    increments: { type: "string", default: process.env.INCREMENTS || "200" },
    kills: { type: "string", default: process.env.KILLS || "10" },
    rounds: { type: "string", default: process.env.ROUNDS || "5" },
    seconds: { type: "string", default: process.env.SECONDS_PER_ROUND || "5" },
    reports: { type: "string", default: resolve(import.meta.dirname, "../reports") },
  },
});
const num = (name: string, v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 100_000)
    throw new Error(`${name} must be a whole number from 1 to 100000, not "${v}"`);
  return n;
};
const kind = chooseKind(values.cluster);
const users = num("USERS", values.users);
const increments = num("INCREMENTS", values.increments);
const kills = num("KILLS", values.kills);
const rounds = num("ROUNDS", values.rounds);
const seconds = num("SECONDS_PER_ROUND", values.seconds);

type Mode = { label: string; counter: "atomic" | "session"; keyed: boolean; cluster: Cluster };
const quiet: Pick<RunOptions, "log" | "progressEverySeconds"> = { log: () => {}, progressEverySeconds: 0 };
const plain: Scenario = { name: "load", title: "no faults", expect: {} };

function table(head: string[], rows: (string | number)[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

async function open(counter: "atomic" | "session"): Promise<Cluster> {
  const c = createCluster(kind, {
    replicas: 3,
    port: 0,
    appEnv: { ...LOAD_APP_ENV, COUNTER: counter },
    dir: mkdtempSync(join(tmpdir(), `compare-${counter}-`)),
    clientLimits: false,
  });
  activeClusters.add(c);
  await c.start();
  return c;
}

async function main(): Promise<void> {
  const out: string[] = [`# COUNTER=session vs COUNTER=atomic, side by side (${kind} clusters, 3 replicas each)`, ""];
  const json: Record<string, unknown> = { kind, users, increments, kills, rounds, seconds };
  try {
    console.log(`starting two ${kind} clusters of 3 replicas: COUNTER=session and COUNTER=atomic`);
    await measure(await open("session"), await open("atomic"), out, json);
  } finally {
    await Promise.allSettled([...activeClusters].map((c) => c.stop()));
    activeClusters.clear();
  }
  const dir = resolve(values.reports, `${fileStamp()}-compare`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "compare.md"), `${out.join("\n")}\n`);
  writeFileSync(join(dir, "compare.json"), `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\n${out.join("\n")}\nreport: ${relative(process.cwd(), join(dir, "compare.md"))}`);
}

async function measure(session: Cluster, atomic: Cluster, out: string[], json: Record<string, unknown>): Promise<void> {
  const modes: Mode[] = [
    { label: "session (seed)", counter: "session", keyed: false, cluster: session },
    { label: "atomic", counter: "atomic", keyed: false, cluster: atomic },
    { label: "atomic + keys", counter: "atomic", keyed: true, cluster: atomic },
  ];
  const run = (m: Mode, s: Scenario, o: Partial<RunOptions>): Promise<ScenarioResult> =>
    runScenario(s, {
      kind,
      counter: m.counter,
      keyed: m.keyed,
      cluster: m.cluster,
      users,
      durationMs: 120_000,
      ...quiet,
      ...o,
    });
  // 1. Lost updates: each session gets `increments` with C in flight on it. Two shapes: the
  // issue's one session x 1000, and several sessions loading the cluster together.
  const lostRows: (string | number)[][] = [];
  const lostJson = [];
  for (const [sessions, perSession] of [
    [1, 1000],
    [users, increments],
  ] as const) {
    for (const c of [1, 5, 20]) {
      for (const m of [modes[0]!, modes[2]!]) {
        const r = await run(m, plain, { users: sessions, concurrency: c, opsPerUser: perSession });
        const t = r.verdict.totals;
        lostRows.push([
          m.label,
          `${sessions} x ${perSession}`,
          c,
          t.acknowledged,
          t.final,
          t.lost,
          percentOf(t.lost, t.acknowledged),
          t.duplicated,
          r.verdict.consistent ? "consistent" : "**violated**",
        ]);
        lostJson.push({
          mode: m.label,
          sessions,
          perSession,
          concurrency: c,
          totals: t,
          consistent: r.verdict.consistent,
        });
        console.log(
          `lost updates: ${m.label.padEnd(15)} ${sessions} x ${perSession} C=${String(c).padEnd(3)} ` +
            `acknowledged ${t.acknowledged}, final ${t.final}, lost ${t.lost} ` +
            `(${percentOf(t.lost, t.acknowledged)})`,
        );
      }
    }
  }
  out.push(
    "## Lost updates (sessions x increments each, C in flight per session)",
    "",
    table(
      ["counter", "sessions x increments", "C", "acknowledged", "final", "lost", "lost rate", "duplicated", "checker"],
      lostRows,
    ),
    "",
  );
  json.lostUpdates = lostJson;

  // 2. kill-replica with SIGKILL, repeated: the strict check with keys, the bounds without.
  const killRows: (string | number)[][] = [];
  const killJson = [];
  const killScenario = findScenario("kill-replica");
  for (const m of [modes[2]!, modes[0]!]) {
    const sum = { runs: 0, passed: 0, acked: 0, final: 0, lost: 0, dup: 0, indet: 0, unresolved: 0, replayed: 0 };
    for (let i = 0; i < kills; i++) {
      const r = await run(m, killScenario, { users: 20, durationMs: 4000 });
      const t = r.verdict.totals;
      const exact = r.verdict.checks.find((c) => c.name === "exactly-once");
      sum.runs++;
      if (r.pass) sum.passed++;
      sum.acked += t.acknowledged;
      sum.final += t.final;
      sum.lost += t.lost;
      sum.dup += t.duplicated;
      sum.indet += t.indeterminate;
      sum.replayed += t.replayed;
      sum.unresolved += Number(exact?.figures.unresolved ?? 0);
      const failed = r.verdict.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.summary}`);
      killJson.push({ mode: m.label, run: i + 1, pass: r.pass, totals: t, exactlyOnce: exact?.ok ?? null, failed });
      const exactly = exact ? `, exactly-once ${exact.ok ? "held" : "FAILED"}` : "";
      console.log(
        `kill-replica ${i + 1}/${kills} ${m.label.padEnd(15)} ${r.pass ? "PASS" : "FAIL"}: acknowledged ` +
          `${t.acknowledged}, final ${t.final}, lost ${t.lost}, duplicated ${t.duplicated}, indeterminate ` +
          `attempts ${t.indeterminate}, replays ${t.replayed}${exactly}` +
          `${failed.length ? `; failed: ${failed.join("; ")}` : ""}`,
      );
    }
    killRows.push([
      m.label,
      `${sum.passed}/${sum.runs}`,
      sum.acked,
      sum.final,
      sum.lost,
      sum.dup,
      sum.indet,
      m.keyed ? sum.replayed : "-",
      m.keyed ? sum.unresolved : "-",
    ]);
  }
  out.push(
    `## kill-replica (SIGKILL mid-run, start again), ${kills} runs per counter, 20 users, 4 s`,
    "",
    table(
      [
        "counter",
        "runs passed",
        "acknowledged",
        "final",
        "lost",
        "duplicated",
        "indeterminate attempts",
        "replays",
        "keys unresolved",
      ],
      killRows,
    ),
    "",
  );
  json.killReplica = killJson;

  // 3. Throughput through nginx: 50 sequential users, rounds interleaved across modes.
  const tput = new Map<string, number[]>(modes.map((m) => [m.label, []]));
  for (let round = 1; round <= rounds; round++) {
    for (const m of modes) {
      const r = await run(m, plain, { users: 50, concurrency: 1, durationMs: seconds * 1000 });
      tput.get(m.label)!.push(r.throughput);
      console.log(`throughput round ${round}/${rounds} ${m.label.padEnd(15)} ${Math.round(r.throughput)} increments/s`);
    }
  }
  // The ratio is taken within each round (same minute, same neighbours), then the median.
  const base = tput.get(modes[0]!.label)!;
  out.push(
    `## Throughput through nginx (50 users, 1 in flight each, ${rounds} interleaved rounds of ${seconds} s)`,
    "",
    table(
      ["counter", "increments/s per round", "median", "ratio to session (seed), median of rounds"],
      modes.map((m) => {
        const xs = tput.get(m.label)!;
        return [
          m.label,
          xs.map(Math.round).join(", "),
          Math.round(median(xs)),
          `${median(xs.map((x, i) => x / base[i]!)).toFixed(2)}x`,
        ];
      }),
    ),
    "",
  );
  json.throughput = Object.fromEntries([...tput].map(([k, v]) => [k, v.map(Math.round)]));
}

onInterrupt(() => Promise.allSettled([...activeClusters].map((c) => c.stop())));

main().catch((err: Error) => {
  console.error(`compare-counters: ${err.message}`);
  process.exitCode = 2;
});
