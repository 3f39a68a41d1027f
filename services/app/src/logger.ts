// One pino logger per process: JSON lines on stdout. No cookie, query string or body reaches a
// line: the request log's serializers (middleware/request-log.ts) keep only the request id, method,
// path and status, and an error keeps only its type, message, code and stack (errorFields). No path
// redaction on top: pino's redactor ran on every line and request (5% of a replica's CPU) and only
// ever found fields those serializers had already dropped.
import { pino, type Logger } from "pino";

const ERROR = 50;

/**
 * An error as logged: its type, message, code and stack. Never its other fields: ioredis puts the
 * command and its arguments (session ids, a session's contents, Idempotency-Keys) on every reply
 * error. A string stays as is.
 */
export function errorFields(err: unknown): unknown {
  if (typeof err === "string") return err;
  if (!(err instanceof Error)) return { type: typeof err, message: String(err) };
  const { code } = err as Error & { code?: unknown };
  return {
    type: err.constructor.name,
    message: err.message,
    ...(typeof code === "string" || typeof code === "number" ? { code } : {}),
    stack: err.stack,
  };
}
// Past this, a stdout that does not drain (a stuck log collector) costs dropped lines, not
// the replica's memory.
const MAX_BUFFER_BYTES = 16 * 1024 * 1024;

/**
 * With flushMs > 0, lines are buffered and written 4 KiB at a time, at the latest flushMs
 * after they were logged, and an error line at once. One write(2) per request line cost
 * a replica a fifth of its throughput (loadtest/bench). The price: a SIGKILLed replica
 * loses at most the last flushMs of lines below error; an exit, even on a crash, flushes.
 * Warn is not flushed at once: every 4xx access line is a warn, and a client sending bad
 * requests would otherwise buy itself a write(2) per request. flushMs = 0 writes every
 * line synchronously.
 */
export function createLogger(opts: { level: string; replicaId: string; flushMs: number }): Logger {
  const buffered = opts.flushMs > 0;
  const dest = pino.destination({
    dest: 1,
    sync: !buffered,
    minLength: buffered ? 4096 : 0,
    maxLength: buffered ? MAX_BUFFER_BYTES : 0,
  });
  const flush = () => {
    if (!(dest as { destroyed?: boolean }).destroyed) dest.flush();
  };
  if (buffered) setInterval(flush, opts.flushMs).unref();
  return pino(
    {
      level: opts.level,
      base: { replica: opts.replicaId },
      serializers: { err: errorFields },
      hooks: buffered
        ? {
            logMethod(args, method, level) {
              method.apply(this, args);
              if (level >= ERROR) flush();
            },
          }
        : {},
    },
    dest,
  );
}
