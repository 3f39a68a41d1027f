// Session middleware and its store: express-session + connect-redis 8.1 (the last connect-redis
// that accepts an ioredis client), and SessionStore, the one decorator in front of it that
// times every operation, maps store failures to 503s and enforces the absolute timeout.
import { hash } from "node:crypto";
import type { Request, RequestHandler } from "express";
import session, { MemoryStore, Store } from "express-session";
import { RedisStore } from "connect-redis";
import type { Logger } from "pino";
import type { Config } from "./config.ts";
import { StoreUnavailableError } from "./errors.ts";
import { readCookie, unsignSessionId } from "./middleware/session-guard.ts";
import { afterWrites, execAndWait, replicaWait, toStoreError, type RedisClient, type ReplicaWait } from "./redis.ts";
import { newSessionId, sessionIdInSlotOf } from "./session-id.ts";

declare module "express-session" {
  interface SessionData {
    /** ms since epoch; set on the first write, drives the absolute timeout. */
    createdAt: number;
    /**
     * The count. COUNTER=session: the seed's read-modify-write. COUNTER=atomic: the counter's script
     * keeps it inside the stored session; what express-session holds is as of its read, never written back.
     */
    count: number;
    user: { name: string; loginAt: number };
  }
}

/**
 * Every Redis key the app writes; the Redis ACL (infra/redis/users.acl) must allow these patterns.
 * connect-redis writes the session itself at sess:<id>, and the count lives inside it (the last field,
 * `"n"`: see sessionSerializer), so a visitor who never sends an Idempotency-Key costs one key and one
 * expiry entry. Every key that lives with a session carries the hash tag {sess:<id>}, so that in Redis
 * Cluster all of one session's keys share its hash slot (one Lua script touches several of them) while
 * sessions spread over every slot.
 */
export const keys = {
  session: (sid: string) => `sess:${sid}`,
  /** One hash per session, made by its first Idempotency-Key: field = key, value = "<fp> <count> <expires ms>". */
  idempotency: (sid: string) => `{sess:${sid}}:idem`,
  /** Set by a login for a short while: requests still carrying the replaced cookie are refused. */
  replaced: (sid: string) => `{sess:${sid}}:replaced`,
  /**
   * Left by a login sent with an Idempotency-Key, beside the id it replaced, for as long as an
   * increment's key lives: "<sha256 of the key> <fingerprint of the name> <new id> <count>", so a
   * retry carrying the old cookie and the same key gets the same answer (login.ts).
   */
  login: (sid: string) => `{sess:${sid}}:login`,
  /** rate-limiter-flexible's counter of new sessions per client address (its keyPrefix + ":"). */
  newSessionsPrefix: "newsess",
  /**
   * The count in a key of its own, as the layout before stored it (in every topology: it shares the
   * session's slot). Still read, and added into the session's count by its next increment or login.
   */
  separateCounter: (sid: string) => `{sess:${sid}}:count`,
  /**
   * The layout before hash tags, still read (and moved to the new keys on a session's next
   * increment or login) with one Redis, never with Redis Cluster, where they would cross slots.
   * Drop them once SESSION_ABSOLUTE_TIMEOUT_SECONDS has passed since the deploy: no session
   * written before it is left by then.
   */
  legacy: {
    counter: (sid: string) => `count:${sid}`,
    idempotency: (sid: string) => `idem:${sid}`,
    /** The layout before the per-session hash: one hash {fp, count} per key. */
    idempotencyKey: (sid: string, key: string) => `idem:${sid}:${key}`,
    replaced: (sid: string) => `replaced:${sid}`,
  },
} as const;

/**
 * Lua that folds the older layouts into the current one, when the script got their keys: each
 * separate counter (KEYS[i] for i in `counters`; absent keys skipped) is added to the local `count`
 * and deleted, and the hash-tag-less idempotency hash (KEYS[oldIdem], one Redis only) is merged into
 * KEYS[idem]. Adding rather than overwriting also folds in what an older replica wrote meanwhile;
 * an idempotency record already under the new key wins. (An upgrade from the release before the
 * count moved into the session is not rolling-safe: see docs/architecture.md, migration.) Adds to the
 * script's local `count`.
 */
