// The checker on hand-made histories: a clean one passes, and each violation it exists to
// catch (lost, duplicated, non-monotonic, session reset) is caught and counted.
import { describe, expect, it } from "vitest";
import {
  check,
  checkBounds,
  checkContinuity,
  checkExactlyOnce,
  checkFailovers,
  checkMonotonic,
  checkSpread,
  tallySessions,
} from "./checker.ts";
import { classify, type Attempt, type History, type Op, type Outcome } from "./history.ts";

const S = "sessA";

function attempt(t0: number, outcome: Outcome, extra: Partial<Attempt> = {}): Attempt {
  const status = outcome === "ok" ? 200 : outcome === "failed" ? 503 : 502;
  return { t0, t1: t0 + 5, replica: "app-1", status, outcome, reason: String(status), session: S, ...extra };
}

/** A user that starts session S at t=0, then runs `incs`, then reads `final`. */
function user(
  u: number,
  incs: Op["attempts"][],
  final: number | undefined,
  opts: { session?: string; finalSession?: string } = {},
): Op[] {
  const session = opts.session ?? S;
  const ops: Op[] = [{ user: u, kind: "start", attempts: [attempt(0, "ok", { count: 0, session, status: 201 })] }];
  incs.forEach((attempts, i) =>
    ops.push({
      user: u,
      kind: "increment",
      key: `u${u}-k${i}`,
      attempts: attempts.map((a) => ({ ...a, session: a.session === S ? session : a.session })),
    }),
  );
  if (final !== undefined)
    ops.push({
      user: u,
      kind: "read",
      attempts: [attempt(10_000, "ok", { count: final, session: opts.finalSession ?? session })],
    });
  return ops;
}

/** n sequential acknowledged increments counting 1..n, 10 ms apart, served round-robin. */
const sequential = (n: number, replicas = ["app-1", "app-2", "app-3"]) =>
  Array.from({ length: n }, (_, i) => [
    attempt(10 + i * 10, "ok", { count: i + 1, replica: replicas[i % replicas.length] }),
  ]);

function history(ops: Op[], extra: Partial<History> = {}): History {
  const users = new Set(ops.map((o) => o.user)).size;
  return {
    scenario: "hand-made",
    keyed: false,
    users,
    concurrency: 1,
    replicas: ["app-1", "app-2", "app-3"],
    loadStart: 0,
    loadEnd: 10_000,
    ops,
    events: [],
    endHealth: { ok: true, detail: "all replicas running" },
    ...extra,
  };
}

