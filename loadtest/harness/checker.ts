// The consistency checker: pure functions from a recorded History to one verdict per
// property, with the figures behind it. Nothing here talks to a cluster.
import { okAttempt, opOutcome, type History, type Op } from "./history.ts";
import { percentOf } from "../lib/stats.ts";

export type Expectations = {
  /** The scenario promises that no attempt fails or ends indeterminate (a graceful drain). */
  noFailures?: boolean;
  /**
   * The scenario promises that no request fails: every increment ends acknowledged. An attempt
   * that failed and was resent with the same Idempotency-Key, then applied once, is a request the
   * user saw succeed; such attempts are counted and reported by reason, not hidden.
   */
  noFailedRequests?: boolean;
  /**
   * With noFailedRequests: only attempts whose connection closed unanswered (a reset, no answer)
   * may be resent; any answered failure (503, 502, 429...) still fails the check. For a drain on
   * a platform whose proxy reloads close idle keep-alive connections.
   */
  resendOnlyClosedConnections?: boolean;
  /** Every failed answer must come within this many ms, and no request may time out (a Redis outage). */
  fastFailuresMs?: number;
  /**
   * A Redis failover without WAIT: acknowledged increments the old primary had not yet
   * replicated may be lost. The loss is reported (bounds, exactly-once, failovers) but does not
   * fail the run; anything counted twice still does.
   */
  lossAllowed?: boolean;
  /** Report each Redis failover (the "redis" down/up events): writes' pause, loss, key retries. */
  failovers?: boolean;
};

export type Check = {
  name: string;
  ok: boolean;
  /** True for properties of the counts (bounds, exactly-once, monotonic, continuity). */
  consistency: boolean;
  summary: string;
  figures: Record<string, number | string>;
};

export type SessionTally = {
  user: number;
  session: string | undefined;
  acknowledged: number;
  indeterminate: number;
  failed: number;
  final: number | undefined;
  lost: number;
  duplicated: number;
  /** The final read's session differed from the one the user started with. */
  finalSessionChanged: boolean;
};

export type Verdict = {
  checks: Check[];
  sessions: SessionTally[];
  /** Every consistency property held. */
  consistent: boolean;
  /** Every check held. */
  ok: boolean;
  totals: {
    attempts: number;
    ok: number;
    failed: number;
    indeterminate: number;
    increments: number;
    acknowledged: number;
    final: number;
    lost: number;
    duplicated: number;
    replayed: number;
  };
};

type UserOps = { start: Op[]; increments: Op[]; read: Op | undefined };

function byUser(h: History): Map<number, UserOps> {
  const users = new Map<number, UserOps>();
  for (let u = 0; u < h.users; u++) users.set(u, { start: [], increments: [], read: undefined });
  for (const op of h.ops) {
    let u = users.get(op.user);
    if (!u) users.set(op.user, (u = { start: [], increments: [], read: undefined }));
    if (op.kind === "start") u.start.push(op);
    else if (op.kind === "increment") u.increments.push(op);
    else u.read = op;
  }
  return users;
}

/** Per session: acknowledged <= final <= acknowledged + indeterminate (Jepsen's counter checker). */
export function tallySessions(h: History): SessionTally[] {
  const out: SessionTally[] = [];
  for (const [user, u] of byUser(h)) {
    const started = u.start.map(okAttempt).find((a) => a !== undefined);
    let acknowledged = 0;
    let indeterminate = 0;
    let failed = 0;
    for (const op of u.increments) {
      const o = opOutcome(op);
      if (o === "ok") acknowledged++;
      else if (o === "failed") failed++;
      else indeterminate++;
    }
    const read = u.read ? okAttempt(u.read) : undefined;
    const final = read?.count;
    const session = started?.session ?? undefined;
    out.push({
      user,
      session,
      acknowledged,
      indeterminate,
      failed,
      final,
      lost: final === undefined ? acknowledged : Math.max(0, acknowledged - final),
      duplicated: final === undefined ? 0 : Math.max(0, final - acknowledged - indeterminate),
      finalSessionChanged: read !== undefined && (read.session ?? undefined) !== session,
    });
  }
  return out;
}

