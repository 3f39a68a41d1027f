// Test-only fault injection, off unless FAULT_SIGKILL_AFTER_INCREMENT is set, and refused by
// config.ts unless NODE_ENV=test. It lets the exactly-once tests kill a replica between its
// Redis write and its answer deterministically, which a SIGKILL from outside cannot aim at:
// after a keyed increment, or a keyed login's rotation, whose Idempotency-Key has the prefix.
import type { Config } from "./config.ts";

export type AfterApplied = (idempotencyKey: string | undefined) => void;

export function sigkillAfterIncrement(config: Config): AfterApplied | undefined {
  const prefix = config.faultSigkillAfterIncrement;
  if (prefix === undefined) return undefined;
  return (key) => {
    if (key === undefined || !key.startsWith(prefix)) return;
    // Synchronous write: the line must be on disk before the process vanishes.
    process.stderr.write(
      `${JSON.stringify({ level: 40, time: Date.now(), replica: config.replicaId, event: "fault_sigkill", key })}\n`,
    );
    process.kill(process.pid, "SIGKILL");
  };
}
