// Prometheus metrics for one replica (prom-client, a registry per app): HTTP traffic by route
// template, session store and counter operations, idempotent replays, Redis connection state.
import type { RequestHandler } from "express";
import type { RedisClient } from "./redis.ts";
import { collectDefaultMetrics, Counter as PromCounter, Gauge, Histogram, Registry } from "prom-client";
import type { Counter, IncrementResult } from "./counter.ts";
import { HttpError, StoreUnavailableError } from "./errors.ts";
import type { StoreObserver } from "./session.ts";

// Replicas answer in well under a millisecond when healthy and in ~0.5 s (the Redis command
// timeout) when Redis stalls, so the buckets resolve both ends.
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(opts: { replicaId: string; redis: RedisClient | undefined }) {
  const registry = new Registry();
  // Prometheus adds `instance` from the scrape target; `replica` is the name the app reports
  // in X-Replica and its logs, so a dashboard can be joined with those.
  registry.setDefaultLabels({ replica: opts.replicaId });
  collectDefaultMetrics({ register: registry });

  const requests = new PromCounter({
    name: "http_requests_total",
    help:
      'HTTP requests answered, by method, route template and status; route is "unmatched" when no route ' +
      "handled the request (a 404, a body the /api guard refused before routing, or a session express-session " +
      "failed to load).",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "Time from the request reaching Express to the response being handed to the socket.",
    labelNames: ["method", "route", "status"] as const,
    buckets: HTTP_BUCKETS,
    registers: [registry],
  });
  const storeDuration = new Histogram({
    name: "session_store_operation_duration_seconds",
    help:
      "Session store operations (express-session get/set/touch/destroy, counter_increment/counter_read, " +
      "stored_session_miss: a returning visitor's increment that found no usable session and went on to " +
      "express-session), errors included.",
    labelNames: ["op"] as const,
    buckets: STORE_BUCKETS,
    registers: [registry],
  });
  const storeErrors = new PromCounter({
    name: "session_store_errors_total",
    help:
      "Failed session store operations; code is store_unavailable (not applied), store_timeout (maybe " +
      "applied) or other.",
    labelNames: ["op", "code"] as const,
    registers: [registry],
  });
  const increments = new PromCounter({
    name: "counter_increments_total",
    help: "Counter increments applied (one per request, whatever its `by`); replays are not counted.",
    registers: [registry],
  });
  const replays = new PromCounter({
    name: "counter_idempotent_replays_total",
    help: "Increments answered from a stored Idempotency-Key result instead of being applied again.",
    registers: [registry],
  });

  const redis = opts.redis;
  if (redis) {
    new Gauge({
      name: "redis_connected",
      help: "1 while the replica's Redis connection is ready for commands, else 0.",
      registers: [registry],
      collect() {
        this.set(redis.status === "ready" ? 1 : 0);
      },
    });
    // A scrape every 15 s misses a drop that heals in a second; the counter does not.
    const lost = new PromCounter({
      name: "redis_connection_lost_total",
      help: "Times a ready Redis connection was lost.",
      registers: [registry],
    });
    let ready = redis.status === "ready";
    redis.on("ready", () => (ready = true));
    redis.on("close", () => {
      if (ready) lost.inc();
      ready = false;
    });
  }

  const errorCode = (err: unknown) => (err instanceof StoreUnavailableError ? err.code : "other");

  return {
    registry,

    /** First middleware: counts and times every request under its route template. */
    http: ((req, res, next) => {
      const start = performance.now();
      res.once("finish", () => {
        // Route templates, never raw URLs: a scanner requesting random paths must not
        // create a series per path. An error thrown inside a mounted router reaches the
        // error handler after Express reset req.baseUrl, hence the base noted by mounted().
        // Middleware that serves paths without a route (static files) names itself in routeLabel.
        const locals = res.locals as { routeBase?: string; routeLabel?: string };
        const route =
          locals.routeLabel ??
          (req.route ? `${locals.routeBase ?? req.baseUrl}${(req.route as { path: string }).path}` : "unmatched");
        const labels = { method: req.method, route, status: res.statusCode };
        requests.inc(labels);
        duration.observe(labels, (performance.now() - start) / 1000);
      });
      next();
    }) satisfies RequestHandler,

    /** Put in front of a router mounted at a path, so route labels keep the mount path. */
    mounted(base: string): RequestHandler {
      return (_req, res, next) => {
        res.locals.routeBase = base;
        next();
      };
    },

    /** SessionStore's observer: times each store operation and counts failures. */
    observeStore: ((op, seconds, err) => {
      storeDuration.observe({ op }, seconds);
      if (err) storeErrors.inc({ op, code: errorCode(err) });
    }) satisfies StoreObserver,

    /** A Counter that times the wrapped one and counts applied increments and replays. */
    instrumentCounter(counter: Counter): Counter {
      // opOf names what a completed call turned out to be (a stored-session miss, see below).
      const timed = async <T>(op: string, fn: () => Promise<T>, opOf: (result: T) => string = () => op): Promise<T> => {
        const start = performance.now();
        let label = op;
        try {
          const result = await fn();
          label = opOf(result);
          return result;
        } catch (err) {
          // 409/422 answers (expired session, reused key) are the client's, not the store's.
          if (!(err instanceof HttpError && err.status < 500)) storeErrors.inc({ op, code: errorCode(err) });
          throw err;
        } finally {
          storeDuration.observe({ op: label }, (performance.now() - start) / 1000);
        }
      };
      const counted = (result: IncrementResult | undefined) => {
        if (result) (result.replayed ? replays : increments).inc();
        return result;
      };
      const incrementStored = counter.incrementStored?.bind(counter);
      return {
        mode: counter.mode,
        increment: (req, inc) => timed("counter_increment", async () => counted(await counter.increment(req, inc))!),
        read: (req) => timed("counter_read", () => counter.read(req)),
        // A miss (the session is not stored, or too old) hands the request to the full path,
        // whose increment is timed as one of its own: the miss is timed as stored_session_miss.
        ...(incrementStored && {
          incrementStored: (sid, inc) =>
            timed(
              "counter_increment",
              async () => counted(await incrementStored(sid, inc)),
              (r) => (r ? "counter_increment" : "stored_session_miss"),
            ),
        }),
      };
    },

    /** GET /metrics in the Prometheus text format. */
    handler: (async (_req, res) => {
      const body = await registry.metrics();
      res.setHeader("Content-Type", registry.contentType);
      res.send(body);
    }) satisfies RequestHandler,
  };
}
