import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fileStamp, repoRoot, run } from "./process.ts";

describe("process helpers", () => {
  it("finds the repository root", () => {
    expect(existsSync(join(repoRoot, "package.json"))).toBe(true);
    expect(existsSync(join(repoRoot, "loadtest/lib/process.ts"))).toBe(true);
  });

  it("stamps a file name to the second, without ':' or '.'", () => {
    expect(fileStamp(new Date("2026-11-30T09:30:07.123Z"))).toBe("2026-11-30T09-30-07");
  });

  it("runs a command and reports a failure with its stderr and the error code", async () => {
    expect(await run(process.execPath, ["-e", "process.stdout.write('hi')"])).toBe("hi");
    await expect(run(process.execPath, ["-e", "console.error('broken'); process.exit(3)"])).rejects.toThrow(/broken/);
    await expect(run("no-such-command-here", [])).rejects.toMatchObject({ cause: { code: "ENOENT" } });
  });

  it("runs the cleanup on SIGINT, then exits 130", async () => {
    const script = `
      import { onInterrupt } from ${JSON.stringify(join(repoRoot, "loadtest/lib/process.ts"))};
      onInterrupt(async (signal) => { console.log("cleaned up after " + signal); });
      console.log("ready");
      setTimeout(() => {}, 10_000);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      if (chunk.includes("ready")) child.kill("SIGINT");
    });
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(out).toContain("cleaned up after SIGINT");
    expect(code).toBe(130);
  });
});