export function foldLegacyLua(counters: number[], idem: number, oldIdem: number): string {
  return `
local counters = {}
for _, i in ipairs({${counters.join(", ")}}) do counters[#counters + 1] = KEYS[i] end
local older = {unpack(counters)}
if KEYS[${oldIdem}] then older[#older + 1] = KEYS[${oldIdem}] end
if redis.call('EXISTS', unpack(older)) > 0 then
  for _, k in ipairs(counters) do
    local old = redis.call('GET', k)
    if old then
      count = count + tonumber(old)
      redis.call('DEL', k)
    end
  end
  if KEYS[${oldIdem}] and redis.call('EXISTS', KEYS[${oldIdem}]) == 1 then
    local recs = redis.call('HGETALL', KEYS[${oldIdem}])
    for i = 1, #recs, 2 do redis.call('HSETNX', KEYS[${idem}], recs[i], recs[i + 1]) end
    local ttl = redis.call('TTL', KEYS[${oldIdem}])
    if ttl > 0 then redis.call('EXPIRE', KEYS[${idem}], ttl) end
    redis.call('DEL', KEYS[${oldIdem}])
  end
end
`;
}

/**
 * Lua functions over a session's stored text as sessionSerializer writes it, where the count is the
 * last field, `,"n":<int>}`: split(text) gives the session without its count and the count (0 when it
 * has none), join(body, n) puts a count back. A string edit, not cjson: no decoding on the hot path,
 * and nothing else in the text changes. A session stored with its count under "count" (the seed's
 * counter before this layout) is decoded with cjson once, and stored in the new form by the write.
 * store(key, value, ttl, exists) writes a session's value in an allocation of its own size. Redis 7's
 * Lua keeps the argument objects of its last calls and reuses one no shorter than the next argument in
 * the same position, so the value would be stored in the allocation of a longer argument an earlier
 * call made (an Idempotency-Key, a key name): 16 B more per session. A SET NX (key present) or XX
 * (absent) writes nothing, and parsing its small integer in that position frees the reused object.
 */
export const SESSION_COUNT_LUA = `
local function split(s)
  local body, n = string.match(s, '^(.+),"n":(%-?%d+)}$')
  if body then return body .. '}', tonumber(n) end
  n = string.match(s, '^{"n":(%-?%d+)}$')
  if n then return '{}', tonumber(n) end
  if not string.find(s, '"count":', 1, true) and not string.find(s, '"n":', 1, true) then return s, 0 end
  local ok, data = pcall(cjson.decode, s)
  if not ok or type(data) ~= 'table' then return s, 0 end
  n = 0
  if type(data.count) == 'number' then n, data.count = n + data.count, nil end
  if type(data.n) == 'number' then n, data.n = n + data.n, nil end
  if n == 0 then return s, 0 end
  return cjson.encode(data), n
end
local function join(body, n)
  if n == 0 then return body end
  if body == '{}' then return '{"n":' .. string.format('%d', n) .. '}' end
  return string.sub(body, 1, -2) .. ',"n":' .. string.format('%d', n) .. '}'
end
local function store(key, value, ttl, exists)
  redis.call('SET', key, '0', exists and 'NX' or 'XX')
  redis.call('SET', key, value, 'EX', ttl)
end
`;

/** Whether the previous key layout may still hold data: one Redis, not Redis Cluster. */
export const readsLegacyKeys = (config: Config): boolean => config.redis.clusterNodes.length === 0;

/** A short, non-reversible label for a session id: safe to log and to return to clients. */
export function sessionLabel(sid: string): string {
  return hash("sha256", sid, "base64url").slice(0, 12);
}

/** The session id of the request's session cookie when one of `secrets` signed it (as express-session reads it). */
export function signedSessionId(req: Request, cookieName: string, secrets: readonly string[]): string | undefined {
  const raw = readCookie(req.headers.cookie, cookieName);
  return raw === undefined ? undefined : unsignSessionId(raw, secrets);
}

// The cookie express-session keeps in every session, as it serializes it when nothing about it
// is per session (no maxAge, plain HTTP). It never changes once loaded (no maxAge, rolling
// off), so it is left out of Redis and restored on read: 107 of a session's 134 bytes.
const DEFAULT_COOKIE_JSON =
  '{"originalMaxAge":null,"expires":null,"secure":false,"httpOnly":true,"path":"/","sameSite":"lax"}';

/**
 * connect-redis's serializer, also used by the Lua steps that write a session themselves. Compact,
 * because a session's value is most of what Redis spends on it beyond the key: the default cookie
 * is left out, createdAt is stored as "c", and the count as "n", always last, where the increment
 * script edits it in place (SESSION_COUNT_LUA). `{"c":1764505473000,"n":5}` is 25 bytes: Redis keeps a
 * value of up to 44 bytes in one allocation with its object (embstr), 48 bytes up to a count of 9999.
 * What other layouts wrote ({"createdAt":..,"count":..}, with or without the cookie) reads as before.
 */
