// Reads a V8 .cpuprofile (node --cpu-prof) and says where a replica's CPU went: self time by
// function and by area (an npm package, the app, Node's own http/net code, GC).
import { readFileSync } from "node:fs";

type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number };
type Profile = { nodes: Node[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] };

/**
 * A stretch of time on the monotonic clock, in µs: V8 stamps a profile's samples with the clock
 * process.hrtime() reads (CLOCK_MONOTONIC on Linux, shared by every process), so another
 * process's hrtime marks where the measured load ran.
 */
export type ProfileWindow = { startUs: number; endUs: number };

/** process.hrtime() as a profile's timestamps count: µs on the monotonic clock. */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

export type ProfileSummary = {
  /** ms of samples that were not idle (within the window, when one is given). */
  busyMs: number;
  /** ms the summary covers: the window's length, else the whole profile's. */
  spanMs: number;
  /** % of the whole profile's busy samples left out as outside the window (start-up, shutdown, warm-up). */
  outsideWindowPct: number;
  areas: { area: string; pct: number }[];
  top: { fn: string; where: string; area: string; pct: number }[];
};

export function areaOf(url: string, fn: string): string {
  if (fn === "(garbage collector)") return "GC";
  if (fn === "(program)" || fn === "(idle)" || fn === "(root)") return fn;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  if (url.includes("/services/app/src/")) return "app (services/app/src)";
  if (url.startsWith("node:")) {
    const mod = /^node:(?:internal\/)?([a-z_]+)/.exec(url)?.[1] ?? "other";
    return `node:${mod}`;
  }
  return url === "" ? "native / builtins" : "other";
}

function shortUrl(url: string): string {
  return url.replace(/^file:\/\/.*?\/node_modules\//, "").replace(/^file:\/\/.*?\/services\/app\//, "app/");
}

/**
 * Self time by function and by area. With `window`, only the samples taken within it count: the
 * profile covers the replica's whole life, whose module loading and start-up (10-15% of the samples
 * of a 10 s run) are no part of a request's cost.
 */
export function summarizeProfile(file: string, topN = 15, window?: ProfileWindow): ProfileSummary {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const idle = (id: number) => byId.get(id)!.callFrame.functionName === "(idle)";
  const self = new Map<number, number>();
  let at = p.startTime;
  let outside = 0;
  let all = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    const us = p.timeDeltas[i] ?? 0;
    // A sample's delta is the time since the previous one: it stands for the interval ending at it.
    at += us;
    if (!idle(id)) all += us;
    if (window && (at <= window.startUs || at > window.endUs)) {
      if (!idle(id)) outside += us;
      continue;
    }
    self.set(id, (self.get(id) ?? 0) + us);
  }
  const fnTime = new Map<string, { fn: string; where: string; area: string; us: number }>();
  const areaTime = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const fn = functionName || "(anonymous)";
    const area = areaOf(url, fn);
    if (area === "(idle)") continue;
    busy += us;
    areaTime.set(area, (areaTime.get(area) ?? 0) + us);
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : "";
    const key = `${fn} ${where}`;
    const e = fnTime.get(key) ?? { fn, where, area, us: 0 };
    e.us += us;
    fnTime.set(key, e);
  }
  const pct = (us: number) => Math.round((us / busy) * 1000) / 10;
  return {
    busyMs: Math.round(busy / 1000),
    spanMs: Math.round(((window ? window.endUs - window.startUs : p.endTime - p.startTime) || 0) / 1000),
    outsideWindowPct: all > 0 ? Math.round((outside / all) * 1000) / 10 : 0,
    areas: [...areaTime.entries()].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, pct: pct(us) })),
    top: [...fnTime.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((e) => ({ fn: e.fn, where: e.where, area: e.area, pct: pct(e.us) })),
  };
}
