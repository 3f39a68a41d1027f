// The demo page at / and its assets under /assets/, served by every replica from
// services/app/public. Mounted before the session middleware: a page view costs no Redis call.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import express, { Router, type RequestHandler } from "express";
import { methodNotAllowed, notFound } from "../errors.ts";

export const PUBLIC_DIR = resolve(import.meta.dirname, "../../public");

// Everything the page needs comes from this origin; no inline script or style, no frames.
export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const pageHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader("Content-Security-Policy", PAGE_CSP);
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Referrer-Policy", "no-referrer");
  next();
};

export function pageRoutes(dir = PUBLIC_DIR): Router {
  // Read once: the page is tiny and identical on every replica.
  const index = readFileSync(join(dir, "index.html"));
  const r = Router({ strict: true, caseSensitive: true });
  r.route("/")
    .get(pageHeaders, (_req, res) => {
      // Revalidate on every load, so a redeploy shows at once; the app sends no ETag, so
      // this is a full (2-3 KiB) response each time.
      res.setHeader("Cache-Control", "no-cache");
      res.type("html").send(index);
    })
    .all((_req, _res, next) => next(methodNotAllowed(["GET", "HEAD"])));
  // Asset names carry no content hash, so browsers revalidate them (ETag) instead of caching blindly.
  const label: RequestHandler = (_req, res, next) => {
    res.locals.routeLabel = "/assets/*";
    next();
  };
  r.use(
    "/assets",
    label,
    pageHeaders,
    express.static(join(dir, "assets"), {
      index: false,
      redirect: false,
      cacheControl: true,
      maxAge: 0,
      fallthrough: true,
      // A file served gets static's revalidating Cache-Control, which it sets only where none is
      // set yet: lift the app-wide no-store (middleware/no-store.ts); a 404 keeps it.
      setHeaders: (res) => res.removeHeader("Cache-Control"),
    }),
    // Only GET and HEAD serve files (static passes every other method on).
    (req, _res, next) =>
      next(
        req.method === "GET" || req.method === "HEAD" ? notFound("No such asset.") : methodNotAllowed(["GET", "HEAD"]),
      ),
  );
  return r;
}