export const sessionSerializer = {
  stringify(sess: session.SessionData, withCount = true): string {
    const { cookie, createdAt, count, ...rest } = sess;
    return JSON.stringify({
      ...(JSON.stringify(cookie) === DEFAULT_COOKIE_JSON ? {} : { cookie }),
      ...(createdAt === undefined ? {} : { c: createdAt }),
      ...rest,
      ...(withCount && count !== undefined ? { n: count } : {}),
    });
  },
  parse(text: string): session.SessionData {
    const { c, n, ...sess } = JSON.parse(text) as session.SessionData & { c?: number; n?: number };
    if (c !== undefined) sess.createdAt = c;
    if (n !== undefined) sess.count = n;
    sess.cookie ??= JSON.parse(DEFAULT_COOKIE_JSON) as session.Cookie;
    return sess;
  },
};

// The store's write when the counter script owns the count (COUNTER=atomic): the session as
// express-session holds it, with the count Redis holds now, in one atomic step. express-session's
// copy of the count is as old as its read at the start of the request; writing it back would undo
// every increment another request made since. A session no longer stored gets no count, as the
// separate counter key it replaces would have been gone too. KEYS: session; ARGV: session text
// without its count, TTL (s).
const SET_KEEPING_COUNT_LUA = `${SESSION_COUNT_LUA}
local cur = redis.call('GET', KEYS[1])
local n = 0
if cur then
  local _
  _, n = split(cur)
end
store(KEYS[1], join(ARGV[1], n), ARGV[2], cur)
return 1
`;
type SetKeepingCountFn = (key: string, json: string, ttl: number) => Promise<number>;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- matches express-session's Store callback
type Cb = (err?: any, data?: any) => void;

/**
 * connect-redis with the keys that live and die with a session: a touch extends the session and
 * its idempotency records; a destroy deletes both (and what older layouts kept beside them), and with
 * `wait` (REDIS_WAIT_REPLICAS) is acknowledged only once replicas hold it. With `scriptOwnsCount`
 * (COUNTER=atomic) a write keeps the count Redis holds (SET_KEEPING_COUNT_LUA).
 */
