// Liveness never touches Redis (a Redis outage must not get replicas restarted);
// readiness does, and fails while starting and while draining. Served on the operator
// listener only (ops.ts). Neither answer carries error text: what failed goes to the log.
import { Router } from "express";
import type { RedisClient } from "../redis.ts";
import type { Logger } from "pino";
import type { Lifecycle } from "../lifecycle.ts";

export type HealthDeps = { replicaId: string; lifecycle: Lifecycle; redis: RedisClient | undefined; logger: Logger };

export function healthRoutes(opts: HealthDeps): Router {
  const r = Router({ strict: true, caseSensitive: true });
  // Logged when readiness changes, not on every probe: a probe every few seconds during an
  // outage would otherwise repeat the same line.
  let lastStatus = "ready";
  const report = (status: string, err?: unknown) => {
    if (status === lastStatus) return;
    lastStatus = status;
    if (status === "ready") opts.logger.info({ event: "ready" }, "ready");
    else opts.logger.warn({ event: "not_ready", status, err: (err as Error | undefined)?.message }, "not ready");
  };

  r.get("/healthz", (_req, res) => {
    res.json({ status: "ok", replica: opts.replicaId });
  });
  r.get("/readyz", async (_req, res) => {
    const status = opts.lifecycle.draining ? "draining" : !opts.lifecycle.listening ? "starting" : undefined;
    if (status) {
      report(status);
      res.status(503).json({ status, replica: opts.replicaId });
      return;
    }
    if (opts.redis) {
      try {
        await opts.redis.ping();
      } catch (err) {
        report("redis_unavailable", err);
        res.status(503).json({ status: "redis_unavailable", replica: opts.replicaId });
        return;
      }
    }
    report("ready");
    res.json({ status: "ready", replica: opts.replicaId });
  });
  return r;
}
