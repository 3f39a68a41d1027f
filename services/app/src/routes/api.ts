// The JSON API: POST /api/counter (optionally with Idempotency-Key), GET and DELETE /api/session.
// Bodies arrive read and checked (JSON of at most 1 KiB, or none): stateChangingBody in app.ts.
import { Router, type Request } from "express";
import { parseIdempotencyKey, type Counter } from "../counter.ts";
import { parseBy, parseNoBody } from "../bodies.ts";
import { methodNotAllowed } from "../errors.ts";
import type { SessionRotator } from "../login.ts";
import { startSession, type NewSessionGate } from "../new-sessions.ts";
import { sessionLabel } from "../session.ts";
import { sendIncrement } from "./answers.ts";

// The body schema lives in bodies.ts; re-exported for the routes that import it from here.
export { parseBy };

export function apiRoutes(opts: {
  counter: Counter;
  gate: NewSessionGate;
  rotator: Pick<SessionRotator, "destroy">;
  replicaId: string;
  cookieName: string;
}): Router {
  const { counter, gate, replicaId } = opts;
  const r = Router({ strict: true, caseSensitive: true });
  const label = (req: Request) => (req.session.createdAt === undefined ? null : sessionLabel(req.sessionID));

  r.route("/counter")
    .post(async (req, res) => {
      const idempotencyKey = parseIdempotencyKey(req.get("Idempotency-Key"));
      const by = parseBy(req);
      const result = await counter.increment(req, { by, idempotencyKey });
      sendIncrement(res, result, replicaId, sessionLabel(req.sessionID));
    })
    .all((_req, _res, next) => next(methodNotAllowed(["POST"])));

  r.route("/session")
    // Starts a session without counting (201), or reports the existing one (200). Clients
    // that must know their session before the first increment (the load harness) call it
    // first; retrying it is harmless, a lost answer only leaves an empty session to expire.
    .post(async (req, res) => {
      parseNoBody(req);
      const created = req.session.createdAt === undefined;
      if (created) await startSession(req, gate);
      const count = await counter.read(req);
      res.status(created ? 201 : 200).json({ count, replica: replicaId, session: label(req) });
    })
    .get(async (req, res) => {
      const count = await counter.read(req);
      res.json({ count, replica: replicaId, session: label(req) });
    })
    .delete(async (req, res) => {
      parseNoBody(req);
      const existed = req.session.createdAt !== undefined;
      await opts.rotator.destroy(req);
      res.clearCookie(opts.cookieName, { path: "/" });
      res.json({ destroyed: existed, replica: replicaId });
    })
    .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD", "POST", "DELETE"])));
  return r;
}
