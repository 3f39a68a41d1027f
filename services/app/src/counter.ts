// The two counters: "atomic" (default; one Lua script per increment, exactly-once with an
// Idempotency-Key) and "session" (the seed's req.session.count++, kept to show what it loses).
import { hash } from "node:crypto";
import type { Request } from "express";
import type { SessionData } from "express-session";
import type { RedisClient } from "./redis.ts";
import type { Config } from "./config.ts";
import { badRequest, conflict, HttpError, unprocessable } from "./errors.ts";
import { sigkillAfterIncrement, type AfterApplied } from "./fault.ts";
import { type NewSessionGate } from "./new-sessions.ts";
import {
  foldLegacyLua,
  keys,
  markSaved,
  markTouched,
  readsLegacyKeys,
  saveSession,
  SESSION_COUNT_LUA,
  sessionSerializer,
} from "./session.ts";
import { execAndWait, replicaWait, withStore, type Pipeline, type ReplicaWait } from "./redis.ts";

export type IncrementResult = { count: number; replayed: boolean };
export type IncrementRequest = { by: number; idempotencyKey: string | undefined };

export interface Counter {
  readonly mode: "atomic" | "session";
  increment(req: Request, inc: IncrementRequest): Promise<IncrementResult>;
  read(req: Request): Promise<number>;
  /**
   * The increment for a request that carries the signed id of a stored session, without
   * express-session loading it first: one Redis round trip instead of two. Resolves to
   * undefined, having changed nothing, when that session is not stored or is past its
   * absolute timeout: the caller then takes the full path. Only the atomic counter has it.
   */
  incrementStored?(sid: string, inc: IncrementRequest): Promise<IncrementResult | undefined>;
}

// Check the session, check the key, increment and remember the result, in one atomic step.
// A failure can lose the increment (nothing is applied) but can never apply it twice.
// Status codes: 0 incremented, 1 replayed from the key, 2 key reused with another request,
// 3 session gone, 4 session past its absolute timeout or unreadable here (the full path
// decides), 5 the session holds IDEMPOTENCY_MAX_KEYS live keys already (second value: ms until
// the oldest expires). Every answer but 3 and 4 extends the session and its keys, as
// express-session's touch would.
// The count lives inside the session's value, its last field (session.ts SESSION_COUNT_LUA): the
// script rewrites the value with the new count, so a session costs Redis one key. Every other
// write of the session keeps the count Redis holds (the login's script, the store's set).
// Keys live in one hash per session, made by its first key: field = key, value =
// "<fingerprint> <count> <expires ms>"; the hash lives and dies with the session, each entry also
// expires on its own (checked here, pruned when the cap is reached). ARGV[6] = "" means no key.
// KEYS: session, idempotency hash, the previous layout's separate counter (one hash slot: see
// session.ts `keys`); with one Redis also the layout before that's counter, idempotency hash and
// one-hash-per-key record: the counters and the hash are folded in (session.ts foldLegacyLua),
// the record only read.
// ARGV: ttl, by, idempotency ttl (s), fingerprint, oldest createdAt (ms) still within the absolute
// timeout or 0 when express-session has just loaded and checked the session, the key, the cap (0 = none),
// and a new session's stored text (without its count) to create it with when it is absent, or "".
const INCREMENT_LUA = `${SESSION_COUNT_LUA}
local sess = redis.call('GET', KEYS[1])
local fresh = false
if not sess then
  if ARGV[8] == '' then return {3, 0} end
  sess, fresh = ARGV[8], true
end
local oldest = tonumber(ARGV[5])
if oldest > 0 then
  local created = tonumber(string.match(sess, '^{"c":(%d+)[,}]'))
  if not created then
    local ok, data = pcall(cjson.decode, sess)
    created = ok and type(data) == 'table' and tonumber(data.c or data.createdAt)
  end
  if not created or created < oldest then return {4, 0} end
end
local body, count = split(sess)
local stored = count
${foldLegacyLua([3, 4], 2, 5)}local function touch()
  if count ~= stored or fresh then
    store(KEYS[1], join(body, count), ARGV[1], not fresh)
  else
    redis.call('EXPIRE', KEYS[1], ARGV[1])
  end
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
local idem = ARGV[6] ~= '' and KEYS[2]
local now = 0
if idem then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local fp, n
  local rec = redis.call('HGET', idem, ARGV[6])
  if rec then
    local f, c, e = string.match(rec, '^(%S+) (%d+) (%d+)$')
    if f and tonumber(e) > now then fp, n = f, c end
  end
  if not fp and KEYS[6] then
    local prev = redis.call('HMGET', KEYS[6], 'fp', 'count')
    if prev[1] then fp, n = prev[1], prev[2] end
  end
  if fp then
    touch()
    if fp ~= ARGV[4] then return {2, 0} end
    return {1, tonumber(n)}
  end
  local cap = tonumber(ARGV[7])
  if cap > 0 and redis.call('HLEN', idem) >= cap then
    local all = redis.call('HGETALL', idem)
    local live, first = 0, nil
    for i = 1, #all, 2 do
      local e = tonumber(string.match(all[i + 1], '(%d+)$'))
      if not e or e <= now then
        redis.call('HDEL', idem, all[i])
      else
        live = live + 1
        if not first or e < first then first = e end
      end
    end
    if live >= cap then
      touch()
      return {5, first - now}
    end
  end
end
count = count + tonumber(ARGV[2])
if idem then
  local rec = ARGV[4] .. ' ' .. string.format('%d', count) .. ' ' .. (now + tonumber(ARGV[3]) * 1000)
  redis.call('HSET', idem, ARGV[6], rec)
end
touch()
return {0, count}
`;

