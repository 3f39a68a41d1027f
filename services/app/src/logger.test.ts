// The logger's buffering, observed from outside: a real process logs, then exits or is
// SIGKILLed, and the test reads what reached its stdout.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const logger = fileURLToPath(new URL("./logger.ts", import.meta.url));

/** Runs `body` in a fresh Node process with `log` = createLogger({flushMs}); resolves its stdout lines. */
function run(flushMs: number, body: string): Promise<{ msgs: string[]; signal: NodeJS.Signals | null }> {
  const script = `
    import { createLogger } from ${JSON.stringify(logger)};
    const log = createLogger({ level: "info", replicaId: "t", flushMs: ${flushMs} });
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const kill = () => process.kill(process.pid, "SIGKILL");
    ${body}
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (_code, signal) =>
      resolve({
        msgs: out
          .split("\n")
          .filter(Boolean)
          .map((l) => (JSON.parse(l) as { msg: string }).msg),
        signal,
      }),
    );
  });
}

describe("createLogger", () => {
  it("writes buffered info lines within flushMs", async () => {
    const { msgs, signal } = await run(100, `log.info("one"); log.info("two"); await sleep(600); kill();`);
    expect(signal).toBe("SIGKILL");
    expect(msgs).toEqual(["one", "two"]);
  });

  it("writes an error line at once, with every buffered line before it", async () => {
    const { msgs } = await run(
      9_999,
      `log.info("before"); log.warn("odd"); log.error("trouble"); await sleep(300); kill();`,
    );
    expect(msgs).toEqual(["before", "odd", "trouble"]);
  });

  it("flushes on exit, also when the process dies of an uncaught exception", async () => {
    expect((await run(9_999, `log.info("bye"); process.exit(0);`)).msgs).toEqual(["bye"]);
    expect(
      (await run(9_999, `log.info("last words"); setTimeout(() => { throw new Error("boom"); }, 10);`)).msgs,
    ).toEqual(["last words"]);
  });

  it("loses only the lines below error of the last flushMs to a SIGKILL; LOG_FLUSH_MS=0 loses none", async () => {
    expect((await run(9_999, `log.info("lost"); log.warn("lost too"); await sleep(10); kill();`)).msgs).toEqual([]);
    expect((await run(0, `log.info("written"); kill();`)).msgs).toEqual(["written"]);
  });
});
