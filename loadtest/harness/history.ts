// What a harness run records: every attempt of every logical operation of every virtual
// user, the fault events, and how each answer is classified. The checker reads only this.

/**
 * ok: the increment happened and the answer says so. failed: it definitely did not happen
 * (the app said so, or the request never left). indeterminate: it may or may not have.
 */
export type Outcome = "ok" | "failed" | "indeterminate";

export type Attempt = {
  /** ms since the run started, when the request was sent and when its answer (or error) came. */
  t0: number;
  t1: number;
  /** X-Replica of the answer; undefined when nginx answered itself or nothing answered. */
  replica: string | undefined;
  /** HTTP status, or 0 when no answer came. */
  status: number;
  outcome: Outcome;
  /** Why: "200", "store_unavailable", "store_timeout", "502", "ETIMEDOUT", "ECONNRESET", ... */
  reason: string;
  count?: number;
  session?: string | null;
  replayed?: boolean;
};

/** One logical operation: an increment (with every retry of its key), a session start, or the final read. */
export type Op = {
  user: number;
  kind: "start" | "increment" | "read";
  key?: string;
  attempts: Attempt[];
};

export type FaultEvent = {
  t: number;
  /** A replica name, or "redis". */
  target: string;
  /** down: stopped serving (killed, SIGTERM sent). up: serving again. note: anything else. */
  state: "down" | "up" | "note";
  label: string;
};

export type History = {
  scenario: string;
  /** Whether increments carried Idempotency-Keys (COUNTER=atomic); enables the strict check. */
  keyed: boolean;
  users: number;
  concurrency: number;
  /** Replica names at the start, in lane order. */
  replicas: string[];
  /** ms since run start when the load phase began and ended (sessions start before, reads after). */
  loadStart: number;
  loadEnd: number;
  ops: Op[];
  events: FaultEvent[];
  /** Whether the cluster was healthy again when the run ended, and why not. */
  endHealth: { ok: boolean; detail: string };
};

/**
 * Classifies one answer. The app tells "not applied" (store_unavailable) from "maybe applied"
 * (store_timeout) in its 503 bodies; nginx's own 502/504 and a lost connection are always
 * "maybe": the request may have reached a replica that wrote to Redis before it died.
 */
export function classify(
  status: number,
  errorCode: string | undefined,
  transportCode?: string,
): { outcome: Outcome; reason: string } {
  if (status === 0) {
    // Refused by the load balancer itself: the request never left this process.
    if (transportCode === "ECONNREFUSED") return { outcome: "failed", reason: transportCode };
    return { outcome: "indeterminate", reason: transportCode ?? "no_answer" };
  }
  if (status >= 200 && status < 300) return { outcome: "ok", reason: String(status) };
  if (status === 503 && errorCode === "store_unavailable") return { outcome: "failed", reason: errorCode };
  if (status === 503 && errorCode === "store_timeout") return { outcome: "indeterminate", reason: errorCode };
  if (status >= 400 && status < 500) return { outcome: "failed", reason: errorCode ?? String(status) };
  return { outcome: "indeterminate", reason: errorCode ?? String(status) };
}

/** The outcome of a logical operation from its attempts. */
export function opOutcome(op: Op): Outcome {
  if (op.attempts.some((a) => a.outcome === "ok")) return "ok";
  if (op.attempts.length > 0 && op.attempts.every((a) => a.outcome === "failed")) return "failed";
  return "indeterminate";
}

export function okAttempt(op: Op): Attempt | undefined {
  return op.attempts.find((a) => a.outcome === "ok");
}