type IncrementFn = (numKeys: number, ...args: (string | number)[]) => Promise<[number, number]>;

export class AtomicCounter implements Counter {
  readonly mode = "atomic" as const;
  readonly #redis: RedisClient & { counterIncrement?: IncrementFn };
  readonly #gate: NewSessionGate;
  readonly #ttl: number;
  readonly #idemTtl: number;
  readonly #maxKeys: number;
  readonly #absoluteMs: number;
  readonly #afterApplied: AfterApplied | undefined;
  readonly #legacy: boolean;
  readonly #wait: ReplicaWait;
  constructor(redis: RedisClient, config: Config, gate: NewSessionGate) {
    this.#legacy = readsLegacyKeys(config);
    this.#redis = redis;
    this.#gate = gate;
    this.#ttl = config.session.idleTimeoutSeconds;
    this.#idemTtl = config.idempotencyTtlSeconds;
    this.#maxKeys = config.idempotencyMaxKeys;
    this.#absoluteMs = config.session.absoluteTimeoutSeconds * 1000;
    this.#afterApplied = sigkillAfterIncrement(config);
    this.#wait = replicaWait(config);
    // defineCommand sends EVALSHA and falls back to EVAL once after a Redis restart.
    redis.defineCommand("counterIncrement", { lua: INCREMENT_LUA });
  }

  async increment(req: Request, inc: IncrementRequest): Promise<IncrementResult> {
    // A new session (nothing stored yet) is created by the script itself, with its first count,
    // once the gate admits it: one script, so the session and its count cannot be split, and no
    // write of express-session's before it (with WAIT, the one WAIT covers both). Otherwise
    // express-session loaded the session and checked its absolute timeout just now.
    let result: [number, number];
    if (req.session.createdAt !== undefined) result = await this.#run(req.sessionID, inc, false);
    else {
      await this.#gate.admit(req);
      req.session.createdAt = Date.now();
      const text = sessionSerializer.stringify(req.session as SessionData, false);
      result = await this.#run(req.sessionID, inc, false, text);
      // Stored as it is now: express-session's save at the end of the request would only repeat it.
      if (result[0] !== 3) markSaved(req);
    }
    const [status, count] = result;
    // The script extended the TTLs; express-session's touch at the end would repeat it.
    if (status !== 3 && status !== 4) markTouched(req);
    // Gone since express-session loaded it.
    if (status === 3 || status === 4)
      throw conflict(
        "session_expired",
        "The session expired or was destroyed during the request; a new one starts on the next request.",
      );
    return answer(status, count);
  }

  async incrementStored(sid: string, inc: IncrementRequest): Promise<IncrementResult | undefined> {
    const [status, count] = await this.#run(sid, inc, true);
    if (status === 3 || status === 4) return undefined;
    return answer(status, count);
  }

