// The one place Cache-Control: no-store is set: first in the chain, so every answer (JSON,
// errors, health, metrics, anything carrying a session or a Set-Cookie) is never cached, not
// in the browser and not in a shared cache between nginx and the client. The page and its
// assets (routes/page.ts) set their own, revalidating, policy over it.
import type { RequestHandler } from "express";

export const noStore: RequestHandler = (_req, res, next) => {
  res.setHeader("Cache-Control", "no-store");
  next();
};
