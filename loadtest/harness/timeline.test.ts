import { describe, expect, it } from "vitest";
import { check } from "./checker.ts";
import type { Attempt, History } from "./history.ts";
import { timelineSvg } from "./timeline.ts";

const a = (t0: number, replica: string | undefined, outcome: Attempt["outcome"], count?: number): Attempt => ({
  t0,
  t1: t0 + 4,
  replica,
  status: outcome === "ok" ? 200 : 502,
  outcome,
  reason: outcome === "ok" ? "200" : "502",
  count,
  session: "s",
});

const h: History = {
  scenario: "kill-replica",
  keyed: true,
  users: 1,
  concurrency: 1,
  replicas: ["app-1", "app-2"],
  loadStart: 0,
  loadEnd: 1000,
  ops: [
    { user: 0, kind: "start", attempts: [a(0, "app-1", "ok", 0)] },
    { user: 0, kind: "increment", key: "k1", attempts: [a(100, "app-2", "ok", 1)] },
    {
      user: 0,
      kind: "increment",
      key: "k2",
      attempts: [a(500, undefined, "indeterminate"), { ...a(600, "app-1", "ok", 2), replayed: true }],
    },
    { user: 0, kind: "read", attempts: [a(990, "app-1", "ok", 2)] },
  ],
  events: [
    { t: 400, target: "app-2", state: "down", label: "SIGKILL app-2" },
    { t: 800, target: "app-2", state: "up", label: "app-2 ready" },
  ],
  endHealth: { ok: true, detail: "" },
};

describe("timelineSvg", () => {
  const svg = timelineSvg(h, check(h), "kill-replica & friends");

  it("draws one lane per replica plus one for answers no replica gave", () => {
    for (const lane of ["app-1", "app-2", "no replica"]) expect(svg).toContain(`>${lane}</text>`);
    expect(svg).not.toContain(">redis</text>");
  });

  it("marks the kill and the restart, and shades the down time", () => {
    expect(svg).toContain("SIGKILL app-2");
    expect(svg).toContain("app-2 ready");
    expect(svg).toMatch(/<title>app-2 down 0\.40-0\.80 s<\/title>/);
  });

  it("colours answers by outcome, replays apart, and escapes text", () => {
    // Each colour appears once in the legend; more means an attempt was drawn in it.
    const uses = (color: string) => svg.match(new RegExp(`<rect[^>]*fill="${color}"`, "g"))?.length ?? 0;
    expect(uses("#f39c12")).toBeGreaterThan(1); // the indeterminate attempt
    expect(uses("#2c7fb8")).toBeGreaterThan(1); // the replayed answer
    expect(uses("#d64541")).toBe(1); // no attempt failed
    expect(svg).toContain("kill-replica &amp; friends");
    expect(svg.trim().endsWith("</svg>")).toBe(true);
  });
});
