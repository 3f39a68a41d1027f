// The app in-process for request-level tests: createApp with its deps built as server.ts builds
// them, on 127.0.0.1 port 0, with a fresh local Redis. `await using` or afterAll(close) tears
// down the server, the app's Redis client and the Redis it started, even when a test fails.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { waitFor } from "../infra/cluster/wait.ts";
import { Visitor } from "../loadtest/client/visitor.ts";
import { createApp } from "../services/app/src/app.ts";
import { loadConfig, type Config } from "../services/app/src/config.ts";
import { AtomicCounter } from "../services/app/src/counter.ts";
import { Lifecycle } from "../services/app/src/lifecycle.ts";
import { createRedis, type RedisClient } from "../services/app/src/redis.ts";
import { startTestRedis, type TestRedis } from "./redis-server.ts";

export const TEST_SECRET = "in-process-test-secret-0123456789abcdef";

export type TestApp = {
  readonly url: string;
  readonly config: Config;
  /** The Redis behind the app (its admin client inspects keys); undefined with STORE=memory. */
  readonly redis: TestRedis | undefined;
  /** A new visitor (its own cookie jar) of this app. */
  visitor(cookie?: string): Visitor;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
};

export type TestAppOptions = {
  /** Environment on top of the test defaults (NODE_ENV=test, LOG_LEVEL=silent, ...). */
  env?: Record<string, string>;
  /** Share a Redis another TestApp started (it is then not stopped by this one's close). */
  redis?: TestRedis;
  /**
   * false builds the app without the one-round-trip path for returning visitors
   * (routes/stored-counter.ts), so every request takes express-session's full path.
   */
  fastPath?: boolean;
  /** Called with the app's own Redis client before the app is built (to observe its commands). */
  onRedis?: (client: RedisClient) => void;
};

/** Builds and starts the app; close it (or `await using`) when done. */
export async function startApp(opts: TestAppOptions = {}): Promise<TestApp> {
  const env: Record<string, string> = {
    NODE_ENV: "test",
    REPLICA_ID: "in-process",
    LOG_LEVEL: "silent",
    SESSION_SECRET: TEST_SECRET,
    ...opts.env,
  };
  const memory = env.STORE === "memory";
  const ownRedis = !memory && !opts.redis ? await startTestRedis({ kind: "process" }) : undefined;
  const testRedis = memory ? undefined : (opts.redis ?? ownRedis);
  let client: RedisClient | undefined;
  let server: Server | undefined;
  const close = async () => {
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
    }
    client?.disconnect();
    await ownRedis?.stop();
  };
  try {
    const config = loadConfig(
      testRedis ? { ...env, REDIS_URL: testRedis.url, REDIS_PASSWORD: testRedis.password } : env,
    );
    const logger = pino({ level: "silent" });
    if (testRedis) {
      client = createRedis(config, logger);
      const c = client;
      await waitFor("the app's Redis client to be ready", () => c.status === "ready", 10_000, 20);
      opts.onRedis?.(c);
    }
    const app =
      opts.fastPath === false
        ? withoutFastPath(() => createApp({ config, logger, redis: client, lifecycle: new Lifecycle() }))
        : createApp({ config, logger, redis: client, lifecycle: new Lifecycle() });
    const s = createServer(app);
    server = s;
    await new Promise<void>((resolve, reject) => s.once("error", reject).listen(0, "127.0.0.1", () => resolve()));
    const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
    return {
      url,
      config,
      redis: testRedis,
      visitor: (cookie) => new Visitor(url, cookie),
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

// createApp mounts the one-round-trip path only when the counter has incrementStored, and reads
// it once, while building. Hiding the method for that moment gives the same app without it.
function withoutFastPath<T>(build: () => T): T {
  const proto = AtomicCounter.prototype as { incrementStored?: unknown };
  const own = Object.getOwnPropertyDescriptor(proto, "incrementStored");
  if (!own)
    throw new Error("AtomicCounter.prototype.incrementStored is gone: update withoutFastPath in test/app-fixture.ts");
  Object.defineProperty(proto, "incrementStored", { ...own, value: undefined });
  try {
    return build();
  } finally {
    Object.defineProperty(proto, "incrementStored", own);
  }
}
