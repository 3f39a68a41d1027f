// The increment routes for a returning visitor, in front of express-session: one Redis round
// trip (the counter's script checks that the session is stored and young enough, then
// increments) instead of two (express-session's GET, then the script). The profile of the
// increment path showed a third of a replica's CPU in socket writes, one per Redis command.
//
// Anything this path cannot answer exactly as the full path would, it hands on unchanged
// (next()): no cookie, a cookie whose signature matches no secret, a session that is not
// stored or is past its absolute timeout, a bad Idempotency-Key or amount (the full path
// gives the 400). The body is read before this path (stateChangingBody in app.ts), so one that
// cannot be read gets the same 4xx on both paths.
import { Router, type Request, type RequestHandler, type Response } from "express";
import { parseIdempotencyKey, type Counter, type IncrementRequest, type IncrementResult } from "../counter.ts";
import { VerifiedCookies, type VerifiedSession } from "../middleware/session-guard.ts";
import { COUNTER_TEXT_PATHS, sendCountText, sendIncrement } from "./answers.ts";
import { parseBy } from "./api.ts";

type StoredIncrement = NonNullable<Counter["incrementStored"]>;

export function storedCounterRoutes(opts: {
  incrementStored: StoredIncrement;
  cookieName: string;
  secrets: readonly string[];
  replicaId: string;
}): Router {
  const { incrementStored, cookieName, secrets, replicaId } = opts;
  const SID = Symbol("stored session");
  type WithSid = Request & { [SID]?: VerifiedSession };
  const cookies = new VerifiedCookies(cookieName, secrets);

  // First, before the body is read: without a validly signed cookie, the request leaves this
  // route untouched (next("route")) and express-session handles it as it always did.
  const signed: RequestHandler = (req, _res, next) => {
    const verified = cookies.verify(req.headers.cookie);
    if (verified === undefined) return next("route");
    (req as WithSid)[SID] = verified;
    next();
  };
  // Every other method passes on too, to the full route's 405 (else Express would answer an
  // OPTIONS here itself, with a 200 naming only this route's method).
  const pass: RequestHandler = (_req, _res, next) => next();

  const route =
    (
      parse: (req: Request) => IncrementRequest,
      answer: (res: Response, r: IncrementResult, session: VerifiedSession) => void,
    ): RequestHandler =>
    async (req, res, next) => {
      const session = (req as WithSid)[SID]!;
      let inc: IncrementRequest;
      try {
        inc = parse(req);
      } catch {
        return next(); // the full path gives the same 400, with the session loaded
      }
      const result = await incrementStored(session.sid, inc);
      if (result === undefined) return next();
      answer(res, result, session);
    };

  const r = Router({ strict: true, caseSensitive: true });
  r.route("/api/counter")
    .post(
      signed,
      route(
        (req) => ({ by: parseBy(req), idempotencyKey: parseIdempotencyKey(req.get("Idempotency-Key")) }),
        (res, result, { label }) => sendIncrement(res, result, replicaId, label),
      ),
    )
    .all(pass);
  for (const path of COUNTER_TEXT_PATHS) {
    r.route(path)
      .get(
        signed,
        route(
          () => ({ by: 1, idempotencyKey: undefined }),
          (res, { count }) => sendCountText(res, count),
        ),
      )
      .all(pass);
  }
  return r;
}
