// Unit tests of the metric wrappers and the store decorator: fake stores and counters,
// a throwaway Express app on port 0.
import type { AddressInfo } from "node:net";
import type { Request } from "express";
import express, { Router } from "express";
import type { Store } from "express-session";
import { describe, expect, it } from "vitest";
import { parsePrometheus, sum } from "../../../test/prometheus-text.ts";
import type { Counter } from "./counter.ts";
import { conflict, StoreUnavailableError } from "./errors.ts";
import { createMetrics } from "./metrics.ts";
import { SessionStore } from "./session.ts";

const samples = async (m: ReturnType<typeof createMetrics>) => parsePrometheus(await m.registry.metrics());

describe("SessionStore with the metrics observer", () => {
  it("times every call, counts failures by store error code, callback or not; a needless touch: no-op", async () => {
    const m = createMetrics({ replicaId: "r1", redis: undefined });
    const calls: string[] = [];
    const inner = {
      get(sid: string, cb: (err?: unknown, data?: unknown) => void) {
        calls.push(`get ${sid}`);
        setImmediate(() =>
          sid === "bad" ? cb(new StoreUnavailableError(new Error("offline"), "no")) : cb(null, { n: 1 }),
        );
      },
      touch(_sid: string, _sess: unknown, cb: (err?: unknown) => void) {
        calls.push("touch");
        cb();
      },
      destroy(sid: string, cb?: (err?: unknown) => void) {
        calls.push(`destroy ${sid}`);
        cb?.(sid === "weird" ? new Error("boom") : undefined);
      },
    } as never as Store;
    const store = new SessionStore(inner, { absoluteTimeoutSeconds: 60, observe: m.observeStore });

    const got = await new Promise((resolve) => store.get("s1", (_err: unknown, data: unknown) => resolve(data)));
    expect(got).toEqual({ n: 1 });
    await new Promise<void>((resolve) => store.get("bad", () => resolve()));
    store.destroy("weird"); // express-session may call without a callback
    const touched = { cookie: {} };
    store.markTouched(touched);
    await new Promise<void>((resolve) => store.touch("s1", touched as never, () => resolve()));
    await new Promise<void>((resolve) => store.touch("s1", { cookie: {} } as never, () => resolve()));
    expect(calls).toEqual(["get s1", "get bad", "destroy weird", "touch"]);

    const s = await samples(m);
    expect(sum(s, "session_store_operation_duration_seconds_count", { op: "get" })).toBe(2);
    expect(sum(s, "session_store_operation_duration_seconds_count", { op: "destroy" })).toBe(1);
    // A touch the counter's script made unnecessary is not a store operation.
    expect(sum(s, "session_store_operation_duration_seconds_count", { op: "touch" })).toBe(1);
    expect(sum(s, "session_store_errors_total", { op: "get", code: "store_unavailable" })).toBe(1);
    expect(sum(s, "session_store_errors_total", { op: "destroy", code: "other" })).toBe(1);
  });
});

describe("instrumentCounter", () => {
  it("counts applied increments and replays apart, and does not blame the store for a client's 409", async () => {
    const m = createMetrics({ replicaId: "r1", redis: undefined });
    const answers = [
      { count: 1, replayed: false },
      { count: 1, replayed: true },
      conflict("session_expired", "gone"),
      new StoreUnavailableError(new Error("t"), "unknown"),
    ];
    const fake: Counter = {
      mode: "atomic",
      async increment() {
        const a = answers.shift()!;
        if (a instanceof Error) throw a;
        return a;
      },
      read: async () => 7,
    };
    const c = m.instrumentCounter(fake);
    const req = {} as Request;
    await c.increment(req, { by: 1, idempotencyKey: "k" });
    await c.increment(req, { by: 1, idempotencyKey: "k" });
    await expect(c.increment(req, { by: 1, idempotencyKey: undefined })).rejects.toThrow("gone");
    await expect(c.increment(req, { by: 1, idempotencyKey: undefined })).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(await c.read(req)).toBe(7);

    const s = await samples(m);
    expect(sum(s, "counter_increments_total")).toBe(1);
    expect(sum(s, "counter_idempotent_replays_total")).toBe(1);
    expect(sum(s, "session_store_operation_duration_seconds_count", { op: "counter_increment" })).toBe(4);
    expect(sum(s, "session_store_errors_total")).toBe(1);
    expect(sum(s, "session_store_errors_total", { op: "counter_increment", code: "store_timeout" })).toBe(1);
  });
});

describe("http", () => {
  it("labels requests with route templates, mount path included, even when a mounted handler fails", async () => {
    const m = createMetrics({ replicaId: "r1", redis: undefined });
    const app = express();
    app.use(m.http);
    const api = Router();
    api.get("/items/:id", (_req, res) => {
      res.send("ok");
    });
    api.post("/items/:id", () => {
      throw conflict("nope", "no");
    });
    app.use("/api", m.mounted("/api"), api);
    app.use((_req, res) => {
      res.status(404).end();
    });
    app.use(((err: { status: number }, _req, res, _next) => {
      res.status(err.status).end();
    }) as express.ErrorRequestHandler);
    const server = app.listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const [method, path] of [
        ["GET", "/api/items/1"],
        ["GET", "/api/items/2"],
        ["POST", "/api/items/3"],
        ["GET", "/random/4"],
      ] as const) {
        await (await fetch(base + path, { method })).arrayBuffer();
      }
      // finish fires after the response is handed to the socket; let it run.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      server.close();
    }
    const s = (await samples(m)).filter((x) => x.name === "http_requests_total");
    expect(s.map((x) => [x.labels.method, x.labels.route, x.labels.status, x.value])).toEqual([
      ["GET", "/api/items/:id", "200", 2],
      ["POST", "/api/items/:id", "409", 1],
      ["GET", "unmatched", "404", 1],
    ]);
    expect(s.every((x) => x.labels.replica === "r1")).toBe(true);
  });
});
