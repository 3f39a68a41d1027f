// A minimal login flow to show sessions used for what they are for. DEMO ONLY: a name is
// enough to log in; there are no passwords and no user store. Do not copy the "log in" part,
// copy what happens to the session around it.
import { Router, type Request } from "express";
import type { Counter } from "../counter.ts";
import { badRequest, HttpError, methodNotAllowed } from "../errors.ts";
import type { SessionRotator } from "../login.ts";
import { jsonBody } from "../middleware/json-body.ts";
import { destroySession, sessionLabel } from "../session.ts";

// Letters, digits, punctuation and spaces; no control or format characters (no log or
// terminal injection through a name that is echoed back).
const NAME_RE = /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]{1,64}$/u;

function parseName(req: Request): string {
  const body: unknown = req.body;
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badRequest("invalid_body", 'Send a JSON object such as {"name": "ada"}.');
  const { name, ...rest } = body as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw badRequest("invalid_body", `Unknown field(s): ${extra.join(", ")}. Only "name" is accepted.`);
  if (typeof name !== "string") throw badRequest("invalid_body", '"name" is required: a string of 1 to 64 characters.');
  const trimmed = name.normalize("NFC").trim();
  if (!NAME_RE.test(trimmed)) throw badRequest("invalid_body", '"name" must be 1 to 64 characters, without control characters.');
  return trimmed;
}

export function authRoutes(opts: { counter: Counter; rotator: SessionRotator; replicaId: string; cookieName: string }): Router {
  const { counter, rotator, replicaId, cookieName } = opts;
  const r = Router();

  r.route("/login")
    .post(jsonBody(), async (req, res) => {
      const name = parseName(req);
      await rotator.rotate(req, { user: { name, loginAt: Date.now() } });
      const count = await counter.read(req);
      res.json({ user: { name }, count, replica: replicaId, session: sessionLabel(req.sessionID) });
    })
    .all((_req, _res, next) => next(methodNotAllowed(["POST"])));

  // Server-side destroy first, then the cookie: a copy of the old cookie replayed later
  // finds no session and starts an empty one.
  r.route("/logout")
    .post(async (req, res) => {
      const existed = req.session.createdAt !== undefined;
      await destroySession(req);
      res.clearCookie(cookieName, { path: "/", httpOnly: true, sameSite: "lax", secure: req.secure });
      res.json({ loggedOut: existed, replica: replicaId });
    })
    .all((_req, _res, next) => next(methodNotAllowed(["POST"])));

  r.route("/me")
    .get(async (req, res) => {
      const user = req.session.user;
      if (!user) throw new HttpError(401, "not_logged_in", 'No one is logged in on this session; POST /api/login {"name": "..."} first.');
      const count = await counter.read(req);
      res.json({ user: { name: user.name, loginAt: new Date(user.loginAt).toISOString() }, count, replica: replicaId, session: sessionLabel(req.sessionID) });
    })
    .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD"])));
  return r;
}
