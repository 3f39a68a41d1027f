// Keeps the README true: every `make X` it shows is a target, and the quickstart, run as a
// new user would, prints what the README says it prints.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { dockerAvailable } from "../infra/cluster/open.ts";
import { Visitor } from "../loadtest/client/visitor.ts";
import { freePort } from "../infra/cluster/ports.ts";

const root = resolve(import.meta.dirname, "..");
const readme = readFileSync(join(root, "README.md"), "utf8");
const makefile = readFileSync(join(root, "Makefile"), "utf8");
const run = promisify(execFile);


describe("README", () => {
  it("shows only make targets that exist", () => {
    const shown = new Set([...readme.matchAll(/(?:^|[^\w-])make ([a-z][a-z0-9-]*)/gm)].map((m) => m[1]!));
    const missing = [...shown].filter((t) => !new RegExp(`^${t}:`, "m").test(makefile));
    expect(shown.size).toBeGreaterThan(5);
    expect(missing).toEqual([]);
  });

  describe("quickstart with local processes", () => {
    const runDir = mkdtempSync(join(tmpdir(), "readme-run-"));
    const env = { ...process.env, CLUSTER: "local", CLUSTER_RUN_DIR: runDir };
    const make = (...args: string[]) => run("make", ["--no-print-directory", ...args], { cwd: root, env, timeout: 120_000 });
    afterAll(async () => {
      await make("down").catch(() => {});
      rmSync(runDir, { recursive: true, force: true });
    }, 60_000);

    it("prints what the README shows at each step", async () => {
      const port = await freePort();
      const up = await make("up", `PORT=${port}`);
      expect(up.stdout).toContain(`cluster up (local): http://127.0.0.1:${port}`);
      expect(up.stdout).toContain("replicas: app-1, app-2, app-3");

      const v = new Visitor(`http://127.0.0.1:${port}`);
      const first = [await v.get("/counter"), await v.get("/counter"), await v.get("/counter")];
      expect(first.map((r) => r.text)).toEqual(["count is 1", "count is 2", "count is 3"]);
      expect(new Set(first.map((r) => r.replica)).size).toBe(3);

      expect((await make("kill", "REPLICA=2", "SIGNAL=KILL")).stdout).toContain("replica 2 stopped with SIGKILL");
      expect((await make("ps")).stdout).toMatch(/^2\s+app-2\s+stopped/m);
      const after = await v.get("/counter");
      expect(after.text).toBe("count is 4");
      expect(after.replica).not.toBe("app-2");

      expect((await make("start", "REPLICA=2")).stdout).toContain("replica 2 started and ready");
      expect((await make("down")).stdout).toContain("cluster down (local)");
    });

    it("make config names every wrong key and exits 78", async () => {
      const err = await run("make", ["--no-print-directory", "config"], { cwd: root, env: { ...env, PORT: "99999", STORE: "disk", NODE_ENV: "production" } }).catch((e) => e as { code: number; stderr: string });
      expect((err as { code: number }).code).toBe(2); // make's own exit code when the recipe fails
      for (const key of ["PORT", "STORE", "SESSION_SECRET"]) expect((err as { stderr: string }).stderr).toContain(`  - ${key}:`);
      expect((err as { stderr: string }).stderr).toContain("Error 78");
      // The README shows this very output, line for line (make's own line included).
      // (Run from inside `make test`, make calls itself make[1]: the README shows a top-level run.)
      for (const line of (err as { stderr: string }).stderr.trim().split("\n")) expect(readme).toContain(line.replace(/^make\[\d+\]:/, "make:"));
    });
  });

  // The Docker quickstart, as a new user runs it: make up picks Compose when an engine answers.
  const docker = dockerAvailable();
  if (!docker && process.env.REQUIRE_DOCKER !== "1") console.log("skipped: no Docker engine (README quickstart with Docker)");
  describe.skipIf(!docker && process.env.REQUIRE_DOCKER !== "1")("quickstart with Docker", () => {
    const runDir = mkdtempSync(join(tmpdir(), "readme-compose-"));
    // Its own project name, so it never touches a cluster the developer has up.
    const env = { ...process.env, CLUSTER: "auto", CLUSTER_RUN_DIR: runDir, COMPOSE_PROJECT_NAME: `esc-readme-${randomBytes(3).toString("hex")}` };
    const make = (...args: string[]) => run("make", ["--no-print-directory", ...args], { cwd: root, env, timeout: 300_000 });
    afterAll(async () => {
      await make("down").catch(() => {});
      rmSync(runDir, { recursive: true, force: true });
    }, 120_000);

    it("prints what the README shows at each step", async () => {
      const port = await freePort();
      const up = await make("up", `PORT=${port}`);
      expect(up.stdout).toContain(`cluster up (compose): http://127.0.0.1:${port}`);
      expect(up.stdout).toMatch(/^replicas: app-1 \(\S+app.1, X-Replica \w{12}\), app-2 \(\S+app.2, X-Replica \w{12}\), app-3 \(\S+app.3, X-Replica \w{12}\)$/m);

      const v = new Visitor(`http://127.0.0.1:${port}`);
      const first = [await v.get("/counter"), await v.get("/counter"), await v.get("/counter"), await v.get("/counter")];
      expect(first.map((r) => r.text)).toEqual(["count is 1", "count is 2", "count is 3", "count is 4"]);
      expect(new Set(first.map((r) => r.replica)).size).toBe(3);

      expect((await make("kill", "REPLICA=2", "SIGNAL=KILL")).stdout).toContain("replica 2 stopped with SIGKILL");
      const after = [await v.get("/counter"), await v.get("/counter"), await v.get("/counter"), await v.get("/counter")];
      expect(after.map((r) => r.text)).toEqual(["count is 5", "count is 6", "count is 7", "count is 8"]);
      expect((await make("start", "REPLICA=2")).stdout).toContain("replica 2 started and ready");
      expect((await make("down")).stdout).toContain("cluster down (compose)");
    }, 400_000);
  });
});