  /** `create`: a new session's stored text, which the script stores when the session is absent. */
  async #run(sid: string, inc: IncrementRequest, checkAge: boolean, create = ""): Promise<[number, number]> {
    const k = [keys.session(sid), keys.idempotency(sid), keys.separateCounter(sid)];
    if (this.#legacy)
      k.push(
        keys.legacy.counter(sid),
        keys.legacy.idempotency(sid),
        keys.legacy.idempotencyKey(sid, inc.idempotencyKey ?? ""),
      );
    const oldest = checkAge ? Date.now() - this.#absoluteMs : 0;
    const args = [
      k.length,
      ...k,
      this.#ttl,
      inc.by,
      this.#idemTtl,
      fingerprint(inc.by),
      oldest,
      inc.idempotencyKey ?? "",
      this.#maxKeys,
      create,
    ];
    const [status, count] = await withStore(() =>
      this.#wait.replicas > 0
        ? this.#incrementAndWait(args)
        : (this.#redis.counterIncrement as IncrementFn).call(this.#redis, ...(args as [number, ...number[]])),
    );
    if (status === 0) this.#afterApplied?.(inc.idempotencyKey);
    return [status, count];
  }

  /**
   * The script, then WAIT for REDIS_WAIT_REPLICAS replicas, pipelined (redis.ts execAndWait). An
   * applied increment (or a replay, whose touch is a write too, so WAIT also covers the original)
   * that too few replicas acknowledged in time is answered as a store_timeout: it is on the primary
   * and may or may not survive a failover, so the client retries with its key.
   */
  async #incrementAndWait(args: (string | number)[]): Promise<[number, number]> {
    const { results, replicated } = await execAndWait(this.#redis, this.#wait, (p) => {
      (p as Pipeline & { counterIncrement(...a: (string | number)[]): Pipeline }).counterIncrement(...args);
    });
    const [status, count] = results[0] as [number, number];
    if (status === 0 || status === 1) replicated();
    return [status, count];
  }

  async read(req: Request): Promise<number> {
    if (req.session.createdAt === undefined) return 0;
    const sid = req.sessionID;
    // The count as stored now, with what older layouts still hold apart (not yet folded in by an
    // increment, or written by an older replica): one
    // MGET, one consistent view, as many round trips as before the count moved into the session.
    const k = [keys.session(sid), keys.separateCounter(sid)];
    if (this.#legacy) k.push(keys.legacy.counter(sid));
    const [sess, ...apart] = await withStore(() => this.#redis.mget(...k));
    const inSession = sess ? (sessionSerializer.parse(sess).count ?? 0) : 0;
    return apart.reduce((sum: number, v) => sum + (v === null ? 0 : Number(v)), inSession);
  }
}

/** The script's answer for a stored session: the result, or the client's error. */
function answer(status: number, value: number): IncrementResult {
  if (status === 2)
    throw unprocessable(
      "idempotency_key_reused",
      "This Idempotency-Key was already used with a different request; send a new key.",
    );
  if (status === 5) {
    // Seconds until the oldest record expires and frees a place (at least 1).
    const seconds = String(Math.max(1, Math.ceil(value / 1000)));
    throw new HttpError(
      429,
      "too_many_idempotency_keys",
      `This session holds as many live Idempotency-Keys as allowed; reuse a key only to retry, or retry in ` +
        `${seconds} s.`,
      { "Retry-After": seconds },
    );
  }
  return { count: value, replayed: status === 1 };
}

/** The seed's counter: read the session, add, write the whole session back. Loses updates under concurrency. */
export class SessionCounter implements Counter {
  readonly mode = "session" as const;
  readonly #gate: NewSessionGate;
  constructor(gate: NewSessionGate) {
    this.#gate = gate;
  }
  async increment(req: Request, inc: IncrementRequest): Promise<IncrementResult> {
    if (inc.idempotencyKey !== undefined) {
      throw badRequest(
        "idempotency_unsupported",
        "Idempotency-Key needs COUNTER=atomic; this replica runs the seed's COUNTER=session.",
      );
    }
    if (req.session.createdAt === undefined) {
      await this.#gate.admit(req);
      req.session.createdAt = Date.now();
    }
    req.session.count = (req.session.count ?? 0) + inc.by;
    // Acknowledge only what the store has accepted.
    await saveSession(req);
    // That SET renewed the session's TTL and this mode has no counter key, so the touch
    // express-session makes after an explicit save would be a round trip for nothing.
    markTouched(req);
    return { count: req.session.count, replayed: false };
  }
  async read(req: Request): Promise<number> {
    return req.session.count ?? 0;
  }
}

// What an Idempotency-Key is bound to: the keyed operation and its amount, hashed from the
// same text as before the stored-session path existed, so that stored keys still match.
/** What an Idempotency-Key is bound to, for any keyed operation: a hash of what it asked for. */
export function keyFingerprint(operation: string): string {
  return hash("sha256", operation, "base64url").slice(0, 22);
}
const fingerprints = new Map<number, string>();
function fingerprint(by: number): string {
  let fp = fingerprints.get(by);
  if (fp === undefined) {
    fp = keyFingerprint(`POST /api/counter by=${by}`);
    fingerprints.set(by, fp);
  }
  return fp;
}

const KEY_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Reads the Idempotency-Key header: a structured-field string ("...") as the IETF draft
 * defines it, or the bare token Stripe-style clients send. Anything else is a 400.
 */
export function parseIdempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const raw = header.length >= 2 && header.startsWith('"') && header.endsWith('"') ? header.slice(1, -1) : header;
  if (!KEY_RE.test(raw)) {
    throw badRequest(
      "invalid_idempotency_key",
      "Idempotency-Key must be 1-128 characters of letters, digits, '.', '_', ':' or '-' (a UUID works).",
    );
  }
  return raw;
}
