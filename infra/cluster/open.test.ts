import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_PROJECT } from "./compose-cluster.ts";
import { createCluster } from "./open.ts";

describe("createCluster", () => {
  const dirs: string[] = [];
  const newDir = () => {
    const d = mkdtempSync(join(tmpdir(), "open-test-"));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("gives a Compose cluster in a folder of its own a project of its own, never make up's", () => {
    const a = createCluster("compose", { dir: newDir() });
    const b = createCluster("compose", { dir: newDir() });
    expect(a.project).not.toBe(DEFAULT_PROJECT);
    expect(a.project).not.toBe(b.project);
    expect(a.project).toMatch(/^esc-open-test-[a-z0-9]+$/);
  });

  it("keeps a project the caller names, and make up's project without a folder", () => {
    expect(createCluster("compose", { dir: newDir(), project: "mine" }).project).toBe("mine");
    expect(createCluster("compose", {}).project).toBe(DEFAULT_PROJECT);
  });

  it("names local replicas app-1..app-N, reports the same id, and gives each its URL", async () => {
    const c = createCluster("local", { dir: newDir(), replicas: 2 });
    const rs = await c.replicas();
    expect(rs.map((r) => [r.index, r.name, r.replicaId])).toEqual([
      [1, "app-1", "app-1"],
      [2, "app-2", "app-2"],
    ]);
    for (const r of rs) expect(r.detail).toBe(r.url);
  });
});
