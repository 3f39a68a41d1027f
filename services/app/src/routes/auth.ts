// A minimal login flow to show sessions used for what they are for. DEMO ONLY: a name is
// enough to log in; there are no passwords and no user store. Do not copy the "log in" part,
// copy what happens to the session around it.
import { Router } from "express";
import type { Counter } from "../counter.ts";
import { parseName, parseNoBody } from "../bodies.ts";
import { HttpError, methodNotAllowed } from "../errors.ts";
import { loginFingerprint, parseLoginKey, type SessionRotator } from "../login.ts";
import { sessionLabel } from "../session.ts";

export { parseName };

export function authRoutes(opts: {
  counter: Counter;
  rotator: SessionRotator;
  replicaId: string;
  cookieName: string;
}): Router {
  const { counter, rotator, replicaId, cookieName } = opts;
  const r = Router({ strict: true, caseSensitive: true });

  r.route("/login")
    .post(async (req, res) => {
      const name = parseName(req);
      const key = parseLoginKey(req.get("Idempotency-Key"));
      const { count, replayed } = await rotator.rotate(
        req,
        { user: { name, loginAt: Date.now() } },
        key === undefined ? undefined : { key, fingerprint: loginFingerprint(name) },
      );
      // The count the login carried over (a replay answers the same): the answer is the same body each time.
      if (replayed) res.setHeader("Idempotent-Replayed", "true");
      res.json({ user: { name }, count, replica: replicaId, session: sessionLabel(req.sessionID) });
    })
    .all((_req, _res, next) => next(methodNotAllowed(["POST"])));

  // Server-side destroy first, then the cookie: a copy of the old cookie replayed later
  // finds no session and starts an empty one.
  r.route("/logout")
    .post(async (req, res) => {
      parseNoBody(req);
      const existed = req.session.createdAt !== undefined;
      await rotator.destroy(req);
      res.clearCookie(cookieName, { path: "/", httpOnly: true, sameSite: "lax", secure: req.secure });
      res.json({ loggedOut: existed, replica: replicaId });
    })
    .all((_req, _res, next) => next(methodNotAllowed(["POST"])));

  r.route("/me")
    .get(async (req, res) => {
      const user = req.session.user;
      if (!user)
        throw new HttpError(
          401,
          "not_logged_in",
          'No one is logged in on this session; POST /api/login {"name": "..."} first.',
        );
      const count = await counter.read(req);
      res.json({
        user: { name: user.name, loginAt: new Date(user.loginAt).toISOString() },
        count,
        replica: replicaId,
        session: sessionLabel(req.sessionID),
      });
    })
    .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD"])));
  return r;
}
