// Builds the operator app: /healthz, /readyz and /metrics, on a listener of their own
// (OPS_HOST:OPS_PORT) that nginx never proxies to, so no path spelling through the load
// balancer (/metrics/, /METRICS, ...) can reach them. Never listens (server.ts does).
import express, { type Express } from "express";
import type { RedisClient } from "./redis.ts";
import type { Logger } from "pino";
import type { Lifecycle } from "./lifecycle.ts";
import type { Metrics } from "./metrics.ts";
import { methodNotAllowed } from "./errors.ts";
import { errorHandler, unknownRoute } from "./middleware/errors.ts";
import { noStore } from "./middleware/no-store.ts";
import { healthRoutes } from "./routes/health.ts";

export const OPS_PATHS = ["/healthz", "/readyz", "/metrics"] as const;

export type OpsDeps = {
  replicaId: string;
  logger: Logger;
  redis: RedisClient | undefined;
  lifecycle: Lifecycle;
  metrics: Metrics;
};

export function createOpsApp({ replicaId, logger, redis, lifecycle, metrics }: OpsDeps): Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("strict routing", true);
  app.set("case sensitive routing", true);
  app.use(noStore);
  // No request log and no HTTP metrics: probes and scrapes every few seconds would drown both. The
  // logger itself, for the error handler's line about a failure here.
  app.use((req, _res, next) => {
    req.log = logger;
    next();
  });
  app.use(healthRoutes({ replicaId, lifecycle, redis, logger }));
  app.get("/metrics", metrics.handler);
  // A path it serves, with another method than GET (or HEAD): 405.
  app.all([...OPS_PATHS], (_req, _res, next) => next(methodNotAllowed(["GET", "HEAD"])));
  app.use(unknownRoute);
  app.use(errorHandler);
  return app;
}
