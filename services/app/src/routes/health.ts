// Liveness never touches Redis (a Redis outage must not get replicas restarted);
// readiness does, and fails while draining.
import { Router } from "express";
import type { Redis } from "ioredis";
import type { Lifecycle } from "../lifecycle.ts";

export function healthRoutes(opts: { replicaId: string; lifecycle: Lifecycle; redis: Redis | undefined }): Router {
  const r = Router();
  r.get("/healthz", (_req, res) => {
    res.json({ status: "ok", replica: opts.replicaId });
  });
  r.get("/readyz", async (_req, res) => {
    if (opts.lifecycle.draining) {
      res.status(503).json({ status: "draining", replica: opts.replicaId });
      return;
    }
    if (opts.redis) {
      try {
        await opts.redis.ping();
      } catch (err) {
        res.status(503).json({ status: "redis_unavailable", replica: opts.replicaId, message: (err as Error).message });
        return;
      }
    }
    res.json({ status: "ready", replica: opts.replicaId });
  });
  return r;
}
