// What the counter routes answer, shared by the one-round-trip path (stored-counter.ts) and the
// full routes (api.ts, seed.ts), so the two can never answer the same request differently.
import type { Response } from "express";
import type { IncrementResult } from "../counter.ts";

/** POST /api/counter: the JSON body, with Idempotent-Replayed on a replay. `label` is sessionLabel(id). */
export function sendIncrement(
  res: Response,
  { count, replayed }: IncrementResult,
  replica: string,
  label: string,
): void {
  if (replayed) res.setHeader("Idempotent-Replayed", "true");
  res.json({ count, replica, session: label });
}

/** GET /counter and its aliases: the tutorial's text answer. */
export function sendCountText(res: Response, count: number): void {
  res.type("text/plain").send(`count is ${count}`);
}

/** The tutorial's counter route and its aliases (/radis-store-counter is the tutorial's spelling). */
export const COUNTER_TEXT_PATHS = ["/counter", "/redis-store-counter", "/radis-store-counter"] as const;
