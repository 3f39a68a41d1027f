import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { monotonicUs, summarizeProfile } from "./cpu-profile.ts";

const dir = mkdtempSync(join(tmpdir(), "cpu-profile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const frame = (functionName: string, url = "") => ({ functionName, url, lineNumber: 0, columnNumber: 0 });

// A profile as V8 writes it: 1 ms samples from t = 1 000 000 µs; module loading for the first 3 ms,
// then the handler for 4 ms, then idle for 3 ms.
function writeProfile(): string {
  const nodes = [
    { id: 1, callFrame: frame("(root)"), children: [2, 3, 4] },
    { id: 2, callFrame: frame("compileSourceTextModule", "node:internal/modules/esm/utils") },
    { id: 3, callFrame: frame("handler", "file:///x/services/app/src/routes/api.ts") },
    { id: 4, callFrame: frame("(idle)") },
  ];
  const samples = [2, 2, 2, 3, 3, 3, 3, 4, 4, 4];
  const file = join(dir, "p.cpuprofile");
  writeFileSync(
    file,
    JSON.stringify({ nodes, startTime: 1_000_000, endTime: 1_010_000, samples, timeDeltas: samples.map(() => 1000) }),
  );
  return file;
}

describe("summarizeProfile", () => {
  it("counts every busy sample when given no window", () => {
    const s = summarizeProfile(writeProfile());
    expect(s.busyMs).toBe(7);
    expect(s.outsideWindowPct).toBe(0);
    expect(s.areas.map((a) => a.area).sort()).toEqual(["app (services/app/src)", "node:modules"]);
  });

  it("counts only the samples within the window: start-up before it is left out", () => {
    const s = summarizeProfile(writeProfile(), 15, { startUs: 1_003_000, endUs: 1_010_000 });
    expect(s.busyMs).toBe(4);
    expect(s.spanMs).toBe(7);
    expect(s.areas).toEqual([{ area: "app (services/app/src)", pct: 100 }]);
    expect(s.outsideWindowPct).toBeCloseTo((3 / 7) * 100, 0);
  });

  it("reads the clock V8 stamps a profile's samples with", () => {
    // A real `node --cpu-prof` child: its profile starts and ends between our two readings.
    const profDir = join(dir, "real");
    const before = monotonicUs();
    execFileSync(process.execPath, ["--cpu-prof", `--cpu-prof-dir=${profDir}`, "-e", "for (let i = 0; i < 1e6; i++);"]);
    const after = monotonicUs();
    const file = readdirSync(profDir).find((f) => f.endsWith(".cpuprofile"))!;
    const p = JSON.parse(readFileSync(join(profDir, file), "utf8")) as { startTime: number; endTime: number };
    expect(p.startTime).toBeGreaterThan(before);
    expect(p.endTime).toBeLessThan(after);
  });
});
