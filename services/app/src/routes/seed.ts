// The tutorial's routes, answer for answer: GET /counter (also as /redis-store-counter and the
// tutorial's /radis-store-counter: the same counter on the same session) and GET /session-destroy.
// Note: nginx retries a GET on the next replica after an upstream error, so a replica
// SIGKILLed after incrementing but before answering can make GET /counter count twice.
// POST /api/counter with an Idempotency-Key is the exactly-once path.
import { Router } from "express";
import type { Counter } from "../counter.ts";
import { methodNotAllowed } from "../errors.ts";
import type { SessionRotator } from "../login.ts";
import { COUNTER_TEXT_PATHS, sendCountText } from "./answers.ts";

export function seedRoutes(counter: Counter, rotator: Pick<SessionRotator, "destroy">): Router {
  const r = Router({ strict: true, caseSensitive: true });
  for (const path of COUNTER_TEXT_PATHS) {
    r.route(path)
      .get(async (req, res) => {
        const { count } = await counter.increment(req, { by: 1, idempotencyKey: undefined });
        sendCountText(res, count);
      })
      .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD"])));
  }
  r.route("/session-destroy")
    .get(async (req, res) => {
      await rotator.destroy(req);
      res.clearCookie(req.app.get("session cookie name") as string, { path: "/" });
      res.type("text/plain").send("session destroyed");
    })
    .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD"])));
  return r;
}
