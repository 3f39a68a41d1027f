// Turns a `make bench` run into its Markdown report and an SVG bar chart (throughput as a
// ratio to B1, and p50/p97.5/p99 latency per scenario), drawn by hand: no chart library.
import type { Report } from "./bench.ts";

const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "-");
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "-");
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "-");

function when(r: Report): string {
  const m = r.meta.machine;
  return (
    `${r.meta.date.slice(0, 10)}, ${m.cores} cores (${m.cpu}), ${m.os}, ` +
    `Node ${m.node}, nginx ${m.nginx}, Redis ${m.redis}, autocannon ${m.autocannon}`
  );
}

export function renderMarkdown(r: Report): string {
  const out: string[] = [];
  const b = r.baselines;
  out.push(`## make bench${r.meta.quick ? " (QUICK: numbers too short to compare)" : ""}`);
  out.push("");
  out.push(`${when(r)}.`);
  out.push(
    `c=${r.meta.connections} connections, ${r.meta.secondsPerScenario} s per ` +
      `scenario${r.meta.warmupSeconds ? ` after a ${r.meta.warmupSeconds} s warm-up` : ""}` +
      `${r.meta.warmupFreshSeconds ? ` (${r.meta.warmupFreshSeconds} s on freshly started processes)` : ""}, ` +
      `${r.meta.seconds} s in all. Load average ${r.meta.loadAverage.start.map(f2).join(" ")} at the start, ` +
      `${r.meta.loadAverage.end.map(f2).join(" ")} at the end.`,
  );
  out.push("");
  out.push(
    `Baselines, each the mean of a run at the start and one at the end: **B0** nginx alone answering 200: ` +
      `${f0(b.b0.rps)} req/s (${b.b0.runs.map((x) => f0(x.rps)).join(", ")}); **B1** bare Express 5 ` +
      `hello-world: ${f0(b.b1.rps)} req/s (${b.b1.runs.map((x) => f0(x.rps)).join(", ")}).`,
  );
  if ("missing" in b.wrk) out.push(`wrk: ${b.wrk.missing}.`);
  else
    out.push(
      `wrk -t2 drives ${f0(b.wrk.rps)} req/s through the same nginx, ` +
        `**${f2(b.wrkOverAutocannon ?? Number.NaN)}x** what autocannon (one JS thread) does: B0 is ` +
        `autocannon's ceiling on this box, not nginx's.`,
    );
  out.push("");
  out.push(
    "| Scenario | req/s | ×B1 | ×B0 | p50 ms | p97.5 ms | p99 ms | errors | non-2xx | CPU µs/req: node | " +
      "nginx | redis | loadgen |",
  );
  out.push("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
  const row = (
    label: string,
    x: { rps: number; latencyMs: { p50: number; p97_5: number; p99: number }; errors: number; non2xx: number },
    cpu: Record<string, number>,
    rb1: number,
    rb0: number,
  ) =>
    out.push(
      `| ${label} | ${f0(x.rps)} | ${f2(rb1)} | ${f2(rb0)} | ${f1(x.latencyMs.p50)} | ` +
        `${f1(x.latencyMs.p97_5)} | ${f1(x.latencyMs.p99)} | ${x.errors} | ${x.non2xx} | ` +
        `${f0(cpu.node ?? Number.NaN)} | ${f0(cpu.nginx ?? Number.NaN)} | ${f0(cpu.redis ?? Number.NaN)} | ` +
        `${f0(cpu.loadgen ?? Number.NaN)} |`,
    );
  const cpuOf = (x: { cpuMs: Record<string, number>; requests: number }) =>
    Object.fromEntries(Object.entries(x.cpuMs).map(([k, ms]) => [k, (ms * 1000) / x.requests]));
  for (const [i, x] of b.b0.runs.entries())
    row(`B0 nginx alone, return 200 (${i + 1})`, x, cpuOf(x), x.rps / b.b1.rps, x.rps / b.b0.rps);
  for (const [i, x] of b.b1.runs.entries())
    row(`B1 bare Express hello-world (${i + 1})`, x, cpuOf(x), x.rps / b.b1.rps, x.rps / b.b0.rps);
  for (const s of r.scenarios) row(s.label, { ...s.result, rps: s.result.rps }, s.cpuUsPerReq, s.ratioB1, s.ratioB0);
  out.push("");
  out.push(
    "Latency percentiles come from every response's own time (µs resolution). CPU µs/req is user+system " +
      "time from /proc/<pid>/stat over the measured part, divided by the requests served; node sums every " +
      "replica, loadgen is autocannon's process.",
  );

  out.push("");
  out.push("### Redis commands per request");
  out.push("");
  out.push("| Scenario | commands per request (a script's own calls included) |");
  out.push("|---|---|");
  for (const s of r.scenarios) {
    if (!s.redisPerReq || s.group === "growth") continue;
    const cmds = Object.entries(s.redisPerReq)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    out.push(`| ${s.label} | ${cmds || "none"} |`);
  }

  const g = r.growth as {
    memory?: {
      sessions: number;
      bytesPerSession: number;
      usedMemoryBefore: number;
      usedMemoryAfter: number;
      memoryUsage: { session: number; counter: number; idempotencyKey: number | null };
      sessionValue: string;
      sessionValueBytes: number;
      atLarge: { sessions: number; bytesPerSession: number };
      layouts?: Record<string, { bytesPerSession: number; what: string }>;
    };
    p99?: {
      smallSessions: number;
      largeSessions: number;
      small: number[];
      large: number[];
      ratio: number;
      rpsRatio: number;
    };
  };
  out.push("");
  out.push("### Growth");
  out.push("");
  if (g.memory) {
    const m = g.memory;
    const perKey = m.memoryUsage.idempotencyKey;
    out.push(
      `- **Redis memory per session: ${m.bytesPerSession} bytes** (INFO used_memory ` +
        `${f1(m.usedMemoryBefore / 1e6)} → ${f1(m.usedMemoryAfter / 1e6)} MB for ${m.sessions} copies of a ` +
        `real session; ${m.atLarge.bytesPerSession} bytes each at ${m.atLarge.sessions}). MEMORY USAGE: ` +
        `session key ${m.memoryUsage.session} B` +
        `${m.memoryUsage.counter ? `, counter key ${m.memoryUsage.counter} B` : " (the count inside it)"}` +
        `${perKey === null ? "" : `; the session's Idempotency-Key hash with one key ${perKey} B`}. ` +
        `The stored session value is ${m.sessionValueBytes} bytes: \`${m.sessionValue}\`.`,
    );
  }
  if (g.memory?.layouts) {
    out.push(
      `- Where a session's bytes go: the same sessions stored otherwise, weighed the same way: ${Object.entries(
        g.memory.layouts,
      )
        .map(([, v]) => `${v.what}: **${v.bytesPerSession} B**`)
        .join("; ")}.`,
    );
  }
  if (g.p99) {
    const p = g.p99;
    out.push(
      `- **p99 with ${p.largeSessions} stored sessions: ${p.large.map(f1).join(" and ")} ms, vs ` +
        `${p.small.map(f1).join(", ")} ms with ${p.smallSessions}** (alternating runs): median over median ` +
        `${p.ratio >= 1 ? "+" : ""}${f0((p.ratio - 1) * 100)}%; throughput ${f2(p.rpsRatio)}x.`,
    );
  }
  const scale = [1, 2, 3]
    .map((n) => r.scenarios.find((s) => s.id === `nginx${n}-keyed`))
    .filter((s) => s !== undefined);
  if (scale.length) {
    const perReplicas = scale.map(
      (s) =>
        `${s.replicas}: ${f0(s.result.rps)} req/s ` +
        `(${f2(s.ratioB1)}x B1, node ${f0(s.cpuUsPerReq.node ?? Number.NaN)} µs/req)`,
    );
    out.push(
      `- **Throughput vs replicas** (exactly-once through nginx): ${perReplicas.join(", ")}. ` +
        `The box has ${r.meta.machine.cores} cores shared by the load generator, nginx, Redis and every ` +
        `replica, so replicas past the core count add no CPU, only scheduling: each replica gets fewer ` +
        `requests per wake-up and pays the wake-up, the syscalls and the cache misses for fewer of them.`,
    );
  }

  const single = r.scenarios.find((s) => s.id === "nginx3-keyed");
  const topologies = ["nginx3-keyed-sentinel-wait1", "nginx3-keyed-redis-cluster"]
    .map((id) => r.scenarios.find((s) => s.id === id))
    .filter((s) => s !== undefined);
  if (single && topologies.length) {
    const vs = topologies.map(
      (s) =>
        `${s.label.replace(/^nginx \+ 3 replicas, exactly-once, /, "")}: ${f2(s.result.rps / single.result.rps)}x ` +
        `(p99 ${f1(s.result.latencyMs.p99)} ms, redis ${f0(s.cpuUsPerReq.redis ?? Number.NaN)} µs/req)`,
    );
    out.push(
      `- **Redis topologies vs one Redis** (exactly-once through nginx, same run; one Redis: p99 ` +
        `${f1(single.result.latencyMs.p99)} ms, redis ${f0(single.cpuUsPerReq.redis ?? Number.NaN)} µs/req): ` +
        `${vs.join("; ")}. The redis figure sums every redis-server (and Sentinel) process of the topology.`,
    );
  }

  type Profile = {
    error?: string;
    busyMs?: number;
    seconds?: number;
    outsideWindowPct?: number;
    areas?: { area: string; pct: number }[];
    top?: { fn: string; where: string; area: string; pct: number }[];
  };
  const profiles: [string, unknown][] = [
    ["returning visitors", r.profile],
    ["new visitors", r.profileNewVisitors],
  ];
  for (const [who, profile] of profiles) {
    const p = (profile ?? { error: "not in this report" }) as Profile;
    out.push("");
    out.push(`### Where a replica's CPU goes (node --cpu-prof, exactly-once, direct, ${who})`);
    out.push("");
    if (p.error) out.push(p.error);
    else if (p.areas && p.top) {
      out.push(
        `${p.busyMs} ms of busy samples in the measured ${p.seconds} s (the replica's start-up, the warm-up and ` +
          `its shutdown left out: ${f1(p.outsideWindowPct ?? Number.NaN)}% of the profile's busy samples). ` +
          `By area (self time, % of busy):`,
      );
      out.push("");
      out.push(
        p.areas
          .slice(0, 14)
          .map((a) => `${a.area} ${f1(a.pct)}%`)
          .join(" · "),
      );
      out.push("");
      out.push("| self % | function | where |");
      out.push("|--:|---|---|");
      for (const t of p.top) out.push(`| ${f1(t.pct)} | ${t.fn.replaceAll("|", "\\|")} | ${t.where || t.area} |`);
    }
  }

  const cb = r.cpuBudget;
  if (cb) {
    const u = cb.usPerRequest;
    out.push("");
    out.push("### CPU budget of the goal scenario (nginx + 3 replicas, exactly-once)");
    out.push("");
    out.push(
      `Every part shares the same ${cb.cores} cores, so CPU per request caps throughput however the ` +
        `replicas scale: node ${f0(u.node ?? Number.NaN)} + nginx ${f0(u.nginx ?? Number.NaN)} + Redis ` +
        `${f0(u.redis ?? Number.NaN)} + load generator ${f0(u.loadgen ?? Number.NaN)} = **${f0(cb.totalUs)} ` +
        `µs per request**, so at most ${f0(cb.maxRps)} req/s = **${f2(cb.maxRatioB1)}x B1** with every core ` +
        `busy and nothing else running; ${f2(cb.maxRatioB1WithoutLoadgen)}x B1 if the load generator ran ` +
        `elsewhere.`,
    );
  }

  out.push("");
  out.push("### Goals");
  out.push("");
  out.push("| Goal | Measured | Met |");
  out.push("|---|---|---|");
  for (const x of r.goals)
    if (x) out.push(`| ${x.goal} | ${x.measured} | ${x.met === null ? "(context)" : x.met ? "yes" : "**no**"} |`);
  out.push("");
  return out.join("\n");
}

const esc = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");

export function renderSvg(r: Report): string {
  type Row = { label: string; ratio: number; rps: number; p50: number; p975: number; p99: number; baseline: boolean };
  const rows: Row[] = [
    ...r.baselines.b0.runs.map((x, i) => ({
      label: `B0 nginx alone, return 200 (${i + 1})`,
      ratio: x.rps / r.baselines.b1.rps,
      rps: x.rps,
      p50: x.latencyMs.p50,
      p975: x.latencyMs.p97_5,
      p99: x.latencyMs.p99,
      baseline: true,
    })),
    ...r.baselines.b1.runs.map((x, i) => ({
      label: `B1 bare Express hello-world (${i + 1})`,
      ratio: x.rps / r.baselines.b1.rps,
      rps: x.rps,
      p50: x.latencyMs.p50,
      p975: x.latencyMs.p97_5,
      p99: x.latencyMs.p99,
      baseline: true,
    })),
    ...r.scenarios.map((s) => ({
      label: s.label,
      ratio: s.ratioB1,
      rps: s.result.rps,
      p50: s.result.latencyMs.p50,
      p975: s.result.latencyMs.p97_5,
      p99: s.result.latencyMs.p99,
      baseline: false,
    })),
  ];
  const labelW = 380;
  const panelW = 300;
  const gap = 40;
  const rowH = 26;
  const top = 70;
  const W = labelW + panelW * 2 + gap * 2 + 20;
  const H = top + rows.length * rowH + 50;
  // Room after the longest bar for its label; latency axis on round ticks.
  const maxRatio = Math.max(1, ...rows.map((x) => x.ratio).filter(Number.isFinite)) * 1.45;
  const rawLat = Math.max(1, ...rows.map((x) => x.p99).filter(Number.isFinite)) * 1.15;
  const stepLat =
    [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000].find((st) => rawLat / st <= 5) ?? 10_000;
  const maxLat = Math.ceil(rawLat / stepLat) * stepLat;
  const x1 = labelW + 10;
  const x2 = x1 + panelW + gap;
  const colors = { ratio: "#4e79a7", base: "#9c9c9c", p50: "#59a14f", p975: "#f28e2b", p99: "#e15759" };
  const s: string[] = [];
  s.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`,
  );
  s.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  s.push(
    `<text x="10" y="20" font-size="15" font-weight="bold">make bench: throughput (×B1) and latency per ` +
      `scenario, c=${r.meta.connections}</text>`,
  );
  s.push(`<text x="10" y="38" fill="#555">${esc(when(r))}</text>`);
  s.push(`<text x="${x1}" y="${top - 10}" font-weight="bold">req/s as a ratio to B1 (bare Express)</text>`);
  s.push(
    `<text x="${x2}" y="${top - 10}" font-weight="bold">latency, ms: <tspan ` +
      `fill="${colors.p50}">p50</tspan> · <tspan fill="${colors.p975}">p97.5</tspan> · <tspan ` +
      `fill="${colors.p99}">p99</tspan></text>`,
  );
  // Grid: ratio 1.0 (B1) line, and latency ticks.
  const rx = (v: number) => x1 + (v / maxRatio) * panelW;
  const lx = (v: number) => x2 + (v / maxLat) * panelW;
  s.push(
    `<line x1="${rx(1)}" y1="${top - 4}" x2="${rx(1)}" y2="${top + rows.length * rowH}" stroke="#333" ` +
      `stroke-dasharray="3,3"/>`,
  );
  for (let v = 0; v <= maxLat; v += stepLat) {
    s.push(`<line x1="${lx(v)}" y1="${top - 4}" x2="${lx(v)}" y2="${top + rows.length * rowH}" stroke="#ddd"/>`);
    s.push(`<text x="${lx(v)}" y="${top + rows.length * rowH + 14}" text-anchor="middle" fill="#555">${v}</text>`);
  }
  s.push(`<text x="${rx(1)}" y="${top + rows.length * rowH + 14}" text-anchor="middle" fill="#555">1.0 = B1</text>`);
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    if (i % 2 === 0) s.push(`<rect x="0" y="${y}" width="${W}" height="${rowH}" fill="#f6f6f6"/>`);
    s.push(`<text x="${labelW}" y="${y + 17}" text-anchor="end">${esc(row.label)}</text>`);
    const w = Number.isFinite(row.ratio) ? rx(row.ratio) - x1 : 0;
    s.push(
      `<rect x="${x1}" y="${y + 5}" width="${w.toFixed(1)}" height="${rowH - 10}" ` +
        `fill="${row.baseline ? colors.base : colors.ratio}"><title>${f0(row.rps)} req/s</title></rect>`,
    );
    s.push(
      `<text x="${(x1 + w + 4).toFixed(1)}" y="${y + 17}" fill="#333">` + `${f2(row.ratio)} · ${f0(row.rps)}/s</text>`,
    );
    const bh = (rowH - 8) / 3;
    (["p50", "p975", "p99"] as const).forEach((k, j) => {
      const v = row[k];
      const bw = Number.isFinite(v) ? lx(v) - x2 : 0;
      s.push(
        `<rect x="${x2}" y="${(y + 4 + j * bh).toFixed(1)}" width="${bw.toFixed(1)}" ` +
          `height="${(bh - 1).toFixed(1)}" fill="${colors[k]}"><title>${k.replace("975", "97.5")} ${f1(v)} ` +
          `ms</title></rect>`,
      );
    });
    s.push(`<text x="${(lx(row.p99) + 4).toFixed(1)}" y="${y + 17}" fill="#333">${f1(row.p99)}</text>`);
  });
  s.push(`</svg>`);
  return `${s.join("\n")}\n`;
}
