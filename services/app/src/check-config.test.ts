// `make config` (check-config.ts) as a process: what it prints of a valid configuration.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const script = fileURLToPath(new URL("./check-config.ts", import.meta.url));

describe("make config", () => {
  it("prints the configuration with every secret masked, a password inside REDIS_URL included", async () => {
    const env = {
      PATH: process.env.PATH,
      REDIS_URL: "redis://app:url-secret-1f@redis.internal:6379",
      REDIS_PASSWORD: "password-secret-2c",
      SESSION_SECRET: "session-secret-3d".repeat(2),
    };
    const { stdout } = await promisify(execFile)(process.execPath, [script], { env });
    expect(stdout).toMatch(/^configuration is valid:/);
    expect(stdout).toContain('"url": "redis://app:(set)@redis.internal:6379"');
    for (const secret of ["url-secret-1f", "password-secret-2c", "session-secret-3d"])
      expect(stdout).not.toContain(secret);
  });
});
