// Replaces the session id on login (OWASP: renew the id whenever privilege changes, so an id
// an attacker planted before login is worthless after it), carrying the count and the
// Idempotency-Key records over; a login sent with an Idempotency-Key can be replayed by the
// client that sent it (the old cookie and the key), when its answer was lost.
import { hash, timingSafeEqual } from "node:crypto";
import type { Request } from "express";
import type { SessionData } from "express-session";
import type { Config } from "./config.ts";
import { keyFingerprint, parseIdempotencyKey } from "./counter.ts";
import { badRequest, conflict, unprocessable } from "./errors.ts";
import { sigkillAfterIncrement, type AfterApplied } from "./fault.ts";
import type { NewSessionGate } from "./new-sessions.ts";
import {
  afterWrites,
  execAndWait,
  replicaWait,
  toStoreError,
  withStore,
  type Pipeline,
  type RedisClient,
  type ReplicaWait,
} from "./redis.ts";
import {
  destroySession,
  foldLegacyLua,
  generateInSlotOf,
  keys,
  markSaved,
  readsLegacyKeys,
  saveSession,
  SESSION_COUNT_LUA,
  sessionSerializer,
  signedSessionId,
  SessionStore,
} from "./session.ts";

/**
 * How long requests still carrying the replaced cookie are refused (409 session_replaced)
 * instead of being given a new session: long enough for every request the client sent
 * before the login's answer arrived (nginx gives up on a replica after 5 s, on a request after
 * trying each replica), short enough that a copy of the old cookie soon just starts afresh.
 */
export const REPLACED_TTL_SECONDS = 60;
// A keyed login's record lives as long as the marker: its key is a bearer secret (with the old
// cookie, it hands out the logged-in session), so it is kept only for the retries' horizon.

// One atomic step. Without an old session: write the new one. With one: if it is gone (a logout
// or an expiry won the race, or a login with the same cookie did), refuse (0) and hand back its
// login record, if any (a login with the same cookie and Idempotency-Key may be replayed from it);
// else write the new session with the old one's count as Redis holds it (never express-session's
// copy, which a concurrent increment may have outdated), move the idempotency hash (so a retry with
// a key used before the login still replays), delete the old session, mark its id replaced and,
// for a keyed login, leave the login record beside it. An increment racing the login either lands
// before the move (and is carried over) or finds the old session gone and is refused (409, nothing
// applied). Never both, never lost.
// Redis Cluster runs a script only when all its keys share one hash slot: the new id is chosen
// so that its keys land in the old session's slot (generateInSlotOf), which keeps this one step.
// KEYS: sess:new, idem:new[, sess:old, idem:old, replaced:old, login:old, the previous layout's
// separate counter of old[, with one Redis the layout before that's count:old, idem:old]] (folded
// into the count and the hash first, see session.ts foldLegacyLua);
// ARGV: the new session's text without a count, TTL, replaced TTL, new id (what replaced:old holds,
// so a racing logout can follow it), the login record without its count ("" for a login without a
// key; it lives as long as replaced:old). Returns {0, the old id's login record or nil, 1 when
// another login replaced it} or {1, the count the new session holds}.
const ROTATE_LUA = `${SESSION_COUNT_LUA}
local count = 0
if KEYS[3] then
  local old = redis.call('GET', KEYS[3])
  if not old then return {0, redis.call('GET', KEYS[6]), redis.call('EXISTS', KEYS[5])} end
  local _
  _, count = split(old)
  -- A write that may use memory first: Redis checks maxmemory only until a script has written.
  redis.call('SET', KEYS[5], ARGV[4], 'EX', ARGV[3])
  ${foldLegacyLua([7, 8], 4, 9).trim().replace(/\n/g, "\n  ")}
  if redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('RENAME', KEYS[4], KEYS[2])
    redis.call('EXPIRE', KEYS[2], ARGV[2])
  end
  redis.call('DEL', KEYS[3])
  if ARGV[5] ~= '' then
    redis.call('SET', KEYS[6], ARGV[5] .. ' ' .. string.format('%d', count), 'EX', ARGV[3])
  end
end
store(KEYS[1], join(ARGV[1], count), ARGV[2], false)
return {1, count}
`;

type RotateResult = [0, string | null, 0 | 1] | [1, number];
type RotateFn = (...args: (string | number)[]) => Promise<RotateResult>;

/** A login's Idempotency-Key, and the fingerprint of what it asked for (the name). */
export type LoginKey = { key: string; fingerprint: string };
/** What a login answers: the count the new session holds, and whether it is a replay of an earlier login. */
export type LoginOutcome = { count: number; replayed: boolean };

/** The shortest Idempotency-Key a login takes: the key is what keeps a planted cookie from replaying it. */
export const LOGIN_KEY_MIN_LENGTH = 16;

/**
 * A login's Idempotency-Key header (parseIdempotencyKey's rules), at least LOGIN_KEY_MIN_LENGTH
 * characters: whoever holds the old cookie and the key gets the logged-in session, so the key must
 * be one an attacker who planted the cookie cannot guess.
 */
