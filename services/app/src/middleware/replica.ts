// Stamps every response with the replica that served it, and marks responses during a
// drain with Connection: close so nginx stops reusing this replica's keep-alive sockets.
import type { RequestHandler } from "express";
import type { Lifecycle } from "../lifecycle.ts";

export function replicaHeader(replicaId: string, lifecycle: Lifecycle): RequestHandler {
  return (_req, res, next) => {
    res.setHeader("X-Replica", replicaId);
    if (lifecycle.draining) res.setHeader("Connection", "close");
    next();
  };
}
