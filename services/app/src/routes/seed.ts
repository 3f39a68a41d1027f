// The tutorial's routes, answer for answer: GET /counter and GET /session-destroy.
// Note: nginx retries a GET on the next replica after an upstream error, so a replica
// SIGKILLed after incrementing but before answering can make GET /counter count twice.
// POST /api/counter with an Idempotency-Key is the exactly-once path.
import { Router } from "express";
import type { Counter } from "../counter.ts";
import { methodNotAllowed } from "../errors.ts";
import { destroySession } from "../session.ts";

export function seedRoutes(counter: Counter): Router {
  const r = Router({ strict: true, caseSensitive: true });
  r.route("/counter")
    .get(async (req, res) => {
      const { count } = await counter.increment(req, { by: 1, idempotencyKey: undefined });
      res.setHeader("Cache-Control", "no-store");
      res.type("text/plain").send(`count is ${count}`);
    })
    .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD"])));
  r.route("/session-destroy")
    .get(async (req, res) => {
      await destroySession(req);
      res.clearCookie(req.app.get("session cookie name"), { path: "/" });
      res.type("text/plain").send("session destroyed");
    })
    .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD"])));
  return r;
}
