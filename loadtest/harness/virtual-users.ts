// The virtual users: K visitors, each with its own cookie jar (one session each), sending
// increments through the load balancer with C requests in flight per session, recording
// every attempt. With keys, an indeterminate increment is retried with the same key until
// the answer is definite or the retry budget runs out.
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { TransportError, Visitor, type Reply } from "../client/visitor.ts";
import { classify, type Attempt, type Op } from "./history.ts";

export type LoadOptions = {
  baseUrl: string;
  users: number;
  /** Requests in flight per session: 1 is the seed's one-tab user, more is several tabs. */
  concurrency: number;
  /** Send an Idempotency-Key with every increment and retry indeterminate ones with it. */
  keyed: boolean;
  /** Upper bound on increments per user (the duration bounds the run too). */
  opsPerUser: number;
  /**
   * Client deadline per request; longer than an unkeyed request can take in nginx (5 s read timeout,
   * never resent after it). A keyed one nginx resends after a read timeout can take up to 13 s; a
   * client that gives up first resends it with its key.
   */
  timeoutMs?: number;
  /** How long a keyed increment (or a session start, or the final read) keeps retrying. */
  retryBudgetMs?: number;
  /** ms since the run started; every recorded time uses it. */
  clock: () => number;
};

export type LoadStats = {
  attempts: number;
  ok: number;
  failed: number;
  indeterminate: number;
  inFlight: number;
  byReplica: Map<string, number>;
};

type Send = (v: Visitor) => Promise<Reply>;

export class Load {
  readonly ops: Op[] = [];
  readonly stats: LoadStats = { attempts: 0, ok: 0, failed: 0, indeterminate: 0, inFlight: 0, byReplica: new Map() };
  readonly #o: Required<LoadOptions>;
  readonly #visitors: Visitor[];
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(opts: LoadOptions) {
    this.#o = { timeoutMs: 8000, retryBudgetMs: 30_000, ...opts };
    this.#visitors = Array.from({ length: opts.users }, () => new Visitor(opts.baseUrl));
  }

  /** Starts every user's session (POST /api/session), so no increment ever runs without one. */
  async startSessions(): Promise<number> {
    await Promise.all(this.#visitors.map((v, user) => this.#untilOk(user, "start", v, (x) => x.startSession())));
    return this.#visitors.filter((v) => v.cookie !== undefined).length;
  }

  /** Sends increments until stop() or opsPerUser; resolves when every in-flight operation has finished. */
  run(): Promise<void> {
    this.#running ??= Promise.all(this.#visitors.map((v, user) => this.#user(user, v))).then(() => undefined);
    return this.#running;
  }

  /** No new operation starts; the ones in flight finish (with their retries). */
  stop(): void {
    this.#stopped = true;
  }

  /** Reads every user's count once, read-only (GET /api/session). */
  async readFinals(): Promise<void> {
    await Promise.all(this.#visitors.map((v, user) => this.#untilOk(user, "read", v, (x) => x.get("/api/session"))));
  }

  async #user(user: number, v: Visitor): Promise<void> {
    // A user without a session would start one with its first increment, and the checker
    // could not tell which session that increment landed in: leave such a user out.
    if (v.cookie === undefined) return;
    let sent = 0;
    const worker = async () => {
      while (!this.#stopped && sent < this.#o.opsPerUser) {
        sent++;
        const op = await this.#increment(user, v);
        // After a failure, pause: a user does not hammer a cluster in an outage at full speed.
        if (op.attempts.at(-1)!.outcome !== "ok") await sleep(100);
      }
    };
    await Promise.all(Array.from({ length: this.#o.concurrency }, worker));
  }

  async #increment(user: number, v: Visitor): Promise<Op> {
    const key = this.#o.keyed ? randomUUID() : undefined;
    const op: Op = { user, kind: "increment", ...(key ? { key } : {}), attempts: [] };
    this.ops.push(op);
    const deadline = this.#o.clock() + this.#o.retryBudgetMs;
    for (let n = 0; ; n++) {
      const a = await this.#attempt(v, (x) => x.increment(key, { timeoutMs: this.#o.timeoutMs }));
      op.attempts.push(a);
      if (a.outcome === "ok" || !key) return op;
      // Only a first answer of "not applied" settles a key; after a "maybe", only an ok does.
      if (op.attempts.every((x) => x.outcome === "failed")) return op;
      // A 4xx on a retry (422, 409) will not change by retrying.
      if (a.status >= 400 && a.status < 500) return op;
      if (this.#o.clock() > deadline) return op;
      await sleep(Math.min(50 * 2 ** n, 500));
    }
  }

  async #untilOk(user: number, kind: "start" | "read", v: Visitor, send: Send): Promise<Op> {
    const op: Op = { user, kind, attempts: [] };
    this.ops.push(op);
    const deadline = this.#o.clock() + this.#o.retryBudgetMs;
    for (let n = 0; ; n++) {
      const a = await this.#attempt(v, (x) => send(x));
      op.attempts.push(a);
      if (a.outcome === "ok" || this.#o.clock() > deadline) return op;
      await sleep(Math.min(50 * 2 ** n, 500));
    }
  }

  async #attempt(v: Visitor, send: Send): Promise<Attempt> {
    const s = this.stats;
    s.inFlight++;
    const t0 = this.#o.clock();
    let a: Attempt;
    try {
      const r = await send(v);
      const body = r.json ?? {};
      const { outcome, reason } = classify(r.status, typeof body.error === "string" ? body.error : undefined);
      a = { t0, t1: this.#o.clock(), replica: r.replica, status: r.status, outcome, reason };
      if (typeof body.count === "number") a.count = body.count;
      if (outcome === "ok") a.session = typeof body.session === "string" ? body.session : null;
      if (r.headers.get("idempotent-replayed") === "true") a.replayed = true;
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      const { outcome, reason } = classify(0, undefined, err.code);
      a = { t0, t1: this.#o.clock(), replica: undefined, status: 0, outcome, reason };
    } finally {
      s.inFlight--;
    }
    s.attempts++;
    s[a.outcome]++;
    if (a.replica) s.byReplica.set(a.replica, (s.byReplica.get(a.replica) ?? 0) + 1);
    return a;
  }
}
