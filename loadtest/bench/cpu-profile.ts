// Reads a V8 .cpuprofile (node --cpu-prof) and says where a replica's CPU went: self time by
// function and by area (an npm package, the app, Node's own http/net code, GC).
import { readFileSync } from "node:fs";

type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number };
type Profile = { nodes: Node[]; samples: number[]; timeDeltas: number[] };

export type ProfileSummary = {
  /** ms of samples that were not idle. */
  busyMs: number;
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

export function summarizeProfile(file: string, topN = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++)
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
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
    areas: [...areaTime.entries()].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, pct: pct(us) })),
    top: [...fnTime.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((e) => ({ fn: e.fn, where: e.where, area: e.area, pct: pct(e.us) })),
  };
}
