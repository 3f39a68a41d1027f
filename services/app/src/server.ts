// Entry point: load config, listen, and shut down gracefully on SIGTERM/SIGINT.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createApp } from "./app.ts";
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { Lifecycle } from "./lifecycle.ts";
import { createLogger } from "./logger.ts";
import { createRedis } from "./redis.ts";

let config: Config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\nSee .env.example for every variable and its default.\n`);
  process.exit(78); // EX_CONFIG
}

const logger = createLogger({ level: config.logLevel, replicaId: config.replicaId });
if (config.session.usingDevSecret) logger.warn({ event: "dev_secret" }, "SESSION_SECRET is not set; using the development default (refused when NODE_ENV=production)");

const redis = config.store === "redis" ? createRedis(config, logger) : undefined;
const lifecycle = new Lifecycle();
const app = createApp({ config, logger, redis, lifecycle });
const server = createServer(app);
// Longer than nginx's upstream keepalive_timeout (60 s), so nginx always closes an idle
// connection first and never sends a request down a socket this side is closing.
server.keepAliveTimeout = config.keepAliveTimeoutMs;
server.headersTimeout = config.keepAliveTimeoutMs + 1000;

/** Resolves true once the Redis client is ready, false after `ms`. */
function redisReady(ms: number): Promise<boolean> {
  if (!redis || redis.status === "ready") return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    redis.once("ready", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

async function shutdown(signal: string): Promise<void> {
  if (lifecycle.draining) return;
  lifecycle.startDraining();
  logger.info({ event: "draining", signal }, "not ready; draining");
  // Keep serving briefly, with Connection: close, so nginx's pooled sockets to this replica
  // are used up by requests instead of being cut while nginx may be writing to them.
  await sleep(config.shutdownDelayMs);
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const deadline = sleep(config.shutdownDrainMs).then(() => "timeout" as const);
  if ((await Promise.race([closed, deadline])) === "timeout") {
    logger.warn({ event: "drain_timeout", ms: config.shutdownDrainMs }, "drain deadline reached; closing remaining connections");
    server.closeAllConnections();
  }
  if (redis) await redis.quit().catch(() => redis.disconnect());
  logger.info({ event: "stopped" }, "stopped");
  logger.flush();
  process.exitCode = 0;
  setTimeout(() => process.exit(0), 100).unref();
}

process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

// nginx has no readiness probe: it sends requests to any port that accepts. Listening before
// the Redis client is ready would answer a restarted replica's first requests with 503s (seen
// in rolling restarts under load). Wait a bounded time, then listen anyway, so a replica
// started during a Redis outage still answers /healthz and fast 503s.
// The signal handlers above are already in place while it waits.
const waitMs = config.redis.connectTimeoutMs * 5;
if (!(await redisReady(waitMs))) logger.warn({ event: "listening_without_redis", waitedMs: waitMs }, "redis is not ready; listening anyway, answering 503 until it is");
if (!lifecycle.draining) {
  server.listen(config.port, config.host, () => {
    const { port } = server.address() as AddressInfo;
    logger.info({ event: "listening", port, store: config.store, counter: config.counter }, "listening");
  });
}

