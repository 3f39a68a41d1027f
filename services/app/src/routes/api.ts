// The JSON API: POST /api/counter (optionally with Idempotency-Key), GET and DELETE /api/session.
import { Router, type Request } from "express";
import { parseIdempotencyKey, type Counter } from "../counter.ts";
import { badRequest, methodNotAllowed } from "../errors.ts";
import { jsonBody } from "../middleware/json-body.ts";
import { startSession, type NewSessionGate } from "../new-sessions.ts";
import { destroySession, sessionLabel } from "../session.ts";
import { sendIncrement } from "./answers.ts";

export function parseBy(req: Request): number {
  const body: unknown = req.body;
  if (body === undefined || (typeof body === "object" && body !== null && Object.keys(body).length === 0)) return 1;
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badRequest("invalid_body", 'The body must be a JSON object such as {"by": 1}, or empty.');
  const { by, ...rest } = body as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw badRequest("invalid_body", `Unknown field(s): ${extra.join(", ")}. Only "by" is accepted.`);
  if (by === undefined) return 1;
  if (typeof by !== "number" || !Number.isInteger(by) || by < 1 || by > 1000) throw badRequest("invalid_body", '"by" must be an integer from 1 to 1000.');
  return by;
}

export function apiRoutes(opts: { counter: Counter; gate: NewSessionGate; replicaId: string; cookieName: string }): Router {
  const { counter, gate, replicaId } = opts;
  const r = Router();
  const label = (req: Request) => (req.session.createdAt === undefined ? null : sessionLabel(req.sessionID));

  r.route("/counter")
    .post(jsonBody(), async (req, res) => {
      const idempotencyKey = parseIdempotencyKey(req.get("Idempotency-Key"));
      const by = parseBy(req);
      sendIncrement(res, await counter.increment(req, { by, idempotencyKey }), replicaId, req.sessionID);
    })
    .all((_req, _res, next) => next(methodNotAllowed(["POST"])));

  r.route("/session")
    // Starts a session without counting (201), or reports the existing one (200). Clients
    // that must know their session before the first increment (the load harness) call it
    // first; retrying it is harmless, a lost answer only leaves an empty session to expire.
    .post(async (req, res) => {
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
      const existed = req.session.createdAt !== undefined;
      await destroySession(req);
      res.clearCookie(opts.cookieName, { path: "/" });
      res.json({ destroyed: existed, replica: replicaId });
    })
    .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD", "POST", "DELETE"])));
  return r;
}
