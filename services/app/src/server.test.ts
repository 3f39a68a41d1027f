// Runs server.ts as a child process, as pino's tests do, to check how it starts and stops.
import { spawn } from "node:child_process";
import { createServer, Socket, type AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const entry = fileURLToPath(new URL("./server.ts", import.meta.url));

function runServer(
  env: Record<string, string>,
  timeoutMs = 10_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [entry], {
      env: { PATH: process.env.PATH, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
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

type LogLine = { event?: string; port?: number; opsPort?: number; waitedMs?: number };

/**
 * server.ts as a child process, its stdout's JSON log lines collected: on 127.0.0.1, ports of its own,
 * STORE=memory and no shutdown delay unless `env` says otherwise.
 */
function spawnServer(env: Record<string, string>) {
  const child = spawn(process.execPath, [entry], {
    env: {
      PATH: process.env.PATH,
      PORT: "0",
      OPS_PORT: "0",
      HOST: "127.0.0.1",
      STORE: "memory",
      SHUTDOWN_DELAY_MS: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  // Every complete line so far (pino writes one JSON object a line, and nothing else, to stdout).
  const lines = () =>
    out
      .split("\n")
      .slice(0, -1)
      .map((l) => JSON.parse(l) as LogLine);
  return {
    child,
    lines,
    events: () => lines().map((l) => l.event),
    /** The first line of `event`, once the server has logged it. */
    logged(event: string): Promise<LogLine> {
      return new Promise((resolve, reject) => {
        const check = () => {
          try {
            const line = lines().find((l) => l.event === event);
            if (!line) return;
            child.stdout.off("data", check);
            resolve(line);
          } catch (err) {
            reject(err);
          }
        };
        child.stdout.on("data", check);
        check();
      });
    },
    exited: new Promise<number | null>((resolve) => child.on("exit", resolve)),
  };
}

describe("server start-up", () => {
  it("exits non-zero before listening and names every wrong key", async () => {
    const r = await runServer({
      PORT: "99999",
      STORE: "disk",
      NODE_ENV: "production",
      SESSION_SECRET: "short",
      COUNTER: "maybe",
    });
    expect(r.code).toBe(78);
    for (const key of ["PORT", "STORE", "SESSION_SECRET", "COUNTER"]) expect(r.stderr).toContain(`${key}:`);
    expect(r.stdout).not.toContain("listening");
  });

  it("exits 1 with one line naming PORT / HOST when the public listener cannot start, not a stack", async () => {
    const r = await runServer({
      PATH: process.env.PATH!,
      STORE: "memory",
      HOST: "no-such-host.invalid",
      PORT: "0",
      OPS_HOST: "127.0.0.1",
      OPS_PORT: "0",
    });
    expect(r.code).toBe(1);
    const failed = r.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { event?: string; msg?: string; host?: string })
      .find((l) => l.event === "listen_failed");
    expect(failed?.host).toBe("no-such-host.invalid");
    expect(failed?.msg).toContain("PORT / HOST");
    expect(r.stderr).not.toContain("Unhandled 'error' event");
  });

  it("drains and exits 0 on SIGTERM", async () => {
    const server = spawnServer({});
    await server.logged("listening");
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    expect(server.events()).toEqual(expect.arrayContaining(["listening", "draining", "stopped"]));
  });

  it("answers a request in flight at SIGTERM with Connection: close, so the drain ends early", async () => {
    const server = spawnServer({ LOG_LEVEL: "info", SHUTDOWN_DRAIN_MS: "15000" });
    const socket = new Socket();
    try {
      const { port } = await server.logged("listening");
      await new Promise<void>((resolve) => socket.connect(port!, "127.0.0.1", resolve));
      let response = "";
      socket.setEncoding("utf8");
      socket.on("data", (d: string) => (response += d));
      const ended = new Promise<void>((resolve) => socket.once("end", resolve));
      // The head now, the body after SIGTERM: the request is in flight while the drain starts
      // and closes the idle sockets.
      socket.write(
        "POST /api/counter HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n",
      );
      await new Promise((r) => setTimeout(r, 200));
      const draining = server.logged("draining");
      server.child.kill("SIGTERM");
      await draining;
      await new Promise((r) => setTimeout(r, 200));
      const answered = new Promise<void>((resolve) => socket.on("data", () => response.endsWith("}") && resolve()));
      socket.write("{}");
      await answered;
      expect(response).toMatch(/^HTTP\/1\.1 200 /);
      expect(response.toLowerCase()).toContain("\r\nconnection: close\r\n");
      await ended;
      expect(await server.exited).toBe(0);
      expect(server.events()).toContain("stopped");
      expect(server.events()).not.toContain("drain_timeout");
    } finally {
      socket.destroy();
      server.child.kill("SIGKILL");
    }
  });

  it("does not listen before its Redis client is ready, and listens anyway after a bounded wait", async () => {
    // A Redis that accepts connections and never answers: the client never becomes ready.
    const stalled = createServer((socket) => socket.on("data", () => {}));
    await new Promise<void>((resolve) => stalled.listen(0, "127.0.0.1", resolve));
    const redisUrl = `redis://127.0.0.1:${(stalled.address() as AddressInfo).port}`;
    const server = spawnServer({
      STORE: "redis",
      REDIS_URL: redisUrl,
      REDIS_CONNECT_TIMEOUT_MS: "100",
      REDIS_COMMAND_TIMEOUT_MS: "100",
    });
    try {
      await server.logged("listening");
      const names = server.events();
      expect(names.indexOf("listening_without_redis")).toBeGreaterThan(-1);
      expect(names.indexOf("listening_without_redis")).toBeLessThan(names.indexOf("listening"));
      expect(server.lines().find((e) => e.event === "listening_without_redis")?.waitedMs).toBe(500);
    } finally {
      server.child.kill("SIGKILL");
      stalled.close();
    }
  });

  it("serves /healthz, /readyz and /metrics on the operator listener only; /readyz is 503 once it drains", async () => {
    const server = spawnServer({ SHUTDOWN_DELAY_MS: "3000", LOG_LEVEL: "info" });
    try {
      const listening = await server.logged("listening");
      const app = `http://127.0.0.1:${listening.port}`;
      const ops = `http://127.0.0.1:${listening.opsPort}`;
      expect(listening.opsPort).not.toBe(listening.port);
      for (const path of ["/healthz", "/readyz", "/metrics"]) {
        const pub = await fetch(app + path);
        expect({ path, status: pub.status, body: (await pub.json()) as unknown }).toMatchObject({
          path,
          status: 404,
          body: { error: "not_found" },
        });
        expect({ path, status: (await fetch(ops + path)).status }).toEqual({ path, status: 200 });
      }
      expect(await (await fetch(`${ops}/readyz`)).json()).toEqual({
        status: "ready",
        replica: expect.any(String) as unknown,
      });
      // Only those three: the operator listener serves nothing else, in no other spelling.
      for (const path of ["/", "/counter", "/METRICS", "/metrics/", "/Healthz"])
        expect({ path, status: (await fetch(ops + path)).status }).toEqual({ path, status: 404 });

      const draining = server.logged("draining");
      server.child.kill("SIGTERM");
      await draining;
      // The public listener is closed, the operator one still answers: not ready, draining.
      const drained = await fetch(`${ops}/readyz`);
      expect(drained.status).toBe(503);
      expect(await drained.json()).toEqual({ status: "draining", replica: expect.any(String) as unknown });
      expect((await fetch(`${ops}/healthz`)).status).toBe(200);
      expect(await server.exited).toBe(0);
    } finally {
      server.child.kill("SIGKILL");
    }
  });
});
