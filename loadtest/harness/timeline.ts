// Draws a run as an SVG timeline, by hand and without dependencies: one lane per replica
// (plus Redis and "no replica" for answers nginx made itself or that never came), requests
// binned over time and coloured by outcome, down time shaded, faults marked.
import { downIntervals, type Verdict } from "./checker.ts";
import type { History, Outcome } from "./history.ts";

type Kind = Outcome | "replayed";
const COLORS: Record<Kind, string> = {
  ok: "#2e9d5b",
  replayed: "#2c7fb8",
  failed: "#d64541",
  indeterminate: "#f39c12",
};
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function timelineSvg(h: History, verdict: Verdict, title: string): string {
  const NO_REPLICA = "no replica";
  const lanes = [...h.replicas, ...(h.events.some((e) => e.target === "redis") ? ["redis"] : []), NO_REPLICA];
  const left = 110;
  const width = 900;
  const plotW = width - left - 20;
  const laneH = 46;
  const top = 64;
  const labelled = h.events.filter((e) => e.label);
  const height = top + lanes.length * laneH + 56 + labelled.length * 15;

  const attempts = h.ops.flatMap((op) => op.attempts);
  const t0 = 0;
  const t1 = Math.max(h.loadEnd, ...attempts.map((a) => a.t1), ...h.events.map((e) => e.t), 1);
  const x = (t: number) => left + ((t - t0) / (t1 - t0)) * plotW;
  const bins = 300;
  const binMs = (t1 - t0) / bins;

  // counts[lane][bin][outcome]
  const counts = new Map<string, Record<Kind, number>[]>();
  for (const lane of lanes)
    counts.set(
      lane,
      Array.from({ length: bins }, () => ({ ok: 0, replayed: 0, failed: 0, indeterminate: 0 })),
    );
  for (const a of attempts) {
    const lane = a.replica && counts.has(a.replica) ? a.replica : NO_REPLICA;
    const b = Math.min(bins - 1, Math.max(0, Math.floor((a.t1 - t0) / binMs)));
    counts.get(lane)![b]![a.replayed ? "replayed" : a.outcome]++;
  }
  let peak = 1;
  for (const lane of counts.values())
    for (const c of lane) peak = Math.max(peak, c.ok + c.replayed + c.failed + c.indeterminate);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  const t = verdict.totals;
  const headline =
    `${t.acknowledged} increments acknowledged, final counts sum to ${t.final}: ${t.lost} lost, ` +
    `${t.duplicated} duplicated`;
  out.push(`<text x="12" y="22" font-size="15" font-weight="600">${esc(title)}</text>`);
  out.push(`<text x="12" y="42" fill="${verdict.consistent ? COLORS.ok : COLORS.failed}">${esc(headline)}</text>`);

  const down = downIntervals({ ...h, loadEnd: t1 });
  lanes.forEach((lane, i) => {
    const y = top + i * laneH;
    out.push(`<text x="${left - 8}" y="${y + laneH / 2 + 4}" text-anchor="end">${esc(lane)}</text>`);
    out.push(`<rect x="${left}" y="${y + 4}" width="${plotW}" height="${laneH - 8}" fill="#f6f6f6"/>`);
    for (const [a, b] of down.get(lane) ?? []) {
      out.push(
        `<rect x="${x(a).toFixed(1)}" y="${y + 4}" width="${Math.max(1, x(b) - x(a)).toFixed(1)}" ` +
          `height="${laneH - 8}" fill="#bbb" opacity="0.6"><title>${esc(lane)} down ` +
          `${(a / 1000).toFixed(2)}-${(b / 1000).toFixed(2)} s</title></rect>`,
      );
    }
    const base = y + laneH - 4;
    const full = laneH - 8;
    const bw = plotW / bins;
    counts.get(lane)!.forEach((c, b) => {
      let yy = base;
      for (const o of ["ok", "replayed", "indeterminate", "failed"] as const) {
        if (!c[o]) continue;
        // Anything but a plain ok is drawn at least 3 px tall, so a single one stands out.
        const hgt = Math.max(o === "ok" ? 0.5 : 3, (c[o] / peak) * full);
        yy -= hgt;
        out.push(
          `<rect x="${(left + b * bw).toFixed(1)}" y="${yy.toFixed(1)}" width="${bw.toFixed(2)}" ` +
            `height="${hgt.toFixed(1)}" fill="${COLORS[o]}"/>`,
        );
      }
    });
  });

  const bottom = top + lanes.length * laneH;
  for (const e of labelled) {
    const ex = x(e.t).toFixed(1);
    const color = e.state === "down" ? COLORS.failed : e.state === "up" ? COLORS.ok : "#555";
    out.push(
      `<line x1="${ex}" y1="${top - 4}" x2="${ex}" y2="${bottom}" stroke="${color}" ` +
        `stroke-dasharray="4 3"><title>${esc(e.label)} at ${(e.t / 1000).toFixed(2)} s</title></line>`,
    );
    out.push(
      `<text x="${ex}" y="${top - 8}" fill="${color}" font-size="10" ` +
        `text-anchor="middle">${e.state === "down" ? "▼" : e.state === "up" ? "▲" : "•"}</text>`,
    );
  }
  // Axis: seconds.
  const step = t1 > 20_000 ? 5000 : t1 > 6000 ? 1000 : 500;
  for (let s = 0; s <= t1; s += step) {
    out.push(`<line x1="${x(s).toFixed(1)}" y1="${bottom}" x2="${x(s).toFixed(1)}" y2="${bottom + 4}" stroke="#333"/>`);
    out.push(`<text x="${x(s).toFixed(1)}" y="${bottom + 16}" text-anchor="middle" fill="#333">${s / 1000}s</text>`);
  }
  const legendY = bottom + 40;
  let lx = left;
  for (const [label, color] of [
    ["ok", COLORS.ok],
    ["ok, replayed from its key", COLORS.replayed],
    ["indeterminate", COLORS.indeterminate],
    ["failed", COLORS.failed],
    ["down", "#bbb"],
  ] as const) {
    out.push(
      `<rect x="${lx}" y="${legendY - 10}" width="12" height="12" fill="${color}"/><text x="${lx + 16}" ` +
        `y="${legendY}">${label}</text>`,
    );
    lx += 30 + label.length * 7;
  }
  labelled.forEach((e, i) => {
    const color = e.state === "down" ? COLORS.failed : COLORS.ok;
    out.push(
      `<text x="${left}" y="${legendY + 18 + i * 15}" fill="${color}" ` +
        `font-size="11">${(e.t / 1000).toFixed(2)} s  ${e.state === "down" ? "▼" : e.state === "up" ? "▲" : "•"} ` +
        `${esc(e.label)}</text>`,
    );
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
