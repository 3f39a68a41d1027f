// One measured load run: autocannon (programmatic API) or wrk, with a warm-up, latency
// percentiles from every response's own time, and CPU time per request per component.
import { loadavg } from "node:os";
import autocannon from "autocannon";
import { run } from "../lib/process.ts";
import { percentile } from "../lib/stats.ts";
import { monotonicUs, type ProfileWindow } from "./cpu-profile.ts";
import { CpuMeter, type Component } from "./procs.ts";
import { setupClientFor, type BenchRequest, type VisitorMode } from "./visitors.ts";

export type LoadSpec = {
  url: string;
  request: BenchRequest;
  visitors: VisitorMode;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  /** Put a unique Idempotency-Key on every request (see visitors.ts). */
  uniqueIdempotencyKey?: boolean;
  /** Requests a second over all connections; unset: as fast as the server answers. */
  rate?: number;
};

export type LoadResult = {
  requests: number;
  seconds: number;
  rps: number;
  latencyMs: { p50: number; p97_5: number; p99: number; max: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  /** The machine's 1-minute load average as the run started: how busy the shared box was. */
  loadAverage1m: number;
  /** What the errors were (ECONNRESET, timeouts...), by code. */
  errorKinds: Record<string, number>;
  /** CPU milliseconds spent by each component during the measured part. */
  cpuMs: Record<string, number>;
  /** read+write system calls each component made during the measured part. */
  syscalls: Record<string, number>;
  /** When the measured part ran, on the clock a CPU profile's samples carry (cpu-profile.ts). */
  window: ProfileWindow;
};

/** A growable array of response times in ms (autocannon's own histogram has 1 ms buckets). */
class Latencies {
  #a = new Float64Array(1 << 16);
  #n = 0;
  push(ms: number): void {
    if (this.#n === this.#a.length) {
      const b = new Float64Array(this.#a.length * 2);
      b.set(this.#a);
      this.#a = b;
    }
    this.#a[this.#n++] = ms;
  }
  sorted(): Float64Array {
    return this.#a.slice(0, this.#n).sort();
  }
}

function options(spec: LoadSpec, seconds: number): autocannon.Options {
  const request: BenchRequest = spec.request;
  const setupClient = setupClientFor(spec.visitors, [request], { uniqueKeys: spec.uniqueIdempotencyKey ?? false });
  return {
    url: spec.url,
    connections: spec.connections,
    duration: seconds,
    // Every run stops by itself: by duration, and a hung connection after 10 s.
    timeout: 10,
    requests: [request],
    // nginx closes a client connection after keepalive_requests (1000) with Connection: close,
    // which autocannon ignores, so it may have written the next request already and get a
    // reset. A real client honours the header: reconnecting before nginx closes measures what
    // clients see. (autocannon leaves the response it answers by reconnecting out of its
    // counts: 1 in 900.)
    reconnectRate: 900,
    ...(setupClient ? { setupClient } : {}),
    ...(spec.rate ? { overallRate: spec.rate } : {}),
  };
}

async function autocannonRun(
  opts: autocannon.Options,
  lat?: Latencies,
  errorKinds?: Record<string, number>,
): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon(opts, (err, result) => (err ? reject(err) : resolve(result)));
    if (lat) instance.on("response", (_client, _status, _bytes, ms: number) => lat.push(ms));
    if (errorKinds) {
      instance.on("reqError", (err: NodeJS.ErrnoException) => {
        const kind = err.code ?? err.message;
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
      });
    }
  });
}

/** Hooks run right before and after the measured part (not around the warm-up). */
export type Around = { before?: () => Promise<void>; after?: () => Promise<void> };

export async function loadRun(spec: LoadSpec, components: Component[], around: Around = {}): Promise<LoadResult> {
  if (spec.warmupSeconds > 0) await autocannonRun(options(spec, spec.warmupSeconds));
  await around.before?.();
  const load1m = loadavg()[0]!;
  const meter = new CpuMeter(components);
  const lat = new Latencies();
  meter.start();
  const startUs = monotonicUs();
  const errorKinds: Record<string, number> = {};
  const r = await autocannonRun(options(spec, spec.seconds), lat, errorKinds);
  const endUs = monotonicUs();
  const cpu = meter.stop();
  await around.after?.();
  const sorted = lat.sorted();
  const statusCodes: Record<string, number> = {};
  for (const [code, v] of Object.entries(r.statusCodeStats ?? {}))
    statusCodes[code] = Number((v as { count: number }).count);
  const requests = sorted.length;
  return {
    requests,
    seconds: r.duration,
    rps: requests / r.duration,
    latencyMs: {
      p50: percentile(sorted, 50),
      p97_5: percentile(sorted, 97.5),
      p99: percentile(sorted, 99),
      max: sorted.at(-1) ?? Number.NaN,
    },
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    statusCodes,
    errorKinds,
    loadAverage1m: load1m,
    cpuMs: cpu,
    syscalls: { ...meter.syscalls },
    window: { startUs, endUs },
  };
}

export type WrkResult = { rps: number; latencyMs: { p50: number; p99: number }; errors: number } | { missing: string };

function toMs(v: string, unit: string): number {
  return Number(v) * ({ us: 0.001, ms: 1, s: 1000, m: 60_000 } as Record<string, number>)[unit]!;
}

/** wrk (C, 2 threads) against the same target: how far autocannon, one JS thread, is from the ceiling. */
export async function wrkRun(url: string, connections: number, seconds: number): Promise<WrkResult> {
  let stdout: string;
  try {
    stdout = await run("wrk", ["-t2", `-c${connections}`, `-d${seconds}s`, "--latency", "--timeout", "10s", url], {
      timeoutMs: (seconds + 20) * 1000,
    });
  } catch (err) {
    if (((err as Error).cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT")
      return { missing: "wrk is not installed (apt-get install wrk; make bench does it as root)" };
    throw err;
  }
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const lat = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(stdout);
    return m ? toMs(m[1]!, m[2]!) : Number.NaN;
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const errors = (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + non2xx;
  return { rps, latencyMs: { p50: lat("50"), p99: lat("99") }, errors };
}
