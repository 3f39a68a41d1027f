// probe.sh, the app image's HEALTHCHECK and the drivers' probe: passes only on a 200 from the
// operator listener, and fails (bounded) when the app refuses, answers otherwise or hangs.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const probe = join(import.meta.dirname, "probe.sh");

/** A real HTTP server in its own process (so it can be frozen), answering every path with `status`. */
async function server(status: number): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(
    process.execPath,
    [
      "-e",
      `const s = require("node:http").createServer((q, r) => { r.statusCode = ${status}; r.end("{}"); });` +
        's.listen(0, "127.0.0.1", () => console.log(s.address().port));',
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const [line] = (await once(child.stdout, "data")) as Buffer[];
  return { child, port: Number(String(line).trim()) };
}

function runProbe(port: number, path?: string): { status: number | null; out: string } {
  const r = spawnSync("bash", [probe, ...(path ? [path] : [])], {
    env: { ...process.env, OPS_PORT: String(port), PROBE_TIMEOUT_S: "1" },
    encoding: "utf8",
    timeout: 15_000,
  });
  return { status: r.status, out: r.stdout.trim() };
}

describe("probe.sh (the app's health check)", () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) {
      c.kill("SIGCONT");
      c.kill("SIGKILL");
    }
  });

  it("passes and prints 200 when the operator listener answers 200", async () => {
    const s = await server(200);
    children.push(s.child);
    expect(runProbe(s.port)).toMatchObject({ status: 0, out: "200" });
  });

  it("fails and prints the status when the app answers anything but 200 (503 while draining)", async () => {
    const s = await server(503);
    children.push(s.child);
    expect(runProbe(s.port, "/readyz")).toMatchObject({ status: 1, out: "503" });
  });

  it("fails and prints 0 when nothing listens (the app stopped)", async () => {
    const s = await server(200);
    s.child.kill("SIGKILL");
    await once(s.child, "exit");
    expect(runProbe(s.port)).toMatchObject({ status: 1, out: "0" });
  });

  it("fails within its read timeout when the app is frozen: the kernel accepts, nothing answers", async () => {
    const s = await server(200);
    children.push(s.child);
    s.child.kill("SIGSTOP");
    // Exit status 1, not null: it gave up by itself (PROBE_TIMEOUT_S=1), spawnSync did not kill it.
    expect(runProbe(s.port)).toMatchObject({ status: 1, out: "0" });
  });
});
