// Session middleware and the Redis store behind it: express-session + connect-redis 8.1
// (the last connect-redis that accepts an ioredis client), plus the absolute timeout.
import { createHash } from "node:crypto";
import type { Request, RequestHandler } from "express";
import session, { MemoryStore, type Store } from "express-session";
import { RedisStore } from "connect-redis";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Config } from "./config.ts";
import { toStoreError } from "./redis.ts";

declare module "express-session" {
  interface SessionData {
    /** ms since epoch; set on the first write, drives the absolute timeout. */
    createdAt: number;
    /** The seed's read-modify-write counter (COUNTER=session only). */
    count: number;
    user: { name: string; loginAt: number };
  }
}

export const keys = {
  session: (sid: string) => `sess:${sid}`,
  counter: (sid: string) => `count:${sid}`,
  idempotency: (sid: string, key: string) => `idem:${sid}:${key}`,
} as const;

/** A short, non-reversible label for a session id: safe to log and to return to clients. */
export function sessionLabel(sid: string): string {
  return createHash("sha256").update(sid).digest("base64url").slice(0, 12);
}

// The cookie express-session keeps in every session, as it serializes it when nothing about it
// is per session (no maxAge, plain HTTP). It never changes once loaded (no maxAge, rolling
// off), so it is left out of Redis and restored on read: 107 of a session's 134 bytes.
const DEFAULT_COOKIE_JSON = '{"originalMaxAge":null,"expires":null,"secure":false,"httpOnly":true,"path":"/","sameSite":"lax"}';

/** connect-redis's serializer, also used by the login's Lua step that writes a session itself. */
export const sessionSerializer = {
  stringify(sess: session.SessionData): string {
    const { cookie, ...rest } = sess;
    return JSON.stringify(JSON.stringify(cookie) === DEFAULT_COOKIE_JSON ? rest : sess);
  },
  parse(text: string): session.SessionData {
    const sess = JSON.parse(text) as session.SessionData;
    sess.cookie ??= JSON.parse(DEFAULT_COOKIE_JSON) as session.Cookie;
    return sess;
  },
};

/** Set on req.session by a handler that already refreshed the TTLs in the same Redis call. */
export const TOUCHED = Symbol("touched");

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- matches express-session's Store callback
type Cb = (err?: any, data?: any) => void;

/**
 * connect-redis with the counter key tied to the session's lifetime: a touch extends both
 * TTLs, a destroy deletes both, and connection failures surface as 503s, not 500s.
 */
export class SessionStore extends RedisStore {
  readonly redis: Redis;
  readonly ttlSeconds: number;
  constructor(redis: Redis, ttlSeconds: number) {
    super({ client: redis, prefix: "sess:", ttl: ttlSeconds, serializer: sessionSerializer });
    this.redis = redis;
    this.ttlSeconds = ttlSeconds;
  }
  override get(sid: string, cb: Cb = () => {}) {
    return super.get(sid, (err, data) => cb(toStoreError(err), data));
  }
  override set(sid: string, sess: session.SessionData, cb: Cb = () => {}) {
    return super.set(sid, sess, (err) => cb(toStoreError(err)));
  }
  override async touch(sid: string, sess: session.SessionData & { [TOUCHED]?: boolean }, cb: Cb = () => {}) {
    if (sess[TOUCHED]) return cb();
    try {
      await this.redis.multi().expire(keys.session(sid), this.ttlSeconds).expire(keys.counter(sid), this.ttlSeconds).exec();
      cb();
    } catch (err) {
      cb(toStoreError(err));
    }
  }
  override async destroy(sid: string, cb: Cb = () => {}) {
    try {
      await this.redis.del(keys.session(sid), keys.counter(sid));
      cb();
    } catch (err) {
      cb(toStoreError(err));
    }
  }
}

export function createStore(config: Config, redis: Redis | undefined): Store {
  if (config.store === "memory") return new MemoryStore();
  if (!redis) throw new Error("STORE=redis needs a Redis client");
  return new SessionStore(redis, config.session.idleTimeoutSeconds);
}

export function sessionMiddleware(config: Config, store: Store): RequestHandler {
  return session({
    store,
    name: config.session.cookieName,
    secret: [...config.session.secrets],
    resave: false,
    saveUninitialized: false,
    // The idle timeout lives in Redis (TTL), not in the cookie: the cookie is a browser
    // session cookie, so no Set-Cookie is needed on every response.
    rolling: false,
    proxy: undefined, // follow app's "trust proxy"
    cookie: { httpOnly: true, sameSite: "lax", secure: "auto", path: "/" },
  });
}

/**
 * Enforces the absolute timeout where sessions are read: a session older than the limit is
 * destroyed (with its count) and reported as missing, so express-session starts a new one
 * exactly as for an idle-expired session, and no handler ever sees the old one.
 */
export function withAbsoluteTimeout(store: Store, maxAgeSeconds: number, log?: Logger): Store {
  const get = store.get.bind(store);
  store.get = (sid, cb) => {
    get(sid, (err, sess) => {
      const created = sess?.createdAt;
      if (err || created === undefined || Date.now() - created <= maxAgeSeconds * 1000) return cb(err, sess);
      log?.info({ event: "session_absolute_timeout", session: sessionLabel(sid), ageSeconds: Math.round((Date.now() - created) / 1000) }, "session reached the absolute timeout; destroyed");
      store.destroy(sid, (destroyErr) => cb(destroyErr, null));
    });
  };
  return store;
}

export function saveSession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.save((err) => (err ? reject(toStoreError(err)) : resolve())));
}

export function destroySession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.destroy((err) => (err ? reject(toStoreError(err)) : resolve())));
}
