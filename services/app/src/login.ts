// Replaces the session id on login (OWASP: renew the id whenever privilege changes, so an id
// an attacker planted before login is worthless after it), carrying the count over.
import type { Request } from "express";
import type { SessionData } from "express-session";
import type { Redis } from "ioredis";
import { withStore } from "./redis.ts";
import { keys, saveSession, sessionSerializer } from "./session.ts";

// Writes the new session, moves the count and deletes the old session in one step, so an
// increment racing the login either lands before the move (and is carried over) or finds
// the old session gone and is refused (409 session_expired, nothing applied). Never both,
// never lost. KEYS: sess:new, count:new[, sess:old, count:old]; ARGV: session JSON, TTL.
const ROTATE_LUA = `
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if KEYS[3] then
  local n = redis.call('GET', KEYS[4])
  redis.call('DEL', KEYS[3], KEYS[4])
  if n then redis.call('SET', KEYS[2], n, 'EX', ARGV[2]) end
end
return 1
`;

type RotateFn = (numKeys: number, ...args: (string | number)[]) => Promise<number>;

export class SessionRotator {
  readonly #redis: (Redis & { sessionRotate?: RotateFn }) | undefined;
  readonly #ttlSeconds: number;
  constructor(redis: Redis | undefined, ttlSeconds: number) {
    this.#redis = redis;
    this.#ttlSeconds = ttlSeconds;
    redis?.defineCommand("sessionRotate", { lua: ROTATE_LUA });
  }

  /**
   * Gives the request a new session id holding `data`, with the old session's count, and
   * deletes the old session. On failure the request keeps its old id and session, so the
   * client gets no cookie for a session that may not exist.
   */
  async rotate(req: Request, data: Partial<SessionData>): Promise<void> {
    const oldId = req.sessionID;
    const old = req.session;
    const existed = old.createdAt !== undefined;
    // express-session's own generate(): a new random id and a fresh cookie (Secure decided
    // per request, as for any new session).
    req.sessionStore.generate(req);
    Object.assign(req.session, { createdAt: Date.now(), ...(old.count !== undefined ? { count: old.count } : {}), ...data });
    try {
      if (this.#redis) {
        const k = [keys.session(req.sessionID), keys.counter(req.sessionID)];
        if (existed) k.push(keys.session(oldId), keys.counter(oldId));
        const fn = this.#redis.sessionRotate as RotateFn;
        await withStore(() => fn.call(this.#redis, k.length, ...k, sessionSerializer.stringify(req.session as SessionData), this.#ttlSeconds));
      } else {
        // STORE=memory: one process, no concurrent writer to race, so two steps are enough.
        if (existed) await new Promise<void>((resolve, reject) => req.sessionStore.destroy(oldId, (err) => (err ? reject(err) : resolve())));
        await saveSession(req);
      }
    } catch (err) {
      req.session = old;
      req.sessionID = oldId;
      throw err;
    }
    // express-session cannot tell that the new session was saved here, so it writes the
    // same JSON once more before answering: one redundant SET per login, kept for simplicity.
  }
}
