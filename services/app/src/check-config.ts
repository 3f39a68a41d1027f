// `make config`: parses the environment exactly as a replica would at start and prints the
// result (secrets masked) or every problem, with the same exit code (78) a replica uses.
import { ConfigError, loadConfig } from "./config.ts";

/** A Redis URL with any password in it masked (redis://user:pass@host). */
function withoutPassword(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "(set)";
  return u.href;
}

try {
  const c = loadConfig();
  const masked = {
    ...c,
    redis: {
      ...c.redis,
      url: withoutPassword(c.redis.url),
      password: c.redis.password ? "(set)" : "(none)",
      ...(c.redis.sentinel
        ? { sentinel: { ...c.redis.sentinel, password: c.redis.sentinel.password ? "(set)" : "(none)" } }
        : {}),
    },
    session: { ...c.session, secrets: c.session.secrets.map((_, i) => `(secret ${i + 1})`) },
  };
  process.stdout.write(`configuration is valid:\n${JSON.stringify(masked, null, 2)}\n`);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\nSee .env.example for every variable and its default.\n`);
  process.exitCode = 78;
}