export function checkBounds(sessions: SessionTally[], lossAllowed = false): Check {
  const unread = sessions.filter((s) => s.final === undefined).length;
  const lost = sessions.reduce((n, s) => n + s.lost, 0);
  const dup = sessions.reduce((n, s) => n + s.duplicated, 0);
  const bad = sessions.filter((s) => s.lost > 0 || s.duplicated > 0 || s.final === undefined).length;
  const fatal = sessions.filter(
    (s) => s.duplicated > 0 || s.final === undefined || (!lossAllowed && s.lost > 0),
  ).length;
  const acked = sessions.reduce((n, s) => n + s.acknowledged, 0);
  return {
    name: "bounds",
    consistency: true,
    ok: fatal === 0,
    summary:
      bad === 0
        ? `acknowledged <= final <= acknowledged + indeterminate in all ${sessions.length} sessions`
        : `${bad} of ${sessions.length} sessions out of bounds: ${lost} acknowledged increments lost ` +
          `(${percentOf(lost, acked)}), ${dup} ` +
          `duplicated${unread ? `, ${unread} final counts unreadable` : ""}` +
          (lossAllowed && fatal === 0 ? " (a loss without WAIT is reported, not failed; nothing counted twice)" : ""),
    figures: { sessions: sessions.length, violating: bad, lost, duplicated: dup, unread },
  };
}

/**
 * With Idempotency-Keys the client retries every indeterminate increment until it knows, so
 * the strict property applies: final == number of distinct keys acknowledged.
 */
export function checkExactlyOnce(h: History, lossAllowed = false): Check {
  let over = 0;
  let mismatched = 0;
  let unresolved = 0;
  let off = 0;
  let replayed = 0;
  const sessions = byUser(h);
  for (const [, u] of sessions) {
    const keys = new Set<string>();
    for (const op of u.increments) {
      const o = opOutcome(op);
      if (o === "ok") keys.add(op.key ?? `(no key #${keys.size})`);
      else if (o === "indeterminate") unresolved++;
      if (okAttempt(op)?.replayed) replayed++;
    }
    const final = u.read ? okAttempt(u.read)?.count : undefined;
    if (final !== undefined && final > keys.size) over++;
    if (final !== keys.size) {
      mismatched++;
      off += final === undefined ? keys.size : Math.abs(final - keys.size);
    }
  }
  const ok = (lossAllowed ? over === 0 : mismatched === 0) && unresolved === 0;
  return {
    name: "exactly-once",
    consistency: true,
    ok,
    summary: ok
      ? `final == distinct keys acknowledged in all ${sessions.size} sessions (${replayed} answers were replays)`
      : `${mismatched} sessions differ from their acknowledged keys by ${off} in ` +
        `all${unresolved ? `; ${unresolved} keys never got a definite answer` : ""}`,
    figures: { sessions: sessions.size, mismatched, over, difference: off, unresolved, replayed },
  };
}

/**
 * Every increment adds one, so an increment that began after another was acknowledged must
 * return a larger count, and the final read may not be below any acknowledged count.
 */
export function checkMonotonic(h: History, lossAllowed = false): Check {
  let violations = 0;
  let usersAffected = 0;
  let example = "";
  for (const [user, u] of byUser(h)) {
    const done = u.increments
      .map((op) => ({ op, a: okAttempt(op) }))
      .filter((x): x is { op: Op; a: NonNullable<typeof x.a> } => x.a !== undefined && x.a.count !== undefined)
      .map(({ op, a }) => ({ start: op.attempts[0]!.t0, end: a.t1, count: a.count! }));
    const byStart = [...done].sort((x, y) => x.start - y.start);
    const byEnd = [...done].sort((x, y) => x.end - y.end);
    let before = -Infinity;
    let j = 0;
    let mine = 0;
    for (const b of byStart) {
      while (j < byEnd.length && byEnd[j]!.end < b.start) before = Math.max(before, byEnd[j++]!.count);
      if (b.count <= before) {
        mine++;
        example ||= `user ${user} saw ${b.count} after ${before} was acknowledged`;
      }
    }
    const final = u.read ? okAttempt(u.read)?.count : undefined;
    const maxSeen = Math.max(-Infinity, ...done.map((d) => d.count));
    if (final !== undefined && final < maxSeen) {
      mine++;
      example ||= `user ${user} read ${final} at the end after seeing ${maxSeen}`;
    }
    violations += mine;
    if (mine > 0) usersAffected++;
  }
  return {
    name: "monotonic",
    consistency: true,
    // A lost increment makes the next answer repeat a count already seen: the loss itself,
    // reported by bounds.
    ok: violations === 0 || lossAllowed,
    summary:
      violations === 0
        ? "no user saw its count stall or go down"
        : `${violations} answers went backwards or stalled for ${usersAffected} users, e.g. ${example}`,
    figures: { violations, users: usersAffected },
  };
}

