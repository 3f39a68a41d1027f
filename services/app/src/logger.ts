// One pino logger per process: JSON lines on stdout, secrets and cookies redacted.
import { pino, type Logger } from "pino";

const WARN = 40;

/**
 * With flushMs > 0, lines are buffered and written 4 KiB at a time, at the latest flushMs
 * after they were logged, and at once from warn up. One write(2) per request line cost
 * a replica a fifth of its throughput (loadtest/bench). The price: a SIGKILLed replica
 * loses at most the last flushMs of info lines; an exit, even on a crash, flushes.
 * flushMs = 0 writes every line synchronously.
 */
export function createLogger(opts: { level: string; replicaId: string; flushMs: number }): Logger {
  const buffered = opts.flushMs > 0;
  const dest = pino.destination({ dest: 1, sync: !buffered, minLength: buffered ? 4096 : 0 });
  const flush = () => {
    if (!(dest as { destroyed?: boolean }).destroyed) dest.flush();
  };
  if (buffered) setInterval(flush, opts.flushMs).unref();
  return pino(
    {
      level: opts.level,
      base: { replica: opts.replicaId },
      redact: {
        paths: [
          "req.headers.cookie",
          "req.headers.authorization",
          'res.headers["set-cookie"]',
          "*.password",
          "*.secret",
        ],
        censor: "[redacted]",
      },
      hooks: buffered
        ? {
            logMethod(args, method, level) {
              method.apply(this, args);
              if (level >= WARN) flush();
            },
          }
        : {},
    },
    dest,
  );
}
