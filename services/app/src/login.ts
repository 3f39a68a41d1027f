// Replaces the session id on login (OWASP: renew the id whenever privilege changes, so an id
// an attacker planted before login is worthless after it), carrying the count and the
// Idempotency-Key records over.
import type { Request } from "express";
import type { SessionData } from "express-session";
import type { RedisClient } from "./redis.ts";
import { conflict } from "./errors.ts";
import type { NewSessionGate } from "./new-sessions.ts";
import { withStore } from "./redis.ts";
import {
  foldLegacyLua,
  generateInSlotOf,
  keys,
  markSaved,
  saveSession,
  SESSION_COUNT_LUA,
  sessionSerializer,
} from "./session.ts";

/**
 * How long requests still carrying the replaced cookie are refused (409 session_replaced)
 * instead of being given a new session: long enough for every request the client sent
 * before the login's answer arrived (nginx gives up on a replica after 5 s, on a request after
 * trying each replica), short enough that a copy of the old cookie soon just starts afresh.
 */
export const REPLACED_TTL_SECONDS = 60;

// One atomic step. Without an old session: write the new one. With one: refuse (0) if it is
// gone (a logout or an expiry won the race: no login on a destroyed session); else write the
// new session with the old one's count as Redis holds it (never express-session's copy, which a
// concurrent increment may have outdated), move the idempotency hash (so a retry with a key used
// before the login still replays), delete the old session and mark its id replaced. An increment
// racing the login either lands before the move (and is carried over) or finds the old session
// gone and is refused (409, nothing applied). Never both, never lost.
// Redis Cluster runs a script only when all its keys share one hash slot: the new id is chosen
// so that its keys land in the old session's slot (generateInSlotOf), which keeps this one step.
// KEYS: sess:new, idem:new[, sess:old, idem:old, replaced:old, the previous layout's separate
// counter of old[, with one Redis the layout before that's count:old, idem:old]] (folded into the
// count and the hash first, see session.ts foldLegacyLua);
// ARGV: the new session's text without a count, TTL, replaced TTL, new id (what replaced:old holds,
// so a racing logout can follow it). Returns {0} or {1, the count the new session holds}.
const ROTATE_LUA = `${SESSION_COUNT_LUA}
local count = 0
if KEYS[3] then
  local old = redis.call('GET', KEYS[3])
  if not old then return {0} end
  local _
  _, count = split(old)
  ${foldLegacyLua([6, 7], 4, 8).trim().replace(/\n/g, "\n  ")}
  if redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('RENAME', KEYS[4], KEYS[2])
    redis.call('EXPIRE', KEYS[2], ARGV[2])
  end
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[5], ARGV[4], 'EX', ARGV[3])
end
store(KEYS[1], join(ARGV[1], count), ARGV[2], false)
return {1, count}
`;

type RotateFn = (numKeys: number, ...args: (string | number)[]) => Promise<[0] | [1, number]>;

export class SessionRotator {
  readonly #redis: (RedisClient & { sessionRotate?: RotateFn }) | undefined;
  readonly #ttlSeconds: number;
  readonly #gate: NewSessionGate;
  readonly #legacy: boolean;
  constructor(redis: RedisClient | undefined, ttlSeconds: number, gate: NewSessionGate, legacyKeys: boolean) {
    this.#redis = redis;
    this.#legacy = legacyKeys;
    this.#ttlSeconds = ttlSeconds;
    this.#gate = gate;
    redis?.defineCommand("sessionRotate", { lua: ROTATE_LUA });
  }

  /**
   * Gives the request a new session id holding `data`, with the old session's count and
   * keys, and deletes the old session. On failure the request keeps its old id and session,
   * so the client gets no cookie for a session that may not exist.
   */
  async rotate(req: Request, data: Partial<SessionData>): Promise<void> {
    const oldId = req.sessionID;
    const old = req.session;
    const existed = old.createdAt !== undefined;
    // A login without a session makes one: it passes the same gate as any other.
    if (!existed) await this.#gate.admit(req);
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
          k.push(keys.session(oldId), keys.idempotency(oldId), keys.replaced(oldId), keys.separateCounter(oldId));
          if (this.#legacy) k.push(keys.legacy.counter(oldId), keys.legacy.idempotency(oldId));
        }
        const fn = this.#redis.sessionRotate as RotateFn;
        const json = sessionSerializer.stringify(req.session as SessionData, false);
        const [done, count] = await withStore(() =>
          fn.call(this.#redis, k.length, ...k, json, this.#ttlSeconds, REPLACED_TTL_SECONDS, id),
        );
        if (done === 0)
          throw conflict("session_expired", "The session was logged out or expired while logging in; log in again.");
        if (count) req.session.count = count;
        else delete req.session.count;
        markSaved(req);
      } else {
        // STORE=memory: one process, no concurrent writer to race, so two steps are enough.
        if (existed)
          await new Promise<void>((resolve, reject) =>
            req.sessionStore.destroy(oldId, (err) => (err ? reject(err) : resolve())),
          );
        await saveSession(req);
      }
    } catch (err) {
      req.session = old;
      req.sessionID = oldId;
      throw err;
    }
  }
}