/** A user's session never changes: every answer names the session its first request started. */
export function checkContinuity(h: History): Check {
  let changed = 0;
  let answers = 0;
  let notStarted = 0;
  for (const [, u] of byUser(h)) {
    const started = u.start.map(okAttempt).find((a) => a !== undefined)?.session ?? undefined;
    if (started === undefined) {
      notStarted++;
      continue;
    }
    let mine = 0;
    for (const op of [...u.increments, ...(u.read ? [u.read] : [])]) {
      for (const a of op.attempts) if (a.outcome === "ok" && a.session !== started) mine++;
    }
    answers += mine;
    if (mine > 0) changed++;
  }
  const ok = changed === 0 && notStarted === 0;
  return {
    name: "session continuity",
    consistency: true,
    ok,
    summary: ok
      ? "every answer carried the session its user started"
      : [
          changed ? `${changed} users had their session replaced (${answers} answers under another session)` : "",
          notStarted ? `${notStarted} users never got a session` : "",
        ]
          .filter(Boolean)
          .join("; "),
    figures: { users: changed, answers, notStarted },
  };
}

/** Intervals during which each target was down, from the fault events. */
export function downIntervals(h: History): Map<string, [number, number][]> {
  const out = new Map<string, [number, number][]>();
  const since = new Map<string, number>();
  for (const e of [...h.events].sort((a, b) => a.t - b.t)) {
    if (e.state === "down" && !since.has(e.target)) since.set(e.target, e.t);
    if (e.state === "up" && since.has(e.target)) {
      out.set(e.target, [...(out.get(e.target) ?? []), [since.get(e.target)!, e.t]]);
      since.delete(e.target);
    }
  }
  for (const [t, s] of since) out.set(t, [...(out.get(t) ?? []), [s, Math.max(s, h.loadEnd)]]);
  return out;
}

/**
 * Round-robin reached every replica: each one served something, and each that was up for
 * the whole run served at least half its fair share. The shares are the figures.
 */
export function checkSpread(h: History): Check {
  const served = new Map<string, number>(h.replicas.map((r) => [r, 0]));
  let total = 0;
  for (const op of h.ops) {
    if (op.kind !== "increment") continue;
    for (const a of op.attempts) {
      if (a.outcome !== "ok" || a.replica === undefined) continue;
      served.set(a.replica, (served.get(a.replica) ?? 0) + 1);
      total++;
    }
  }
  const down = downIntervals(h);
  const fair = total / Math.max(1, h.replicas.length);
  const starved = [...served].filter(([r, n]) => n === 0 || (!down.has(r) && n < fair / 2)).map(([r]) => r);
  const shares = [...served].map(([r, n]) => `${r} ${percentOf(n, total)}`).join(", ");
  return {
    name: "spread",
    consistency: false,
    ok: total > 0 && starved.length === 0,
    summary: starved.length === 0 ? shares : `${starved.join(", ")} served too little: ${shares}`,
    figures: Object.fromEntries([...served].map(([r, n]) => [r, n])),
  };
}

