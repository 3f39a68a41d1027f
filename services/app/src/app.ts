// Builds the Express app from its parts; never listens (server.ts does).
import express, { type Express } from "express";
import type { RedisClient } from "./redis.ts";
import type { Logger } from "pino";
import type { Config } from "./config.ts";
import { AtomicCounter, SessionCounter, type Counter } from "./counter.ts";
import type { Lifecycle } from "./lifecycle.ts";
import { SessionRotator } from "./login.ts";
import { createMetrics, type Metrics } from "./metrics.ts";
import { NewSessionGate } from "./new-sessions.ts";
import { refuseCrossSite } from "./middleware/cross-site.ts";
import { errorHandler, unknownRoute } from "./middleware/errors.ts";
import { stateChangingBody } from "./middleware/json-body.ts";
import { noStore } from "./middleware/no-store.ts";
import { replicaHeader } from "./middleware/replica.ts";
import { sessionGuard } from "./middleware/session-guard.ts";
import { requestLog } from "./middleware/request-log.ts";
import { apiRoutes } from "./routes/api.ts";
import { authRoutes } from "./routes/auth.ts";
import { memoryStoreCounterRoutes } from "./routes/memory-store-counter.ts";
import { pageRoutes } from "./routes/page.ts";
import { seedRoutes } from "./routes/seed.ts";
import { storedCounterRoutes } from "./routes/stored-counter.ts";
import { createStore, sessionMiddleware } from "./session.ts";

/** `metrics` is shared with the operator app (ops.ts), which serves it; created here when absent. */
export type AppDeps = {
  config: Config;
  logger: Logger;
  redis: RedisClient | undefined;
  lifecycle: Lifecycle;
  metrics?: Metrics;
};

export function createApp({ config, logger, redis, lifecycle, ...deps }: AppDeps): Express {
  const metrics = deps.metrics ?? createMetrics({ replicaId: config.replicaId, redis });
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("trust proxy", config.trustProxy);
  app.set("session cookie name", config.session.cookieName);
  // /counter/ and /COUNTER are not /counter: one spelling per route, so a check keyed on the
  // path (nginx's, the cross-site guard's) sees what the router will run. Routers set the same.
  app.set("strict routing", true);
  app.set("case sensitive routing", true);

  // Every place that stores a new session asks this gate first.
  const gate = new NewSessionGate(config, redis);
  const counter: Counter = metrics.instrumentCounter(
    config.counter === "atomic" && redis ? new AtomicCounter(redis, config, gate) : new SessionCounter(gate),
  );
  const rotator = new SessionRotator(redis, config, gate);
  const store = createStore(config, redis, { observe: metrics.observeStore, log: logger });

  app.use(noStore);
  app.use(metrics.http);
  app.use(replicaHeader(config.replicaId, lifecycle));
  app.use(requestLog(logger));
  // /healthz, /readyz and /metrics are on the operator listener only (ops.ts): a 404 here.
  app.use(refuseCrossSite({ publicOrigins: config.publicOrigins }));
  app.use(pageRoutes());
  app.use(memoryStoreCounterRoutes({ config, gate }));
  // Every body the API takes, on every state-changing /api route: JSON of at most 1 KiB, or none.
  app.use("/api", stateChangingBody());
  // A returning visitor's increment in one Redis round trip; anything else falls through.
  if (counter.incrementStored && config.store === "redis") {
    app.use(
      storedCounterRoutes({
        incrementStored: counter.incrementStored.bind(counter),
        cookieName: config.session.cookieName,
        secrets: config.session.secrets,
        replicaId: config.replicaId,
      }),
    );
  }
  app.use(
    sessionMiddleware(config, store),
    sessionGuard({ cookieName: config.session.cookieName, secrets: config.session.secrets }),
  );
  // The API's routes first, so that a new visitor's first increment does not walk the auth and seed
  // routers. No two of these routers share a path, so their order changes no answer.
  app.use("/api", metrics.mounted("/api"));
  app.use(
    "/api",
    apiRoutes({ counter, gate, rotator, replicaId: config.replicaId, cookieName: config.session.cookieName }),
  );
  app.use(
    "/api",
    authRoutes({
      counter,
      rotator,
      replicaId: config.replicaId,
      cookieName: config.session.cookieName,
    }),
  );
  app.use(seedRoutes(counter, rotator));
  app.use(unknownRoute);
  app.use(errorHandler);
  return app;
}
