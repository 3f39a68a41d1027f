// A throw-away Redis for the Redis-layer tests: a container from testcontainers (REDIS_IMAGE,
// or its offline stand-in) when a Docker engine answers, else a local redis-server process.
// TEST_REDIS=process (the unit project's default) or { kind: "process" } always takes the
// local process: it starts in tens of milliseconds, a container in seconds.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { docker, dockerAvailable } from "../infra/cluster/docker.ts";
import { waitFor } from "../infra/cluster/wait.ts";
import { resolveBaseImages } from "../infra/images/images.ts";
import { freePort } from "../infra/cluster/ports.ts";

export type TestRedis = {
  readonly kind: "container" | "process";
  readonly host: string;
  readonly port: number;
  readonly password: string;
  /** redis://127.0.0.1:PORT (the password is separate, as the app takes it). */
  readonly url: string;
  /** A client with the password, for arranging and inspecting keys; closed by stop(). */
  readonly admin: Redis;
  /** Stops the server but keeps its address, to play an outage; up() brings it back (empty). */
  down(): Promise<void>;
  up(): Promise<void>;
  /** Removes the server for good. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
};

/**
 * Ryuk, testcontainers' reaper, removes containers when the test process dies; it is an
 * image of its own, which a machine without a registry cannot pull. There it is disabled,
 * and every test stops its container itself (afterAll / `await using`).
 */
async function configureRyuk(): Promise<void> {
  if (process.env.TESTCONTAINERS_RYUK_DISABLED !== undefined) return;
  const { getReaperImage } = await import("testcontainers/build/reaper/reaper.js");
  const image = getReaperImage();
  const usable = await docker(["image", "inspect", image]).then(
    () => true,
    () =>
      docker(["pull", "--quiet", image], { timeoutMs: 120_000 }).then(
        () => true,
        () => false,
      ),
  );
  if (!usable) process.env.TESTCONTAINERS_RYUK_DISABLED = "true";
}

type Base = Omit<TestRedis, "admin" | "url" | typeof Symbol.asyncDispose>;

async function fromContainer(password: string): Promise<Base> {
  await configureRyuk();
  const { RedisContainer } = await import("@testcontainers/redis");
  const { Wait } = await import("testcontainers");
  const { REDIS_IMAGE } = await resolveBaseImages();
  // Published on loopback only: testcontainers binds 0.0.0.0 by default, and a test Redis
  // has no business on the machine's other interfaces.
  class LoopbackRedisContainer extends RedisContainer {
    override async start() {
      const portBindings = (this.hostConfig.PortBindings ?? {}) as Record<string, { HostIp?: string }[]>;
      for (const bindings of Object.values(portBindings)) {
        for (const b of bindings) b.HostIp = "127.0.0.1";
      }
      return super.start();
    }
  }
  // A fixed host port, so the address survives down()/up() (a "0" binding gets a new one).
  const port = await freePort();
  // The stand-in image logs the same line as the official one once it accepts connections.
  const started = await new LoopbackRedisContainer(REDIS_IMAGE)
    .withExposedPorts({ container: 6379, host: port })
    .withPassword(password)
    .withWaitStrategy(Wait.forLogMessage("Ready to accept connections"))
    .start();
  const id = started.getId();
  return {
    kind: "container",
    host: "127.0.0.1",
    port,
    password,
    down: async () => void (await docker(["stop", "--time", "5", id])),
    up: async () => void (await docker(["start", id])),
    stop: async () => void (await started.stop()),
  };
}

async function fromProcess(password: string): Promise<Base> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const up = async () => {
    child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", password],
      { stdio: "ignore" },
    );
    child.once("error", () => {});
  };
  const down = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
    c.kill("SIGTERM");
    // Redis defers SIGTERM while a script runs (a test that failed mid-script): never leave it behind.
    const force = setTimeout(() => c.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(force);
  };
  await up();
  return { kind: "process", host: "127.0.0.1", port, password, up, down, stop: down };
}

export type TestRedisKind = "auto" | "process" | "container";

function kindFromEnv(): TestRedisKind {
  const v = process.env.TEST_REDIS ?? "auto";
  if (v === "auto" || v === "process" || v === "container") return v;
  throw new Error(`TEST_REDIS must be auto, process or container, not ${JSON.stringify(v)}`);
}

/** Starts a Redis with a random password; stop it (or `await using`) when done. */
export async function startTestRedis(opts: { kind?: TestRedisKind } = {}): Promise<TestRedis> {
  const password = randomBytes(18).toString("base64url");
  const kind = opts.kind ?? kindFromEnv();
  const useDocker = kind === "container" || (kind === "auto" && dockerAvailable());
  if (kind === "auto" && !useDocker && process.env.REQUIRE_DOCKER === "1")
    throw new Error("REQUIRE_DOCKER=1 but no Docker engine answers: the Redis tests cannot get a container");
  const base = useDocker ? await fromContainer(password) : await fromProcess(password);
  const admin = new Redis({
    host: base.host,
    port: base.port,
    password,
    maxRetriesPerRequest: 1,
    retryStrategy: () => 100,
  });
  admin.on("error", () => {});
  try {
    await waitFor(`redis on ${base.host}:${base.port}`, async () => (await admin.ping()) === "PONG", 15_000, 100);
  } catch (err) {
    admin.disconnect();
    await base.stop();
    throw err;
  }
  const stop = async () => {
    admin.disconnect();
    await base.stop();
  };
  return { ...base, url: `redis://${base.host}:${base.port}`, admin, stop, [Symbol.asyncDispose]: stop };
}