describe("checker", () => {
  it("reports a failover's longest stall even when writes sent after the kill mark still succeeded", () => {
    // Acknowledged at 10..100 ms; the kill is marked at 50 but lands later; nothing from 100 to 2600.
    const incs = [...sequential(10), [attempt(2600, "ok", { count: 11 })]];
    const h = history(user(0, incs, 11), {
      events: [
        { t: 50, target: "redis", state: "down", label: "SIGKILL redis-1 (primary)" },
        { t: 1500, target: "redis", state: "up", label: "redis-2 promoted" },
      ] as History["events"],
    });
    const f = checkFailovers(h);
    expect(f.figures).toMatchObject({ resumeMs1: 5, stallMs1: 2500 });
    expect(f.summary).toContain("longest stall 2.50 s");
  });

  it("passes a clean history: counts 1..n, final n, one session, even spread", () => {
    const v = check(history([...user(0, sequential(9), 9), ...user(1, sequential(6), 6)], { keyed: true }));
    expect(v.checks.filter((c) => !c.ok)).toEqual([]);
    expect(v.consistent).toBe(true);
    expect(v.totals).toMatchObject({ acknowledged: 15, final: 15, lost: 0, duplicated: 0 });
  });

  it("catches a lost acknowledged increment: final below the acknowledged count", () => {
    const sessions = tallySessions(history(user(0, sequential(5), 4)));
    const c = checkBounds(sessions);
    expect(c.ok).toBe(false);
    expect(c.figures).toMatchObject({ violating: 1, lost: 1, duplicated: 0 });
  });

  it("catches a duplicate: final above acknowledged + indeterminate", () => {
    const incs = [
      ...sequential(3),
      [attempt(100, "indeterminate", { reason: "502", replica: undefined, session: undefined })],
    ];
    // 3 acknowledged + 1 that may have happened: 4 is allowed, 5 is a double count.
    expect(checkBounds(tallySessions(history(user(0, incs, 4)))).ok).toBe(true);
    const c = checkBounds(tallySessions(history(user(0, incs, 5))));
    expect(c.ok).toBe(false);
    expect(c.figures).toMatchObject({ lost: 0, duplicated: 1 });
  });

  it("does not count a definitely failed increment as possibly applied", () => {
    const incs = [...sequential(2), [attempt(100, "failed", { reason: "store_unavailable" })]];
    expect(checkBounds(tallySessions(history(user(0, incs, 3)))).figures).toMatchObject({ duplicated: 1 });
  });

  it("catches a non-monotonic count: a later increment returned less", () => {
    const incs = [1, 2, 3, 2].map((count, i) => [attempt(10 + i * 10, "ok", { count })]);
    const c = checkMonotonic(history(user(0, incs, 4)));
    expect(c.ok).toBe(false);
    expect(c.figures).toMatchObject({ violations: 1, users: 1 });
    expect(c.summary).toContain("saw 2 after 3");
  });

  it("accepts any order among increments that overlapped in time", () => {
    // Two requests in flight together may complete in either order.
    const incs = [
      [attempt(10, "ok", { count: 2, t1: 30 })],
      [attempt(11, "ok", { count: 1, t1: 31 })],
      [attempt(40, "ok", { count: 3 })],
    ];
    expect(checkMonotonic(history(user(0, incs, 3))).ok).toBe(true);
  });

  it("catches a final read below a count the user already saw", () => {
    expect(checkMonotonic(history(user(0, sequential(3), 2))).ok).toBe(false);
  });

  it("catches a session reset: an answer under another session than the one started", () => {
    const incs = sequential(4);
    incs[2] = [attempt(30, "ok", { count: 1, session: "sessB" })];
    const c = checkContinuity(history(user(0, incs, 4)));
    expect(c.ok).toBe(false);
    expect(c.figures).toMatchObject({ users: 1, answers: 1 });
    // The final read under a new session is a reset too.
    expect(checkContinuity(history(user(0, sequential(2), 0, { finalSession: "sessC" }))).ok).toBe(false);
  });

  it("reports a user that never got a session", () => {
    const ops: Op[] = [{ user: 0, kind: "start", attempts: [attempt(0, "indeterminate", { session: undefined })] }];
    expect(checkContinuity(history(ops)).figures).toMatchObject({ notStarted: 1 });
  });

  it("with keys, holds final to exactly the acknowledged keys; an unresolved key fails the strict check", () => {
    const resolved = [
      ...sequential(2),
      [attempt(100, "indeterminate", { reason: "502" }), attempt(200, "ok", { count: 3, replayed: true })],
    ];
    expect(checkExactlyOnce(history(user(0, resolved, 3), { keyed: true })).ok).toBe(true);
    // Bounds allow 2..3 here, the strict check allows nothing: the key was never confirmed.
    const open = [...sequential(2), [attempt(100, "indeterminate", { reason: "ETIMEDOUT" })]];
    const c = checkExactlyOnce(history(user(0, open, 3), { keyed: true }));
    expect(c.ok).toBe(false);
    expect(c.figures).toMatchObject({ unresolved: 1 });
    expect(checkBounds(tallySessions(history(user(0, open, 3)))).ok).toBe(true);
  });

  it("with keys, catches a key counted twice", () => {
    const c = checkExactlyOnce(history(user(0, sequential(4), 5), { keyed: true }));
    expect(c.ok).toBe(false);
    expect(c.figures).toMatchObject({ mismatched: 1, difference: 1 });
  });

  it("flags a replica that served nothing, unless it was down", () => {
    const h = history(user(0, sequential(12, ["app-1", "app-2"]), 12));
    expect(checkSpread(h).ok).toBe(false);
    expect(checkSpread(h).summary).toContain("app-3 served too little");
  });

  it("fails a scenario that promised no failures when one attempt failed", () => {
    const incs = [...sequential(2), [attempt(100, "failed", { reason: "store_unavailable" })]];
    const v = check(history(user(0, incs, 2)), { noFailures: true });
    expect(v.checks.find((c) => c.name === "no failures")?.ok).toBe(false);
    expect(v.consistent).toBe(true);
  });

  it("counts requests, not attempts, where no failed request is promised: a reset resent with its key passes", () => {
    const reset = { reason: "ECONNRESET", status: 0 };
    const resent = [attempt(100, "indeterminate", reset), attempt(200, "ok", { count: 3, replayed: false })];
    const h = history(user(0, [...sequential(2), resent], 3), { keyed: true });
    const requests = check(h, { noFailedRequests: true }).checks.find((c) => c.name === "no failures");
    expect(requests).toMatchObject({ ok: true, figures: { requests: 3, unsettled: 0, resent: 1, indeterminate: 1 } });
    expect(requests?.summary).toContain("ECONNRESET 1");
    // The same history where every attempt must succeed fails.
    expect(check(h, { noFailures: true }).checks.find((c) => c.name === "no failures")?.ok).toBe(false);
    // A request that never got an answer fails either way.
    const lostTrack = history(user(0, [...sequential(2), [attempt(100, "indeterminate", reset)]], 2), { keyed: true });
    const unsettled = check(lostTrack, { noFailedRequests: true }).checks.find((c) => c.name === "no failures");
    expect(unsettled).toMatchObject({ ok: false, figures: { unsettled: 1, resent: 0 } });
  });

  it("lets a drain on a reloading proxy resend only attempts whose connection closed unanswered", () => {
    // run-scenario.ts on Swarm with nginx < 1.27.3: a reload resets idle keep-alive connections.
    const relaxed = { noFailures: false, noFailedRequests: true, resendOnlyClosedConnections: true };
    const reset = [
      attempt(100, "indeterminate", { reason: "ECONNRESET", status: 0 }),
      attempt(200, "ok", { count: 3 }),
    ];
    const ok = check(history(user(0, [...sequential(2), reset], 3), { keyed: true }), relaxed);
    expect(ok.checks.find((c) => c.name === "no failures")?.ok).toBe(true);
    // What no reload causes still fails it, resent or not.
    for (const [reason, status] of [
      ["store_timeout", 503],
      ["no_replica", 502],
    ] as const) {
      const bad = [attempt(100, "indeterminate", { reason, status }), attempt(200, "ok", { count: 3 })];
      const v = check(history(user(0, [...sequential(2), bad], 3), { keyed: true }), relaxed).checks.find(
        (c) => c.name === "no failures",
      );
      expect(v?.ok, `${reason}: ${v?.summary}`).toBe(false);
    }
  });

  it("does not let a drain resend attempts that never reached the proxy or timed out", () => {
    const relaxed = { noFailures: false, noFailedRequests: true, resendOnlyClosedConnections: true };
    // A reload keeps nginx's listening sockets: a refused connection means the proxy was down, and the
    // client's own deadline is no closed connection; neither is what a reload causes.
    for (const [outcome, reason] of [
      ["failed", "ECONNREFUSED"],
      ["indeterminate", "ETIMEDOUT"],
    ] as const) {
      const bad = [attempt(100, outcome, { reason, status: 0 }), attempt(200, "ok", { count: 3 })];
      const v = check(history(user(0, [...sequential(2), bad], 3), { keyed: true }), relaxed).checks.find(
        (c) => c.name === "no failures",
      );
      expect(v?.ok, `${reason}: ${v?.summary}`).toBe(false);
    }
  });

  it("fails slow 503s and client timeouts where fast failures are promised", () => {
    const slow = [[attempt(10, "failed", { reason: "store_unavailable", t1: 4010 })]];
    const v = check(history(user(0, slow, 0)), { fastFailuresMs: 2000 });
    expect(v.checks.find((c) => c.name === "fast failures")).toMatchObject({ ok: false, figures: { slowestMs: 4000 } });
  });
});

describe("classify", () => {
  it("tells definite failures from indeterminate ones", () => {
    expect(classify(200, undefined).outcome).toBe("ok");
    expect(classify(503, "store_unavailable").outcome).toBe("failed");
    expect(classify(503, "store_timeout").outcome).toBe("indeterminate");
    expect(classify(502, undefined)).toEqual({ outcome: "indeterminate", reason: "502" });
    expect(classify(422, "idempotency_key_reused").outcome).toBe("failed");
    expect(classify(0, undefined, "ECONNRESET").outcome).toBe("indeterminate");
    expect(classify(0, undefined, "ETIMEDOUT").outcome).toBe("indeterminate");
    expect(classify(0, undefined, "ECONNREFUSED").outcome).toBe("failed");
  });
});