export class CounterTiedRedisStore extends RedisStore {
  readonly #redis: RedisClient & { sessionSetKeepingCount?: SetKeepingCountFn };
  readonly #ttlSeconds: number;
  readonly #legacy: boolean;
  readonly #scriptOwnsCount: boolean;
  readonly #wait: ReplicaWait;
  constructor(
    redis: RedisClient,
    ttlSeconds: number,
    legacyKeys: boolean,
    opts: { scriptOwnsCount?: boolean; wait?: ReplicaWait } = {},
  ) {
    super({ client: redis, prefix: "sess:", ttl: ttlSeconds, serializer: sessionSerializer });
    this.#redis = redis;
    this.#ttlSeconds = ttlSeconds;
    this.#legacy = legacyKeys;
    this.#scriptOwnsCount = opts.scriptOwnsCount ?? false;
    this.#wait = opts.wait ?? { replicas: 0, timeoutMs: 0 };
    if (this.#scriptOwnsCount)
      redis.defineCommand("sessionSetKeepingCount", { numberOfKeys: 1, lua: SET_KEEPING_COUNT_LUA });
  }
  /** The keys that live and die with the session: one hash slot (see `keys`), plus the older layouts'. */
  #tied(sid: string): string[] {
    const k = [keys.session(sid), keys.idempotency(sid), keys.separateCounter(sid)];
    if (this.#legacy) k.push(keys.legacy.counter(sid), keys.legacy.idempotency(sid));
    return k;
  }
  override async set(sid: string, sess: session.SessionData, cb: Cb = () => {}) {
    if (!this.#scriptOwnsCount) {
      await super.set(sid, sess, cb);
      return;
    }
    // connect-redis's TTL rule: the cookie's expiry when it has one, else the store's TTL.
    const expires = sess.cookie?.expires;
    const ttl = expires ? Math.ceil((new Date(expires).getTime() - Date.now()) / 1000) : this.#ttlSeconds;
    if (ttl <= 0) return this.destroy(sid, cb);
    try {
      const fn = this.#redis.sessionSetKeepingCount as SetKeepingCountFn;
      await fn.call(this.#redis, keys.session(sid), sessionSerializer.stringify(sess, false), ttl);
    } catch (err) {
      return cb(err);
    }
    cb();
  }
  // A pipeline, not MULTI: the EXPIREs need no atomicity, and a full Redis refuses every command
  // queued in a MULTI while it still runs a plain EXPIRE (sessions being read would expire).
  override async touch(sid: string, _sess: session.SessionData, cb: Cb = () => {}) {
    try {
      const p = this.#redis.pipeline();
      for (const k of this.#tied(sid)) p.expire(k, this.#ttlSeconds);
      const failed = (await p.exec())?.find(([err]) => err)?.[0];
      if (failed) throw failed;
    } catch (err) {
      return cb(err);
    }
    cb();
  }
  /**
   * Deletes the session's keys and reads its replaced marker. With REDIS_WAIT_REPLICAS both are
   * pipelined with WAIT (the WAIT after the GET covers the DEL before it); `replicated` throws a 503
   * store_timeout when too few replicas acknowledged: a failover must not bring back a logged-out session.
   */
  async #deleteTied(id: string, first: boolean): Promise<{ next: string | null; replicated: () => void }> {
    const tied = this.#tied(id);
    const { results, replicated } = await execAndWait(
      this.#redis,
      this.#wait,
      (p) => {
        // The first step always writes: the login record of a login from this id (a retry of it must
        // not hand back the session being logged out) becomes a 1 s empty one. So WAIT, which on Redis
        // 7.2+ waits for this connection's last write, covers deletions another connection made for
        // a first try answered 503, even when this retry finds nothing left to delete.
        if (first && this.#wait.replicas > 0) p.set(keys.login(id), "", "EX", 1);
        else if (first) p.del(keys.login(id));
        p.del(...tied);
        p.get(keys.replaced(id));
      },
      1,
    );
    return { next: results.at(-1) as string | null, replicated };
  }
  /** `steps`: how many sessions along the replaced markers it may delete, this one included. */
  override async destroy(sid: string, cb: Cb = () => {}, steps = 3) {
    try {
      // A login that replaced this session while the destroying request ran (a logout racing
      // it) left the new id in the replaced marker: destroy that one too, as if the logout came
      // second. Two steps suffice: a login cannot replace a session once it is deleted. A marker
      // from before it held an id holds "1", which names no session.
      // Every step is taken before a short WAIT is reported: the retry a 503 asks for no longer finds
      // this session, so it could not follow the marker again.
      const taken: (() => void)[] = [];
      let id: string | null = sid;
      for (let hops = 0; id !== null && hops < steps; hops++) {
        try {
          const { next, replicated } = await this.#deleteTied(id, hops === 0);
          taken.push(replicated);
          id = next === "1" ? null : next;
        } catch (err) {
          // A refusal after a step that deleted: not "nothing was changed".
          throw hops > 0 ? afterWrites(err) : err;
        }
      }
      for (const replicated of taken) replicated();
    } catch (err) {
      return cb(err);
    }
    cb();
  }
}

export type StoreOp = "get" | "set" | "touch" | "destroy";
/** Told of every store operation once it completes: its duration and its (mapped) error. */
export type StoreObserver = (op: StoreOp, seconds: number, err: unknown) => void;

/**
 * The store express-session talks to: the inner store (Redis or memory) behind one explicit
 * decorator that times each operation (metrics), maps connection failures to 503s, enforces
 * the absolute timeout where sessions are read, and skips the touch a handler made needless.
 */
export class SessionStore extends Store {
  readonly #inner: Store;
  readonly #maxAgeMs: number;
  readonly #observe: StoreObserver | undefined;
  readonly #log: Logger | undefined;
  // Sessions (req.session objects) whose TTLs a handler already refreshed in this request.
  // A WeakSet: nothing to clean up when express-session never calls touch (errors, saves).
  readonly #touched = new WeakSet<object>();
  // Sessions a handler already wrote itself (the login's rotation): express-session's save at the
  // end of the request would only repeat it, and would bring back one a racing logout destroyed.
  readonly #saved = new WeakSet<object>();

  constructor(inner: Store, opts: { absoluteTimeoutSeconds: number; observe?: StoreObserver; log?: Logger }) {
    super();
    this.#inner = inner;
    this.#maxAgeMs = opts.absoluteTimeoutSeconds * 1000;
    this.#observe = opts.observe;
    this.#log = opts.log;
  }

  /** The request's session TTLs were refreshed by the same Redis call that served it: no touch needed. */
  markTouched(sess: object): void {
    this.#touched.add(sess);
  }

  /** The request's session was written by the handler itself: express-session need not save it. */
  markSaved(sess: object): void {
    this.#saved.add(sess);
  }

  #run(op: StoreOp, call: (done: Cb) => unknown, cb: Cb): void {
    const start = performance.now();
    call((err, data) => {
      const mapped = err ? toStoreError(err) : undefined;
      this.#observe?.(op, (performance.now() - start) / 1000, mapped);
      cb(mapped, data);
    });
  }

  override get(sid: string, cb: Cb = () => {}): void {
    this.#run(
      "get",
      (done) => this.#inner.get(sid, done),
      (err, sess: session.SessionData | null | undefined) => {
        const created = sess?.createdAt;
        if (err || created === undefined || Date.now() - created <= this.#maxAgeMs) return cb(err, sess);
        // Destroyed with its count and reported missing: express-session starts a new session
        // exactly as for an idle-expired one, and no handler ever sees the old one.
        this.#log?.info(
          {
            event: "session_absolute_timeout",
            session: sessionLabel(sid),
            ageSeconds: Math.round((Date.now() - created) / 1000),
          },
          "session reached the absolute timeout; destroyed",
        );
        this.destroy(sid, (destroyErr) => cb(destroyErr, null));
      },
    );
  }

  override set(sid: string, sess: session.SessionData, cb: Cb = () => {}): void {
    if (this.#saved.has(sess)) return cb();
    this.#run("set", (done) => this.#inner.set(sid, sess, done), cb);
  }

  /**
   * A failed touch is logged and counted, never reported: express-session touches once the answer is
   * decided, and after an error answer it would pass the error to a `next` past the app's error
   * handler (Express's default one: stderr and a dropped connection). Only the TTLs went unrefreshed;
   * the next request refreshes them.
   */
  override touch(sid: string, sess: session.SessionData, cb: Cb = () => {}): void {
    if (this.#touched.has(sess)) return cb();
    this.#run(
      "touch",
      (done) => (this.#inner.touch ? this.#inner.touch(sid, sess, done) : done()),
      (err) => {
        if (err) {
          const cause = (err instanceof StoreUnavailableError ? err.cause : err) as Error | undefined;
          this.#log?.warn(
            { event: "session_touch_failed", session: sessionLabel(sid), err: cause?.message },
            "could not refresh the session's TTLs",
          );
        }
        cb();
      },
    );
  }

  /** `steps` as CounterTiedRedisStore.destroy takes it (other stores delete the one session). */
  override destroy(sid: string, cb: Cb = () => {}, steps?: number): void {
    this.#run("destroy", (done) => (this.#inner as CounterTiedRedisStore).destroy(sid, done, steps), cb);
  }
}

export function createStore(
  config: Config,
  redis: RedisClient | undefined,
  opts: { observe?: StoreObserver; log?: Logger } = {},
): SessionStore {
  let inner: Store;
  if (config.store === "memory") inner = new MemoryStore();
  else if (!redis) throw new Error("STORE=redis needs a Redis client");
  else
    inner = new CounterTiedRedisStore(redis, config.session.idleTimeoutSeconds, readsLegacyKeys(config), {
      scriptOwnsCount: config.counter === "atomic",
      wait: replicaWait(config),
    });
  return new SessionStore(inner, { absoluteTimeoutSeconds: config.session.absoluteTimeoutSeconds, ...opts });
}

/** Tells the store that this request's handler already wrote the session as it is now. */
export function markSaved(req: Request): void {
  if (req.sessionStore instanceof SessionStore) req.sessionStore.markSaved(req.session);
}

/** Tells the store that this request's handler already refreshed the session's TTLs. */
export function markTouched(req: Request): void {
  if (req.sessionStore instanceof SessionStore) req.sessionStore.markTouched(req.session);
}

// The requests a login is giving a new session id, and the id it replaces (see generateInSlotOf).
const rotatingFrom = new WeakMap<Request, string>();

/**
 * express-session's generate() for a login: a new id and a fresh cookie, as for any new session,
 * with the id chosen so that its keys share the old session's Redis Cluster hash slot.
 */
export function generateInSlotOf(req: Request, oldId: string): void {
  rotatingFrom.set(req, oldId);
  try {
    req.sessionStore.generate(req);
  } finally {
    rotatingFrom.delete(req);
  }
}

export function sessionMiddleware(config: Config, store: Store): RequestHandler {
  return session({
    store,
    genid: (req) => {
      const from = rotatingFrom.get(req);
      return from === undefined ? newSessionId() : sessionIdInSlotOf(from, keys.session(""));
    },
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

export function saveSession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.save((err) => (err ? reject(toStoreError(err)) : resolve())));
}

export function destroySession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.destroy((err) => (err ? reject(toStoreError(err)) : resolve())));
}
