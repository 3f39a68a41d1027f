// The Makefile's cluster targets take the same variables: REPLICAS for up and scale (N= is
// deprecated), CLUSTER passed on as it is, so auto means the same in every target.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const runDir = mkdtempSync(join(tmpdir(), "cli-test-"));
// -o: never reinstall node_modules (npm ci) under the running test runner.
const { REPLICAS: _r, N: _n, ...env } = process.env;
const make = (...args: string[]) =>
  spawnSync("make", ["--no-print-directory", "-o", "node_modules/.installed", ...args], {
    cwd: root,
    env: { ...env, CLUSTER_RUN_DIR: runDir },
    encoding: "utf8",
    timeout: 60_000,
  });

describe("make's cluster variables", { timeout: 120_000 }, () => {
  afterAll(() => rmSync(runDir, { recursive: true, force: true }));

  it("make scale asks for REPLICAS when given no count", () => {
    for (const r of [make("scale"), make("scale", "REPLICAS=")]) {
      expect(r.status).toBe(2);
      expect(r.stderr).toContain("say how many replicas, e.g. make scale REPLICAS=5");
    }
  });

  it("make scale takes REPLICAS, and N with a deprecation warning", () => {
    const withReplicas = make("scale", "REPLICAS=2");
    expect(withReplicas.stderr).not.toContain("deprecated");
    expect(withReplicas.stderr).toContain("no cluster is up");
    const withN = make("scale", "N=2");
    expect(withN.stderr).toContain("N= is deprecated, use REPLICAS=2");
    expect(withN.stderr).toContain("no cluster is up");
  });

  it("passes CLUSTER on unchanged to verify and compare-counters, auto included", () => {
    for (const target of ["verify", "compare-counters"]) {
      const r = make("-n", target, "CLUSTER=auto");
      expect(r.stdout, target).toContain('--cluster "auto"');
    }
  });
});
