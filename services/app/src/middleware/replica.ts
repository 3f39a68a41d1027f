// Stamps every response with the replica that served it, and marks responses during a
// drain with Connection: close so nginx stops reusing this replica's keep-alive sockets.
import type { RequestHandler } from "express";
import onHeaders from "on-headers";
import type { Lifecycle } from "../lifecycle.ts";

export function replicaHeader(replicaId: string, lifecycle: Lifecycle): RequestHandler {
  return (_req, res, next) => {
    res.setHeader("X-Replica", replicaId);
    // Decided when the headers go out, not when the request came in: a request already in
    // flight at SIGTERM must close its socket too, or that socket stays idle in nginx's pool
    // and the drain waits out SHUTDOWN_DRAIN_MS before cutting it.
    onHeaders(res, () => {
      if (lifecycle.draining) res.setHeader("Connection", "close");
    });
    next();
  };
}