export function checkFailures(h: History, expect: Expectations): Check {
  let failed = 0;
  let indet = 0;
  const reasons = new Map<string, number>();
  let requests = 0;
  let unsettled = 0;
  let resent = 0;
  // Failed or unknown attempts the promise does not allow even when resent (resendOnlyClosedConnections).
  let refused = 0;
  // A connection that closed unanswered (a reset): not a refused one (the proxy down) nor a client timeout.
  const closedUnanswered = (a: Op["attempts"][number]) =>
    a.outcome === "indeterminate" && a.status === 0 && a.reason !== "ETIMEDOUT";
  for (const op of h.ops) {
    if (op.kind === "increment") {
      requests++;
      if (opOutcome(op) !== "ok") unsettled++;
      // Attempts before the acknowledged one: failed or unknown, then sent again with the key.
      else resent += op.attempts.filter((a) => a.outcome !== "ok").length;
    }
    for (const a of op.attempts) {
      if (a.outcome === "ok") continue;
      if (a.outcome === "failed") failed++;
      else indet++;
      if (!closedUnanswered(a)) refused++;
      reasons.set(a.reason, (reasons.get(a.reason) ?? 0) + 1);
    }
  }
  const why = [...reasons]
    .sort((a, b) => b[1] - a[1])
    .map(([r, n]) => `${r} ${n}`)
    .join(", ");
  const attempts = `${failed} failed, ${indet} indeterminate attempts${why ? ` (${why})` : ""}`;
  const figures = { failed, indeterminate: indet, requests, unsettled, resent };
  if (expect.noFailedRequests === true && expect.noFailures !== true) {
    const strict = expect.resendOnlyClosedConnections === true;
    return {
      name: "no failures",
      consistency: false,
      ok: unsettled === 0 && (!strict || refused === 0),
      summary:
        `${unsettled} of ${requests} increments not acknowledged (promised: 0); ${attempts}, ` +
        `${resent} of them resent with their key and acknowledged` +
        (strict ? `; ${refused} answered or timed out (promised: 0, only closed connections may be resent)` : ""),
      figures: { ...figures, promised: strict ? "requests, resending closed connections only" : "requests", refused },
    };
  }
  const promised = expect.noFailures === true;
  return {
    name: "no failures",
    consistency: false,
    ok: !promised || failed + indet === 0,
    summary: `${attempts}${promised ? "" : "; none promised"}`,
    figures: { ...figures, promised: promised ? "yes" : "no" },
  };
}

/** During an outage the answer is a quick, definite 503, not a hang. */
export function checkFastFailures(h: History, limitMs: number): Check {
  let slowest = 0;
  let timeouts = 0;
  let n = 0;
  for (const op of h.ops) {
    for (const a of op.attempts) {
      if (a.reason === "ETIMEDOUT") timeouts++;
      if (a.status >= 500) {
        n++;
        slowest = Math.max(slowest, a.t1 - a.t0);
      }
    }
  }
  const ok = slowest <= limitMs && timeouts === 0;
  return {
    name: "fast failures",
    consistency: false,
    ok,
    summary: `${n} 5xx answers, slowest ${Math.round(slowest)} ms (limit ${limitMs} ms), ${timeouts} client timeouts`,
    figures: { answers5xx: n, slowestMs: Math.round(slowest), timeouts },
  };
}

/**
 * One row per Redis failover (a "redis" down event, then its "up"): how long no write sent
 * after the kill succeeded, the longest stretch in its window with no write acknowledged at all
 * (where a kill takes a while to land, as `docker kill` on a loaded host, writes sent after the
 * "down" mark can still succeed on the old primary, and the first figure alone reads too low),
 * the acknowledged increments the failover lost (a user's next
 * answer repeating a count already acknowledged: with one request in flight per user, each
 * repeat is one loss), and the keyed increments left indeterminate by it that a retry with
 * the same key then resolved. Figures, not a pass/fail: bounds and exactly-once judge.
 */
