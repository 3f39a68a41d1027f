// Entry point: load config, listen, and shut down gracefully on SIGTERM/SIGINT.
import { createServer, STATUS_CODES } from "node:http";
import net, { type AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { createApp } from "./app.ts";
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { Lifecycle } from "./lifecycle.ts";
import { createLogger } from "./logger.ts";
import { createMetrics } from "./metrics.ts";
import { createOpsApp } from "./ops.ts";
import { checkSentinels, createRedis } from "./redis.ts";
import { clusterTopologyProblems } from "./redis-topology.ts";

let config: Config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\nSee .env.example for every variable and its default.\n`);
  process.exit(78); // EX_CONFIG
}

const logger = createLogger({ level: config.logLevel, replicaId: config.replicaId, flushMs: config.logFlushMs });
if (config.session.usingDevSecret)
  logger.warn(
    { event: "dev_secret" },
    "SESSION_SECRET is not set; using the development default (refused when NODE_ENV=production)",
  );

// A Redis Cluster this replica could never serve from (no seed answers, a slot without a
// primary, a primary it cannot reach) is a configuration error, reported as one: exit 78.
if (config.store === "redis" && config.redis.clusterNodes.length > 0) {
  const problems = await clusterTopologyProblems(config, config.redis.connectTimeoutMs * 5);
  if (problems.length > 0) {
    logger.fatal({ event: "redis_topology_invalid", problems }, "the Redis Cluster topology is not usable");
    process.stderr.write(`invalid Redis Cluster topology:\n${problems.map((p) => `  - ${p}`).join("\n")}\n`);
    logger.flush();
    process.exit(78); // EX_CONFIG
  }
}
// A wrong Sentinel topology is a configuration error (exit 78, as for a Cluster), not a replica that
// retries forever: the Sentinels are asked once, before anything listens.
if (config.store === "redis" && config.redis.sentinel) {
  const { problems, warnings } = await checkSentinels(config);
  if (problems.length > 0) {
    process.stderr.write(
      `${new ConfigError(problems).message}\nSee .env.example for every variable and its default.\n`,
    );
    process.exit(78);
  }
  for (const w of warnings) logger.warn({ event: "sentinel_unreachable" }, w);
}

const redis = config.store === "redis" ? createRedis(config, logger) : undefined;
const lifecycle = new Lifecycle();
const metrics = createMetrics({ replicaId: config.replicaId, redis });
const app = createApp({ config, logger, redis, lifecycle, metrics });
// nginx refuses oversized headers (a JSON 431 past 8 KiB a line or 32 KiB in all). A replica
// must accept everything nginx lets through, or Node's default 16 KiB limit would answer
// first with a bare 431 that has no body.
// requireHostHeader off: nginx passes no Host on when an HTTP/1.0 client sent none, and Node
// would refuse that request with a bare, untyped 400 before the app sees it.
const server = createServer({ maxHeaderSize: 48 * 1024, requireHostHeader: false }, app);
// Longer than nginx's upstream keepalive_timeout (60 s), so nginx always closes an idle
// connection first and never sends a request down a socket this side is closing.
server.keepAliveTimeout = config.keepAliveTimeoutMs;
server.headersTimeout = config.keepAliveTimeoutMs + 1000;

// A request Node's parser refuses but nginx let through (a DEL or vertical-tab byte in a
// header value) gets a JSON error like every other bad request, not Node's bare 400.
server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, error, message] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, "headers_too_large", "Request headers are too large."]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "request_timeout", "The request was not received in time."]
        : [400, "bad_request", "The replica could not parse this HTTP request."];
  const body = `${JSON.stringify({ error, message })}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ` +
      `${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
  );
});

// The operator listener (/healthz, /readyz, /metrics): nginx never proxies to it. It listens
// at once, so liveness answers while the public listener still waits for Redis, and stays
// open through a drain, so /readyz answers 503 "draining" until the process exits.
const opsServer = createServer(createOpsApp({ replicaId: config.replicaId, logger, redis, lifecycle, metrics }));
opsServer.keepAliveTimeout = 5000;
/** A listener that cannot start (port taken, address not here, a host name that does not resolve): one line, exit 1. */
function exitOnListenError(event: string, what: string, keys: string, where: { host: string; port: number }) {
  return (err: Error) => {
    logger.fatal({ event, err: err.message, ...where }, `the ${what} could not start; check ${keys}`);
    logger.flush();
    process.exit(1);
  };
}
opsServer.on(
  "error",
  exitOnListenError("ops_listen_failed", "operator listener", "OPS_PORT / OPS_HOST (HOST when unset)", {
    host: config.opsHost,
    port: config.opsPort,
  }),
);
server.on(
  "error",
  exitOnListenError("listen_failed", "public listener", "PORT / HOST", { host: config.host, port: config.port }),
);
opsServer.listen(config.opsPort, config.opsHost);

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
  // Stop accepting at once, but leave open connections alone (net.Server's close, not
  // http.Server's, which would also cut idle keep-alive sockets). A refused connect is the
  // one failure nginx may retry for any method, POST included, and it takes this replica out
  // of rotation (max_fails). Cutting an idle pooled socket instead races nginx writing a
  // request down it: an unkeyed POST then gets a 502 (the harness's rolling restarts saw that).
  const closed = new Promise<void>((resolve) => {
    if (!server.listening) return resolve();
    net.Server.prototype.close.call(server, () => resolve());
  });
  // Requests already arriving on pooled sockets are served with Connection: close, which
  // retires those sockets one by one; what is still idle after the delay is closed.
  // A ref'd timer: with the listener closed, nothing else may keep the process alive.
  await new Promise((r) => setTimeout(r, config.shutdownDelayMs));
  server.closeIdleConnections();
  const deadline = sleep(config.shutdownDrainMs).then(() => "timeout" as const);
  if ((await Promise.race([closed, deadline])) === "timeout") {
    logger.warn(
      { event: "drain_timeout", ms: config.shutdownDrainMs },
      "drain deadline reached; closing remaining connections",
    );
    server.closeAllConnections();
  }
  if (redis) await redis.quit().catch(() => redis.disconnect());
  opsServer.close();
  opsServer.closeAllConnections();
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
if (!(await redisReady(waitMs)))
  logger.warn(
    { event: "listening_without_redis", waitedMs: waitMs },
    "redis is not ready; listening anyway, answering 503 until it is",
  );
if (!lifecycle.draining) {
  server.listen(config.port, config.host, () => {
    lifecycle.markListening();
    const { port } = server.address() as AddressInfo;
    const opsPort = opsServer.listening ? (opsServer.address() as AddressInfo).port : config.opsPort;
    logger.info({ event: "listening", port, opsPort, store: config.store, counter: config.counter }, "listening");
  });
}