export function parseLoginKey(header: string | undefined): string | undefined {
  const key = parseIdempotencyKey(header);
  if (key !== undefined && key.length < LOGIN_KEY_MIN_LENGTH)
    throw badRequest(
      "invalid_idempotency_key",
      `A login's Idempotency-Key must be at least ${LOGIN_KEY_MIN_LENGTH} random characters (a UUID works): ` +
        "with the old session cookie it is what replays the login.",
    );
  return key;
}

/** What a login's Idempotency-Key is bound to: the name it logged in. */
export function loginFingerprint(name: string): string {
  return keyFingerprint(`POST /api/login name=${name}`);
}

// The key is stored hashed: the record names the logged-in session, and only a request carrying
// both the old cookie (the record's address) and the key (what it is checked against) may have it.
const keyHash = (key: string): Buffer => hash("sha256", key, "buffer");

export class SessionRotator {
  readonly #redis: RedisClient | undefined;
  readonly #wait: ReplicaWait;
  readonly #ttlSeconds: number;
  readonly #gate: NewSessionGate;
  readonly #legacy: boolean;
  readonly #cookieName: string;
  readonly #secrets: readonly string[];
  readonly #afterApplied: AfterApplied | undefined;
  constructor(redis: RedisClient | undefined, config: Config, gate: NewSessionGate) {
    this.#redis = redis;
    this.#legacy = readsLegacyKeys(config);
    this.#ttlSeconds = config.session.idleTimeoutSeconds;
    this.#cookieName = config.session.cookieName;
    this.#secrets = config.session.secrets;
    this.#gate = gate;
    this.#afterApplied = sigkillAfterIncrement(config);
    this.#wait = replicaWait(config);
    redis?.defineCommand("sessionRotate", { lua: ROTATE_LUA });
  }

