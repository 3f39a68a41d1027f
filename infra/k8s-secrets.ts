// Writes a random value into each file of deploy/k8s/base/secrets that is missing (the folder is
// git-ignored), for kustomize's secretGenerator to read; existing files are kept, so running it
// again changes nothing. `make k8s-secrets` runs it.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { K8S_DIR, SECRET_FILES } from "./k8s-validate.ts";

/** Writes the missing secret files in `dir` (0600); returns the names it wrote. */
export function writeK8sSecrets(dir = join(K8S_DIR, "base/secrets")): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const name of SECRET_FILES) {
    const file = join(dir, name);
    if (existsSync(file)) continue;
    // Hex: nothing an ACL rule or a Sentinel config line would split or quote.
    writeFileSync(file, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
    written.push(name);
  }
  return written;
}

if (import.meta.main) {
  const written = writeK8sSecrets();
  console.log(written.length === 0 ? "every secret file exists; none changed" : `wrote ${written.join(", ")}`);
}
