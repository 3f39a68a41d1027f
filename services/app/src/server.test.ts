// Runs server.ts as a child process, as pino's tests do, to check how it starts and stops.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const entry = fileURLToPath(new URL("./server.ts", import.meta.url));

function runServer(env: Record<string, string>, timeoutMs = 10_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [entry], { env: { PATH: process.env.PATH, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not exit within ${timeoutMs} ms:\n${stdout}${stderr}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("server start-up", () => {
  it("exits non-zero before listening and names every wrong key", async () => {
    const r = await runServer({ PORT: "99999", STORE: "disk", NODE_ENV: "production", SESSION_SECRET: "short", COUNTER: "maybe" });
    expect(r.code).toBe(78);
    for (const key of ["PORT", "STORE", "SESSION_SECRET", "COUNTER"]) expect(r.stderr).toContain(`${key}:`);
    expect(r.stdout).not.toContain("listening");
  });

  it("drains and exits 0 on SIGTERM", async () => {
    const child = spawn(process.execPath, [entry], { env: { PATH: process.env.PATH, PORT: "0", STORE: "memory", HOST: "127.0.0.1", SHUTDOWN_DELAY_MS: "0" }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    await new Promise<void>((resolve) => child.stdout.on("data", () => out.includes('"listening"') && resolve()));
    child.kill("SIGTERM");
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(0);
    const events = out.trim().split("\n").map((l) => JSON.parse(l).event as string | undefined);
    expect(events).toEqual(expect.arrayContaining(["listening", "draining", "stopped"]));
  });
});
