// Refuses state changes that another site made a browser send (CSRF), on every route that
// changes state, before any of them (the one-round-trip path included) runs. SameSite=Lax
// cookies still ride a cross-site top-level GET (a link to /counter) and a body-less
// cross-site POST needs no CORS preflight, so the cookie's attribute alone does not stop either.
import type { Request, RequestHandler } from "express";
import { HttpError, notFound } from "../errors.ts";

/**
 * The tutorial's GET routes that change state. Matched by path, not by router, so aliases
 * mounted anywhere (the *-store-counter names) are covered as soon as they exist.
 */
export const STATE_CHANGING_GETS: readonly string[] = [
  "/counter",
  "/session-destroy",
  "/memory-store-counter",
  "/radis-store-counter",
  "/redis-store-counter",
];

/** Methods that change nothing: no cross-site check, and no body read (json-body.ts). */
export const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);
const ONLY_GET = "Use GET; this route changes state, so HEAD and OPTIONS are refused.";

/**
 * The path as a lenient router would match it (any case, trailing slashes ignored). Routing is
 * strict and case-sensitive (app.ts), but a router added later with Express's defaults would
 * still match /COUNTER/ to /counter: this check must not be the one that lets it through.
 */
function canonical(path: string): string {
  // A loop, not /\/+$/: that regex backtracks quadratically on a path of many slashes followed
  // by anything else, and nginx passes 8 KB of them (0.45 s of a replica's CPU per request).
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  return path.slice(0, end).toLowerCase();
}

/** Why `req` is a cross-site request, or undefined when it is same-origin or not from a browser page. */
export function crossSiteReason(req: Request, publicOrigins: readonly string[]): string | undefined {
  // Fetch Metadata first: every current browser sends Sec-Fetch-Site on every request, and it
  // tells a cross-site navigation apart from a same-origin one, which Origin cannot (a
  // top-level GET carries no Origin). "none" is the user's own action (typed URL, bookmark).
  // "same-site" is refused too: a sibling subdomain is another application.
  const site = req.get("Sec-Fetch-Site");
  if (site !== undefined)
    return site === "same-origin" || site === "none"
      ? undefined
      : `Sec-Fetch-Site is ${JSON.stringify(site.slice(0, 40))}`;
  // Browsers without Fetch Metadata still send Origin on a cross-origin POST (and "null" from
  // sandboxed frames and some redirects). Compared with the configured public origins, or
  // with the request's own scheme and host as nginx forwarded them (trust proxy).
  const origin = req.get("Origin");
  if (origin === undefined) return undefined; // curl, scripts, and same-origin GETs in older browsers
  const allowed = publicOrigins.length > 0 ? publicOrigins : [`${req.protocol}://${req.host}`.toLowerCase()];
  if (allowed.includes(origin.toLowerCase())) return undefined;
  return `Origin ${JSON.stringify(origin.slice(0, 200))} is not this site's`;
}

export function refuseCrossSite(opts: { publicOrigins: readonly string[] }): RequestHandler {
  const gets = new Set(STATE_CHANGING_GETS);
  return (req, res, next) => {
    const path = canonical(req.path);
    if (gets.has(path)) {
      // HEAD would run the GET handler (Express does that) and count or destroy; OPTIONS has
      // nothing to offer. 405 rather than a bodiless 200: a 200 would promise the headers a
      // GET gives (Set-Cookie, the count's length) without running what produces them. Another
      // spelling (/COUNTER, /counter/) is no route, so a 404, as its GET gets from the router.
      if (req.method !== "GET")
        return next(
          path === req.path ? new HttpError(405, "method_not_allowed", ONLY_GET, { Allow: "GET" }) : notFound(),
        );
    } else if (!(path === "/api" || path.startsWith("/api/")) || SAFE_METHODS.has(req.method)) {
      return next();
    }
    const reason = crossSiteReason(req, opts.publicOrigins);
    if (reason === undefined) return next();
    req.log?.warn({ event: "cross_site_refused", reason }, "refused a cross-site state change");
    res.setHeader("Vary", "Origin, Sec-Fetch-Site");
    const message = `Refused: ${reason}. This request changes state, and only this site's own pages (or clients that`;
    next(new HttpError(403, "cross_site_request", `${message} send no Origin) may send it.`));
  };
}
