// The one gate every new session passes before anything of it is stored: the first increment,
// POST /api/session, a login without a session and the tutorial's memory-store route.
// It refuses (1) a request that still carries the cookie of a session a login replaced moments
// ago (409: its answer would set a cookie that logs the user out of the new session) and
// (2) more new sessions per client address than NEW_SESSION_LIMIT per NEW_SESSION_WINDOW_SECONDS
// (429), counted in Redis where the session is made, whatever the request's cookie looks like.
import type { Request } from "express";
import type { RedisClient } from "./redis.ts";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import type { Config } from "./config.ts";
import { conflict, HttpError, StoreUnavailableError } from "./errors.ts";
import { toStoreError, withStore } from "./redis.ts";
import { keys, readsLegacyKeys, saveSession, signedSessionId } from "./session.ts";

export class NewSessionGate {
  readonly #redis: RedisClient | undefined;
  readonly #limiter: RateLimiterAbstract | undefined;
  readonly #cookieName: string;
  readonly #secrets: readonly string[];
  readonly #legacyKeys: boolean;

  constructor(config: Config, redis: RedisClient | undefined) {
    this.#redis = redis;
    this.#legacyKeys = readsLegacyKeys(config);
    this.#cookieName = config.session.cookieName;
    this.#secrets = config.session.secrets;
    const { limit, windowSeconds } = config.newSessions;
    if (limit === 0) return;
    // rate-limiter-flexible's RateLimiterRedis is one Lua INCR + EXPIRE per call (a fixed
    // window): atomic across replicas. With STORE=memory there is no Redis, and each replica
    // counts its own (so the limit is per replica there).
    const opts = { keyPrefix: keys.newSessionsPrefix, points: limit, duration: windowSeconds };
    // rejectIfRedisNotReady: a disconnected client fails at once instead of letting sessions through.
    this.#limiter = redis
      ? new RateLimiterRedis({ ...opts, storeClient: redis, rejectIfRedisNotReady: true })
      : new RateLimiterMemory(opts);
  }

  /** Both checks; throws the 409, the 429 or a 503 (store unavailable: never an open door). */
  async admit(req: Request): Promise<void> {
    await this.#refuseReplaced(req);
    await this.limit(req);
  }

  /** The per-address limit alone (for a session under another cookie). */
  async limit(req: Request): Promise<void> {
    if (!this.#limiter) return;
    try {
      await this.#limiter.consume(req.ip ?? "unknown");
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        const seconds = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
        throw new HttpError(
          429,
          "too_many_new_sessions",
          `Too many new sessions from this address; keep the session cookie you were given, or retry in ${seconds} s.`,
          { "Retry-After": String(seconds) },
        );
      }
      const mapped = toStoreError(err);
      throw mapped instanceof HttpError ? mapped : new StoreUnavailableError(err, "no");
    }
  }

  // The request's cookie names a session that is not stored (else express-session would have
  // loaded it); if a login replaced it just now, the client already holds the new cookie.
  async #refuseReplaced(req: Request): Promise<void> {
    if (!this.#redis) return;
    const sid = signedSessionId(req, this.#cookieName, this.#secrets);
    if (sid === undefined || sid === req.sessionID) return;
    const redis = this.#redis;
    // With one Redis, a replica still on the previous key layout may have marked it there (a rolling deploy).
    const marks = this.#legacyKeys ? [keys.replaced(sid), keys.legacy.replaced(sid)] : [keys.replaced(sid)];
    if ((await withStore(() => redis.exists(...marks))) > 0) {
      throw conflict(
        "session_replaced",
        "This request carried the cookie of a session that a login replaced; send it again with the cookie the " +
          "login set. A login whose answer was lost is replayed only when sent again with its Idempotency-Key.",
      );
    }
  }
}

/** Stores the request's new session (nothing else in it yet), once the gate admits it. */
export async function startSession(req: Request, gate: NewSessionGate): Promise<void> {
  await gate.admit(req);
  req.session.createdAt = Date.now();
  await saveSession(req);
}
