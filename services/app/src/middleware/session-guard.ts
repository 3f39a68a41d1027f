// Runs right after express-session: logs (at warn, with a hash, never the id) each session cookie that was not honoured.
import { createHmac, timingSafeEqual } from "node:crypto";
import type { Request, RequestHandler } from "express";
import { sessionLabel } from "../session.ts";

export type CookieRejection = "unsigned" | "bad_signature" | "unknown";

/** The first value of cookie `name` in a Cookie header, as express-session reads it. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  }
  return undefined;
}

/** cookie-signature's scheme (what express-session uses): "s:" + id + "." + base64 HMAC-SHA256 without padding. */
function signedWith(id: string, signature: string, secret: string): boolean {
  const expected = Buffer.from(createHmac("sha256", secret).update(id).digest("base64").replace(/=+$/, ""));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** A signed value "s:<id>.<signature>" split as cookie-signature reads it (signature "" without a dot). */
function splitSigned(raw: string): { id: string; signature: string } {
  const dot = raw.lastIndexOf(".");
  return dot > 2 ? { id: raw.slice(2, dot), signature: raw.slice(dot + 1) } : { id: raw.slice(2), signature: "" };
}

const signedByAny = ({ id, signature }: { id: string; signature: string }, secrets: readonly string[]) => secrets.some((s) => signedWith(id, signature, s));

/** The session id in a signed session cookie value ("s:<id>.<sig>") when one of `secrets` signed it. */
export function unsignSessionId(raw: string, secrets: readonly string[]): string | undefined {
  if (!raw.startsWith("s:")) return undefined;
  const parts = splitSigned(raw);
  return signedByAny(parts, secrets) ? parts.id : undefined;
}

/**
 * Why the session cookie of `req` was not honoured, or undefined when it was (or there was
 * none). express-session gives a new id both for a bad signature and for an id the store
 * does not have, so the two are told apart by checking the signature here.
 */
export function cookieRejection(req: Request, cookieName: string, secrets: readonly string[]): { reason: CookieRejection; label: string } | undefined {
  const raw = readCookie(req.headers.cookie, cookieName);
  if (raw === undefined) return undefined;
  if (!raw.startsWith("s:")) return { reason: "unsigned", label: sessionLabel(raw) };
  const parts = splitSigned(raw);
  if (parts.id === req.sessionID) return undefined;
  return { reason: signedByAny(parts, secrets) ? "unknown" : "bad_signature", label: sessionLabel(parts.id) };
}

const MESSAGES: Record<CookieRejection, string> = {
  unsigned: "session cookie is not signed; continuing with a new, empty session",
  bad_signature: "session cookie signature does not match any SESSION_SECRETS (tampered, or signed with a removed secret); continuing with a new, empty session",
  unknown: "session cookie names no stored session (expired, logged out, or never issued); continuing with a new, empty session",
};

export function sessionGuard(opts: { cookieName: string; secrets: readonly string[] }): RequestHandler {
  return (req, res, next) => {
    const rejected = cookieRejection(req, opts.cookieName, opts.secrets);
    if (rejected) req.log?.warn({ event: "session_cookie_rejected", reason: rejected.reason, cookie: rejected.label }, MESSAGES[rejected.reason]);
    next();
  };
}