  /**
   * Gives the request a new session id holding `data`, with the old session's count and
   * keys, and deletes the old session. On failure the request keeps its old id and session,
   * so the client gets no cookie for a session that may not exist. With `key`, a login this
   * cookie and key already made (its answer lost) is replayed: the request gets that login's
   * session and count, and nothing changes in Redis.
   */
  async rotate(req: Request, data: Partial<SessionData>, key?: LoginKey): Promise<LoginOutcome> {
    const oldId = req.sessionID;
    const old = req.session;
    const existed = old.createdAt !== undefined;
    if (!existed) {
      // The cookie may name a session a login with this key already replaced: replay that login
      // before the gate, which would refuse the cookie (409 session_replaced) or start afresh.
      const replayed = key && (await this.#replayByCookie(req, key));
      if (replayed) return replayed;
      // A login without a session makes one: it passes the same gate as any other.
      await this.#gate.admit(req);
    }
    // express-session's own generate(): a new random id (in the old id's hash slot) and a fresh
    // cookie (Secure decided per request, as for any new session).
    generateInSlotOf(req, oldId);
    Object.assign(req.session, {
      createdAt: Date.now(),
      ...(old.count !== undefined ? { count: old.count } : {}),
      ...data,
    });
    try {
      if (this.#redis) {
        const id = req.sessionID;
        const k = [keys.session(id), keys.idempotency(id)];
        if (existed) {
          k.push(keys.session(oldId), keys.idempotency(oldId), keys.replaced(oldId), keys.login(oldId));
          k.push(keys.separateCounter(oldId));
          if (this.#legacy) k.push(keys.legacy.counter(oldId), keys.legacy.idempotency(oldId));
        }
        const json = sessionSerializer.stringify(req.session as SessionData, false);
        const record = key && existed ? `${keyHash(key.key).toString("base64url")} ${key.fingerprint} ${id}` : "";
        const args = [k.length, ...k, json, this.#ttlSeconds, REPLACED_TTL_SECONDS, id, record];
        // With REDIS_WAIT_REPLICAS, acknowledged only once replicas hold it, as an increment is: the
        // client's new cookie must not name a session a failover loses (the count left on the old id).
        const { result, replicated } = await withStore(() => this.#runRotate(args));
        if (result[0] === 0) {
          // A login with this cookie and key got there first (a retry overtaking its original).
          const replayed = key && (await this.#replay(req, result[1], key));
          if (replayed) return replayed;
          throw result[2]
            ? conflict(
                "session_replaced",
                "Another login replaced this session while this one was in flight; use the cookie that login set.",
              )
            : conflict("session_expired", "The session was logged out or expired while logging in; log in again.");
        }
        replicated();
        this.#afterApplied?.(key?.key);
        const value = result[1];
        if (value) req.session.count = value;
        else delete req.session.count;
        markSaved(req);
        return { count: value, replayed: false };
      }
      // STORE=memory: one process, no concurrent writer to race, so two steps are enough.
      if (existed)
        await new Promise<void>((resolve, reject) =>
          req.sessionStore.destroy(oldId, (err) => (err ? reject(err) : resolve())),
        );
      await saveSession(req);
      return { count: req.session.count ?? 0, replayed: false };
    } catch (err) {
      req.session = old;
      req.sessionID = oldId;
      throw err;
    }
  }

  /** The rotation's script; with REDIS_WAIT_REPLICAS pipelined with its WAIT (redis.ts execAndWait). */
  async #runRotate(args: (string | number)[]): Promise<{ result: RotateResult; replicated: () => void }> {
    const redis = this.#redis as RedisClient & { sessionRotate: RotateFn };
    const { results, replicated } = await execAndWait(redis, this.#wait, (p) => {
      (p as Pipeline & { sessionRotate(...a: (string | number)[]): Pipeline }).sessionRotate(...args);
    });
    return { result: results[0] as RotateResult, replicated };
  }

  /**
   * Ends the request's session (logout, DELETE /api/session, /session-destroy). Sent with the cookie
   * from before a login (another tab, or the login's answer late or lost), it also ends the session
   * that login made: whoever holds the old cookie can so log out the session a login made from it,
   * for the marker's 60 s, and never obtain it.
   */
  async destroy(req: Request): Promise<void> {
    const deleted = await this.#destroyReplaced(req);
    try {
      await destroySession(req);
    } catch (err) {
      throw deleted ? afterWrites(err) : err;
    }
  }

  /**
   * For the cookie from before a login: deletes that login's record, so no retry still queued in the
   * client hands the session back, then destroys through the store, which follows the replaced marker
   * one step, to the session that login made (not to one a later login made from it), so a late
   * answer's cookie names nothing either. Whether it sent anything to Redis.
   */
  async #destroyReplaced(req: Request): Promise<boolean> {
    const store = req.sessionStore;
    if (!this.#redis || !(store instanceof SessionStore) || req.session.createdAt !== undefined) return false;
    const sid = signedSessionId(req, this.#cookieName, this.#secrets);
    if (sid === undefined || sid === req.sessionID) return false;
    await new Promise<void>((resolve, reject) =>
      store.destroy(sid, (err) => (err ? reject(toStoreError(err)) : resolve()), 2),
    );
    return true;
  }

  /** The replay of the login whose record the request's (signed) cookie addresses, if the key matches. */
  async #replayByCookie(req: Request, key: LoginKey): Promise<LoginOutcome | undefined> {
    const redis = this.#redis;
    if (!redis) return undefined;
    const sid = signedSessionId(req, this.#cookieName, this.#secrets);
    if (sid === undefined || sid === req.sessionID) return undefined;
    const record = await withStore(() => redis.get(keys.login(sid)));
    return this.#replay(req, record, key);
  }

  /**
   * When `record` is a login made with `key`: the request gets that login's session (its cookie
   * is set as any new session's) and its answer. A record made with another key is no record: the
   * old cookie alone is not enough. The same key with another name is a 422.
   */
  async #replay(req: Request, record: string | null, key: LoginKey): Promise<LoginOutcome | undefined> {
    const m = record?.match(/^(\S+) (\S+) (\S+) (\d+)$/);
    if (!m) return undefined;
    const [, hash, fingerprint, id, count] = m as unknown as [string, string, string, string, string];
    const stored = Buffer.from(hash, "base64url");
    const sent = keyHash(key.key);
    if (stored.length !== sent.length || !timingSafeEqual(stored, sent)) return undefined;
    if (fingerprint !== key.fingerprint)
      throw unprocessable(
        "idempotency_key_reused",
        "This Idempotency-Key was already used to log in with another name; send a new key.",
      );
    // Through the store, as express-session loads a session: gone or past its absolute timeout is null.
    const sess = await new Promise<SessionData | null | undefined>((resolve, reject) =>
      req.sessionStore.get(id, (err, s) => (err ? reject(toStoreError(err)) : resolve(s))),
    );
    if (!sess) {
      const redis = this.#redis;
      if (redis && (await withStore(() => redis.exists(keys.replaced(id)))))
        throw conflict(
          "session_replaced",
          "The session this login made has since been replaced by another login; use the cookie that login set.",
        );
      throw conflict(
        "session_expired",
        "The session this login made has since been logged out or has expired; log in again.",
      );
    }
    // The rotation being replayed may have been made on another connection (another replica of the app)
    // and answered 503 for want of replicas: a write here (a touch of the session) puts this connection's
    // last write past it, so that WAIT covers it (it waits for that write on Redis 7.2+, for the last
    // command on 7.0), and the replay is acknowledged only when the rotation would have been.
    const redis = this.#redis;
    if (redis && this.#wait.replicas > 0) {
      const { replicated } = await withStore(() =>
        execAndWait(redis, this.#wait, (p) => {
          p.expire(keys.session(id), this.#ttlSeconds);
          p.expire(keys.idempotency(id), this.#ttlSeconds);
        }),
      );
      replicated();
    }
    req.sessionID = id;
    req.sessionStore.createSession(req, sess);
    // Nothing to write: the session is as stored, and express-session must not save it over a newer count.
    markSaved(req);
    return { count: Number(count), replayed: true };
  }
}
