// The tutorial's MemoryStore lesson, kept runnable: GET /memory-store-counter counts in a
// session held in THIS replica's memory, under its own cookie. Behind round-robin the next
// request lands on another replica that has never heard of that session, so the count keeps
// starting over: the reason the app stores sessions in Redis. Mounted before the Redis-backed
// session middleware, so the two sessions never mix.
import { Router } from "express";
import session from "express-session";
import createMemoryStore from "memorystore";
import type { Config } from "../config.ts";
import { methodNotAllowed } from "../errors.ts";
import type { NewSessionGate } from "../new-sessions.ts";
import { sendCountText } from "./answers.ts";

/**
 * express-session's own MemoryStore never forgets a session before it expires, so a client
 * that drops its cookie every time could fill the heap. memorystore is the same store with an
 * LRU bound: past this many sessions the least recently used is dropped (~200 B each).
 */
export const MEMORY_STORE_MAX_SESSIONS = 10_000;

export function memoryStoreCounterRoutes(opts: { config: Config; gate: NewSessionGate }): Router {
  const { config, gate } = opts;
  const MemoryStore = createMemoryStore(session);
  const store = new MemoryStore({
    max: MEMORY_STORE_MAX_SESSIONS,
    ttl: config.session.idleTimeoutSeconds * 1000,
    checkPeriod: 60_000, // sweep expired sessions every minute (the timer is unref'd)
  });
  const memorySession = session({
    store,
    name: `${config.session.cookieName}-memory`,
    secret: [...config.session.secrets],
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: "lax", secure: "auto", path: "/memory-store-counter" },
  });

  const r = Router({ strict: true, caseSensitive: true });
  r.route("/memory-store-counter")
    .get(memorySession, async (req, res) => {
      // A new session here is a new session like any other: the same per-address limit.
      if (req.session.count === undefined) await gate.limit(req);
      req.session.count = (req.session.count ?? 0) + 1;
      sendCountText(res, req.session.count);
    })
    .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD"])));
  return r;
}
