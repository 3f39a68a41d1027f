// Runs right after express-session: logs (at warn, with a hash, never the id)
// each session cookie that was not honoured.
import type { Request, RequestHandler } from "express";
import { parse as parseCookies } from "cookie";
import { unsign } from "cookie-signature";
import { LRUCache } from "lru-cache";
import { sessionLabel } from "../session.ts";

// The `cookie` and `cookie-signature` packages, at the versions express-session depends on
// (package.json pins the same ranges): the fast path and express-session must read one Cookie
// header as the same session, whitespace, duplicates, quotes and percent-encoding included.

export type CookieRejection = "unsigned" | "bad_signature" | "unknown";

/** The value of cookie `name` in a Cookie header, exactly as express-session reads it (first one wins). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  const value = parseCookies(header)[name];
  // express-session ignores an empty value (`if (raw)`), so nothing here may honour one either.
  return value ? value : undefined;
}

/** The session id in a signed session cookie value ("s:<id>.<sig>") when one of `secrets` signed it. */
export function unsignSessionId(raw: string, secrets: readonly string[]): string | undefined {
  if (!raw.startsWith("s:")) return undefined;
  for (const secret of secrets) {
    const id = unsign(raw.slice(2), secret);
    if (id !== false) return id;
  }
  return undefined;
}

/** A session cookie whose signature checked out: its id, and the label logs and answers show for it. */
export type VerifiedSession = { sid: string; label: string };

// Bounds of VerifiedCookies: entries (each ~300 B with a typical header), and the longest
// Cookie header worth keeping (a longer one is checked every time, and can't fill memory).
const VERIFIED_MAX = 10_000;
const VERIFIED_HEADER_MAX = 512;

/**
 * The session of a Cookie header, remembered once its signature checked out: a returning visitor
 * sends the same header on every request, and the HMAC and the cookie parse were a tenth of the
 * one-round-trip path's CPU. Only valid headers are kept, keyed by the whole header, so a hit
 * needs a byte-identical copy of one that verified; a tampered or unsigned cookie is checked (and
 * refused) every time. Secrets are fixed for the process's life (config), so a hit stays valid.
 */
export class VerifiedCookies {
  readonly #cookieName: string;
  readonly #secrets: readonly string[];
  readonly #cache = new LRUCache<string, VerifiedSession>({ max: VERIFIED_MAX });
  constructor(cookieName: string, secrets: readonly string[]) {
    this.#cookieName = cookieName;
    this.#secrets = secrets;
  }
  /** The session of a Cookie header when one of the secrets signed its session cookie. */
  verify(header: string | undefined): VerifiedSession | undefined {
    if (!header) return undefined;
    const hit = this.#cache.get(header);
    if (hit) return hit;
    const raw = readCookie(header, this.#cookieName);
    const sid = raw === undefined ? undefined : unsignSessionId(raw, this.#secrets);
    if (sid === undefined) return undefined;
    const verified = { sid, label: sessionLabel(sid) };
    if (header.length <= VERIFIED_HEADER_MAX) this.#cache.set(header, verified);
    return verified;
  }
}

/** The id part of "s:<id>.<sig>", for a log label only; it proves nothing. */
const claimedId = (raw: string) => (raw.lastIndexOf(".") > 2 ? raw.slice(2, raw.lastIndexOf(".")) : raw.slice(2));

/**
 * Why the session cookie of `req` was not honoured, or undefined when it was (or there was
 * none). express-session gives a new id both for a bad signature and for an id the store
 * does not have, so the two are told apart by checking the signature here.
 */
export function cookieRejection(
  req: Request,
  cookieName: string,
  secrets: readonly string[],
): { reason: CookieRejection; label: string } | undefined {
  const raw = readCookie(req.headers.cookie, cookieName);
  if (raw === undefined) return undefined;
  if (!raw.startsWith("s:")) return { reason: "unsigned", label: sessionLabel(raw) };
  const id = unsignSessionId(raw, secrets);
  if (id === undefined) return { reason: "bad_signature", label: sessionLabel(claimedId(raw)) };
  return id === req.sessionID ? undefined : { reason: "unknown", label: sessionLabel(id) };
}

const MESSAGES: Record<CookieRejection, string> = {
  unsigned: "session cookie is not signed; continuing with a new, empty session",
  bad_signature:
    "session cookie signature does not match any SESSION_SECRETS (tampered, or signed with a removed " +
    "secret); continuing with a new, empty session",
  unknown:
    "session cookie names no stored session (expired, logged out, or never issued); continuing with a new, " +
    "empty session",
};

export function sessionGuard(opts: { cookieName: string; secrets: readonly string[] }): RequestHandler {
  return (req, res, next) => {
    const rejected = cookieRejection(req, opts.cookieName, opts.secrets);
    if (rejected)
      req.log?.warn(
        { event: "session_cookie_rejected", reason: rejected.reason, cookie: rejected.label },
        MESSAGES[rejected.reason],
      );
    next();
  };
}