export function checkFailovers(h: History): Check {
  const downs = h.events.filter((e) => e.target === "redis" && e.state === "down").sort((a, b) => a.t - b.t);
  const incs = h.ops.filter((o) => o.kind === "increment");
  const windowOf = (t: number) => downs.filter((d) => d.t <= t).length - 1;
  const rows = downs.map((d) => ({
    label: d.label,
    resumeMs: NaN,
    stallMs: 0,
    lost: 0,
    indeterminate: 0,
    resolved: 0,
  }));
  const acks = incs
    .flatMap((op) => op.attempts.filter((a) => a.outcome === "ok").map((a) => a.t1))
    .sort((x, y) => x - y);
  for (const [i, d] of downs.entries()) {
    const next = downs[i + 1]?.t ?? Infinity;
    let first = Infinity;
    for (const op of incs)
      for (const a of op.attempts) if (a.outcome === "ok" && a.t0 >= d.t && a.t0 < next) first = Math.min(first, a.t1);
    rows[i]!.resumeMs = first - d.t;
    // Writes never resumed in this window: the stall is at least the window (to the end of the run).
    if (first === Infinity) rows[i]!.stallMs = Infinity;
    // Gaps between consecutive acknowledgements that end in this window (the first may start before it).
    for (let k = 1; k < acks.length; k++)
      if (acks[k]! >= d.t && acks[k]! < next) rows[i]!.stallMs = Math.max(rows[i]!.stallMs, acks[k]! - acks[k - 1]!);
  }
  for (const op of incs) {
    const a = op.attempts.find((x) => x.outcome === "indeterminate");
    if (!a) continue;
    const w = windowOf(a.t0);
    if (w < 0) continue;
    rows[w]!.indeterminate++;
    if (op.attempts.some((x) => x.outcome === "ok")) rows[w]!.resolved++;
  }
  for (const [, u] of byUser(h)) {
    const acked = u.increments
      .map(okAttempt)
      .filter((a): a is NonNullable<typeof a> => a?.count !== undefined)
      .sort((x, y) => x.t1 - y.t1);
    let max = 0;
    for (const a of acked) {
      if (a.count! <= max) {
        const w = windowOf(a.t1);
        if (w >= 0) rows[w]!.lost += max - a.count! + 1;
      }
      max = Math.max(max, a.count!);
    }
  }
  const fmt = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "never");
  return {
    name: "failovers",
    consistency: false,
    ok: true,
    summary: rows.length
      ? rows
          .map(
            (r, i) =>
              `#${i + 1} ${r.label}: writes resumed after ${fmt(r.resumeMs)} (longest stall ${fmt(r.stallMs)}), ` +
              `${r.lost} acknowledged lost, ` +
              `${r.indeterminate} indeterminate (${r.resolved} resolved by key retries)`,
          )
          .join("; ")
      : "no Redis failover happened",
    figures: Object.fromEntries(
      rows.flatMap((r, i) => [
        [`resumeMs${i + 1}`, Number.isFinite(r.resumeMs) ? Math.round(r.resumeMs) : "never"],
        [`stallMs${i + 1}`, Math.round(r.stallMs)],
        [`lost${i + 1}`, r.lost],
        [`indeterminate${i + 1}`, r.indeterminate],
        [`resolved${i + 1}`, r.resolved],
      ]),
    ),
  };
}

export function checkHealth(h: History): Check {
  return { name: "healthy at end", consistency: false, ok: h.endHealth.ok, summary: h.endHealth.detail, figures: {} };
}

export function check(h: History, expect: Expectations = {}): Verdict {
  const sessions = tallySessions(h);
  const lossAllowed = expect.lossAllowed === true;
  const checks = [checkBounds(sessions, lossAllowed)];
  if (h.keyed) checks.push(checkExactlyOnce(h, lossAllowed));
  checks.push(checkMonotonic(h, lossAllowed), checkContinuity(h), checkSpread(h), checkFailures(h, expect));
  if (expect.failovers) checks.push(checkFailovers(h));
  if (expect.fastFailuresMs !== undefined) checks.push(checkFastFailures(h, expect.fastFailuresMs));
  checks.push(checkHealth(h));

  let attempts = 0;
  let ok = 0;
  let failed = 0;
  let indeterminate = 0;
  let replayed = 0;
  let increments = 0;
  for (const op of h.ops) {
    if (op.kind === "increment") increments++;
    for (const a of op.attempts) {
      attempts++;
      if (a.outcome === "ok") ok++;
      else if (a.outcome === "failed") failed++;
      else indeterminate++;
      if (a.replayed) replayed++;
    }
  }
  const sum = (f: (s: SessionTally) => number) => sessions.reduce((n, s) => n + f(s), 0);
  return {
    checks,
    sessions,
    consistent: checks.filter((c) => c.consistency).every((c) => c.ok),
    ok: checks.every((c) => c.ok),
    totals: {
      attempts,
      ok,
      failed,
      indeterminate,
      increments,
      acknowledged: sum((s) => s.acknowledged),
      final: sum((s) => s.final ?? 0),
      lost: sum((s) => s.lost),
      duplicated: sum((s) => s.duplicated),
      replayed,
    },
  };
}
