// Turns scenario results into the verdict table printed at the end, and the JSON, Markdown
// and SVG reports written under loadtest/reports/ (git-ignored).
import { mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { Check } from "./checker.ts";
import type { ScenarioResult } from "./run-scenario.ts";
import { timelineSvg } from "./timeline.ts";

const CHECKS: [name: string, short: string][] = [
  ["bounds", "bounds"],
  ["exactly-once", "exact"],
  ["monotonic", "monotonic"],
  ["session continuity", "session"],
  ["spread", "spread"],
  ["no failures", "no-fail"],
  ["fast failures", "fast-503"],
  ["healthy at end", "healthy"],
];

const mark = (c: Check | undefined) => (c === undefined ? "-" : c.ok ? "ok" : "FAIL");

export function verdictLabel(r: ScenarioResult): string {
  if (r.control) return r.pass ? "PASS (caught)" : "FAIL (missed)";
  return r.pass ? "PASS" : "FAIL";
}

/** The plain-text verdict table for the terminal: one row per scenario. */
export function verdictTable(results: ScenarioResult[]): string {
  const head = [
    "scenario",
    "counter",
    "verdict",
    "acked",
    "final",
    "lost",
    "dup",
    "failed",
    "indet",
    "replayed",
    ...CHECKS.map(([, s]) => s),
  ];
  const rows = results.map((r) => {
    const t = r.verdict.totals;
    const by = new Map(r.verdict.checks.map((c) => [c.name, c]));
    return [
      r.scenario,
      r.counter,
      verdictLabel(r),
      t.acknowledged,
      t.final,
      t.lost,
      t.duplicated,
      t.failed,
      t.indeterminate,
      t.replayed,
      ...CHECKS.map(([n]) => mark(by.get(n))),
    ].map(String);
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

/** Why each failed check failed, for the lines under the table. */
export function failureLines(results: ScenarioResult[]): string[] {
  const out: string[] = [];
  for (const r of results) {
    for (const c of r.verdict.checks)
      if (!c.ok) out.push(`${r.scenario}: ${c.name}: ${c.summary}${r.control ? " (expected: negative control)" : ""}`);
  }
  return out;
}

function scenarioMarkdown(r: ScenarioResult, svgName: string): string {
  const t = r.verdict.totals;
  const lines = [
    `# ${r.scenario}: ${verdictLabel(r)}`,
    "",
    `${r.title}.${r.control ? ` Negative control: ${r.control}.` : ""}`,
    "",
    `Cluster: ${r.kind}, ${r.history.replicas.length} replicas, COUNTER=${r.counter}. Load: ${r.users} ` +
      `users, ${r.concurrency} in flight per session, ` +
      (r.history.keyed
        ? "an Idempotency-Key per increment, retried until definite"
        : "no keys (each attempt stands alone)") +
      ", " +
      `${(r.durationMs / 1000).toFixed(0)} s planned, ` +
      `${((r.history.loadEnd - r.history.loadStart) / 1000).toFixed(1)} s run.`,
    "",
    `${t.acknowledged} increments acknowledged, final counts sum to ${t.final}: **${t.lost} lost, ` +
      `${t.duplicated} duplicated**. Attempts: ${t.attempts} (${t.ok} ok, ${t.failed} failed, ` +
      `${t.indeterminate} indeterminate, ${t.replayed} replays). Throughput ${Math.round(r.throughput)} ` +
      `acknowledged increments/s.`,
    "",
    "| check | result | details |",
    "|---|---|---|",
    ...r.verdict.checks.map((c) => `| ${c.name} | ${c.ok ? "ok" : "**FAIL**"} | ${c.summary.replace(/\|/g, "\\|")} |`),
    "",
    `![timeline](${svgName})`,
    "",
  ];
  if (r.history.events.length) {
    lines.push("| time since start | event |", "|---|---|");
    for (const e of r.history.events) if (e.label) lines.push(`| ${(e.t / 1000).toFixed(2)} s | ${e.label} |`);
    lines.push("");
  }
  const worst = r.verdict.sessions
    .filter((s) => s.lost || s.duplicated || s.final === undefined || s.finalSessionChanged)
    .slice(0, 10);
  if (worst.length) {
    lines.push(
      "Sessions out of bounds (first 10):",
      "",
      "| user | acknowledged | indeterminate | final | lost | duplicated |",
      "|---|---|---|---|---|---|",
    );
    for (const s of worst)
      lines.push(
        `| ${s.user} | ${s.acknowledged} | ${s.indeterminate} | ${s.final ?? "unread"} | ${s.lost} | ${s.duplicated} |`,
      );
    lines.push("");
  }
  return lines.join("\n");
}

export function summaryMarkdown(results: ScenarioResult[]): string {
  const head = ["scenario", "verdict", "acked", "final", "lost", "dup", "failed", "indet", ...CHECKS.map(([, s]) => s)];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`];
  for (const r of results) {
    const t = r.verdict.totals;
    const by = new Map(r.verdict.checks.map((c) => [c.name, c]));
    lines.push(
      `| [${r.scenario}](${r.scenario}.md) | ${verdictLabel(r)} | ${t.acknowledged} | ${t.final} | ` +
        `${t.lost} | ${t.duplicated} | ${t.failed} | ${t.indeterminate} | ` +
        `${CHECKS.map(([n]) => mark(by.get(n))).join(" | ")} |`,
    );
  }
  return lines.join("\n");
}

/** Writes <dir>/<scenario>.{json,md,svg} and <dir>/summary.{json,md}; returns the summary path. */
export function writeReports(results: ScenarioResult[], dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const r of results) {
    const svg = `${r.scenario}.svg`;
    writeFileSync(
      join(dir, svg),
      timelineSvg(r.history, r.verdict, `${r.scenario} (${r.kind}, COUNTER=${r.counter}): ${verdictLabel(r)}`),
    );
    writeFileSync(join(dir, `${r.scenario}.md`), scenarioMarkdown(r, svg));
    writeFileSync(join(dir, `${r.scenario}.json`), JSON.stringify(r));
  }
  const summary = {
    results: results.map((r) => ({
      scenario: r.scenario,
      pass: r.pass,
      control: r.control ?? null,
      kind: r.kind,
      counter: r.counter,
      users: r.users,
      concurrency: r.concurrency,
      durationMs: r.durationMs,
      throughput: Math.round(r.throughput),
      totals: r.verdict.totals,
      checks: r.verdict.checks,
    })),
  };
  writeFileSync(join(dir, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
  const md = [
    "# make verify",
    "",
    summaryMarkdown(results),
    "",
    ...failureLines(results).map((l) => `- ${l}`),
    "",
  ].join("\n");
  writeFileSync(join(dir, "summary.md"), md);
  return relative(process.cwd(), join(dir, "summary.md"));
}
