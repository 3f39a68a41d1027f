// A file lands in the unit project unless vitest.config.ts lists it as integration: this keeps
// a test that starts a cluster, nginx or containers from slipping into the fast tier.
import { globSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { INTEGRATION, UNIT } from "../vitest.config.ts";

const root = new URL("..", import.meta.url);
const files = (patterns: string[]) => globSync(patterns, { cwd: root }).filter((f) => !f.includes("node_modules"));

// What only the integration tier may start (this file names them, so it is left out).
const HEAVY =
  /\b(LocalCluster|ComposeCluster|createCluster|runScenario|RedisContainer|GenericContainer)\b|["']nginx["']/;
const SELF = "infra/test-tiers.test.ts";
// Builds cluster objects to check their names and projects, and never starts one.
const BUILDS_ONLY = new Set(["infra/cluster/open.test.ts"]);

describe("test tiers", () => {
  it("keeps every test that starts a cluster, nginx or a container out of the unit project", () => {
    const integration = new Set(files(INTEGRATION));
    const unit = files(UNIT).filter((f) => !integration.has(f) && f !== SELF && !BUILDS_ONLY.has(f));
    expect(unit.length).toBeGreaterThan(0);
    expect(unit.filter((f) => HEAVY.test(readFileSync(new URL(f, root), "utf8")))).toEqual([]);
  });

  it("lists only integration patterns that match a file", () => {
    for (const pattern of INTEGRATION) expect(files([pattern]), pattern).not.toEqual([]);
  });
});
