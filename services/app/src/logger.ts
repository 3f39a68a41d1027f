// One pino logger per process: JSON lines on stdout, secrets and cookies redacted.
import { pino, type Logger } from "pino";

export function createLogger(opts: { level: string; replicaId: string }): Logger {
  return pino({
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
  });
}
