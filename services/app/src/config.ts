// Parses the environment once at boot into a frozen, typed config.
// Every problem is collected, so one failed start names every wrong key.
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname } from "node:os";
import express from "express";
import { z } from "zod";

const DEV_SECRET = "dev-only-secret-change-me-0123456789abcdef";

// Decimal digits only: z.coerce.number() would read " " as 0 (which turns a limit off), "0x10" as 16
// and "1e3" as 1000. Surrounding whitespace is trimmed; a blank value is unset (loadConfig).
const int = (min: number, max: number) => {
  const message = `must be a whole number from ${min} to ${max}, in decimal digits`;
  return z
    .string()
    .trim()
    .regex(/^\d+$/, message)
    .transform(Number)
    .pipe(z.number().min(min, message).max(max, message));
};

// An address to listen on: an IP address (IPv6 bare, as node's listen() takes it) or a host name.
// A name that does not resolve is the listener's error at start (server.ts).
const listenHost = z
  .string()
  .trim()
  .refine((h) => isIP(h) !== 0 || z.hostname().safeParse(h).success, {
    message: "an IP address or a host name (e.g. 0.0.0.0, ::, 127.0.0.1, localhost)",
  });

const schema = z
  .object({
    NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
    HOST: listenHost.default("0.0.0.0"),
    PORT: int(0, 65535).default(3000),
    OPS_HOST: listenHost.optional(),
    OPS_PORT: int(0, 65535).default(9091),
    PUBLIC_ORIGINS: z.string().optional(),
    REPLICA_ID: z
      .string()
      .regex(/^[\w.-]{1,64}$/, "letters, digits, '.', '_' or '-', at most 64")
      .optional(),
    LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    LOG_FLUSH_MS: int(0, 10_000).default(100),
    STORE: z.enum(["redis", "memory"]).default("redis"),
    COUNTER: z.enum(["atomic", "session"]).optional(),
    REDIS_URL: z
      .url({ protocol: /^rediss?$/, error: "must be a redis:// or rediss:// URL" })
      .default("redis://127.0.0.1:6379"),
    REDIS_USERNAME: z
      .string()
      .regex(/^[^\s>]{1,64}$/, "a Redis ACL user name: no spaces, at most 64 characters")
      .optional(),
    REDIS_PASSWORD: z.string().optional(),
    REDIS_CLUSTER_NODES: z.string().optional(),
    // host:port,... of the Sentinels; the app then asks them for the primary of REDIS_SENTINEL_NAME.
    REDIS_SENTINELS: z.string().optional(),
    REDIS_SENTINEL_NAME: z
      .string()
      .regex(/^[\w.-]{1,64}$/, "a Sentinel master name: letters, digits, '.', '_' or '-'")
      .optional(),
    REDIS_SENTINEL_USERNAME: z
      .string()
      .regex(/^[^\s>]{1,64}$/, "a Redis ACL user name: no spaces, at most 64 characters")
      .optional(),
    REDIS_SENTINEL_PASSWORD: z.string().optional(),
    REDIS_WAIT_REPLICAS: int(0, 16).default(0),
    REDIS_WAIT_TIMEOUT_MS: int(1, 60_000).default(250),
    REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000).default(500),
    REDIS_CONNECT_TIMEOUT_MS: int(50, 60_000).default(1000),
    SESSION_SECRET: z.string().optional(),
    SESSION_SECRETS: z.string().optional(),
    SESSION_COOKIE_NAME: z
      .string()
      .regex(/^[\w-]{1,64}$/, "a cookie token: letters, digits, '_' or '-'")
      .default("sid"),
    SESSION_IDLE_TIMEOUT_SECONDS: int(1, 31 * 86400).default(1800),
    SESSION_ABSOLUTE_TIMEOUT_SECONDS: int(1, 366 * 86400).default(86400),
    IDEMPOTENCY_TTL_SECONDS: int(1, 7 * 86400).default(3600),
    // At the cap, a new key makes the script scan the session's records: keep that scan small.
    IDEMPOTENCY_MAX_KEYS: int(0, 1000).default(100),
    NEW_SESSION_LIMIT: int(0, 1_000_000).default(60),
    NEW_SESSION_WINDOW_SECONDS: int(1, 86400).default(60),
    TRUST_PROXY: z
      .string()
      .trim()
      .superRefine((value, ctx) => {
        const problem = trustProxyProblem(value);
        if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
      })
      .default("1"),
    KEEP_ALIVE_TIMEOUT_MS: int(1000, 600_000).default(65_000),
    SHUTDOWN_DELAY_MS: int(0, 60_000).default(300),
    SHUTDOWN_DRAIN_MS: int(100, 120_000).default(10_000),
    FAULT_SIGKILL_AFTER_INCREMENT: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,64}$/, "an Idempotency-Key prefix")
      .optional(),
  })
  .superRefine((c, ctx) => {
    if (c.OPS_PORT !== 0 && c.OPS_PORT === c.PORT) {
      const message = "must differ from PORT: the operator endpoints need a listener of their own";
      ctx.addIssue({ code: "custom", path: ["OPS_PORT"], message });
    }
    for (const o of c.PUBLIC_ORIGINS === undefined ? [] : splitList(c.PUBLIC_ORIGINS)) {
      if (parseOrigin(o) === undefined) {
        const message = `"${o}" is not an origin: scheme://host[:port], without a path (e.g. https://counter.example)`;
        ctx.addIssue({ code: "custom", path: ["PUBLIC_ORIGINS"], message });
      }
    }
    for (const n of c.REDIS_CLUSTER_NODES === undefined ? [] : splitList(c.REDIS_CLUSTER_NODES)) {
      if (parseHostPort(n) === undefined) {
        const message = `"${n}" is not host:port (e.g. redis-1:6379; an IPv6 address in brackets: [::1]:6379)`;
        ctx.addIssue({ code: "custom", path: ["REDIS_CLUSTER_NODES"], message });
      }
    }
    if (c.STORE === "memory" && c.COUNTER === "atomic") {
      ctx.addIssue({
        code: "custom",
        path: ["COUNTER"],
        message: "atomic needs STORE=redis; use COUNTER=session with STORE=memory",
      });
    }
    for (const a of c.REDIS_SENTINELS === undefined ? [] : splitList(c.REDIS_SENTINELS)) {
      if (parseHostPort(a) === undefined) {
        const message = `"${a}" is not host:port (e.g. redis-sentinel-1:26379)`;
        ctx.addIssue({ code: "custom", path: ["REDIS_SENTINELS"], message });
      }
    }
    if (c.REDIS_SENTINELS !== undefined && c.REDIS_SENTINEL_NAME === undefined) {
      const message = "required with REDIS_SENTINELS: the master name the Sentinels monitor";
      ctx.addIssue({ code: "custom", path: ["REDIS_SENTINEL_NAME"], message });
    }
    for (const key of ["REDIS_SENTINEL_NAME", "REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD"] as const)
      if (c[key] !== undefined && c.REDIS_SENTINELS === undefined)
        ctx.addIssue({ code: "custom", path: [key], message: "set only with REDIS_SENTINELS (host:port,...)" });
    // WAIT runs inside the command's deadline: a longer WAIT would always end as a command timeout.
    if (c.REDIS_WAIT_REPLICAS > 0 && c.REDIS_WAIT_TIMEOUT_MS >= c.REDIS_COMMAND_TIMEOUT_MS) {
      const message =
        `must be below REDIS_COMMAND_TIMEOUT_MS (${c.REDIS_COMMAND_TIMEOUT_MS}), ` +
        "which bounds each write and its WAIT";
      ctx.addIssue({ code: "custom", path: ["REDIS_WAIT_TIMEOUT_MS"], message });
    }
    // A fault hook that kills the process must never reach a real deployment by accident.
    if (c.FAULT_SIGKILL_AFTER_INCREMENT !== undefined && c.NODE_ENV !== "test") {
      ctx.addIssue({
        code: "custom",
        path: ["FAULT_SIGKILL_AFTER_INCREMENT"],
        message: "a test-only fault hook; it is refused unless NODE_ENV=test",
      });
    }
  });

const splitList = (value: string) =>
  value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** "host:port" (IPv6 in brackets) as its parts, or undefined when it is not exactly that. */
export function parseHostPort(value: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[(.*)\]$/, "$1"), port };
}

/** `value` as a serialized origin ("https://host[:port]"), or undefined when it is not exactly one. */
function parseOrigin(value: string): string | undefined {
  try {
    const url = new URL(value);
    const web = url.protocol === "http:" || url.protocol === "https:";
    return web && url.origin === value.replace(/\/$/, "").toLowerCase() ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

export type Config = Readonly<{
  nodeEnv: "development" | "production" | "test";
  host: string;
  port: number;
  /** The operator listener (/healthz, /readyz, /metrics), which nginx never proxies to. */
  opsHost: string;
  opsPort: number;
  /** Origins allowed to change state cross-site checks; empty = the request's own origin. */
  publicOrigins: readonly string[];
  replicaId: string;
  logLevel: string;
  logFlushMs: number;
  store: "redis" | "memory";
  counter: "atomic" | "session";
  redis: Readonly<{
    url: string;
    username: string | undefined;
    password: string | undefined;
    /** Redis Cluster seed nodes (REDIS_CLUSTER_NODES); empty: one Redis at `url`. */
    clusterNodes: readonly Readonly<{ host: string; port: number }>[];
    /** Set: the primary is found through these Sentinels, and `url` is not used. */
    sentinel:
      | Readonly<{
          nodes: readonly { host: string; port: number }[];
          name: string;
          username: string | undefined;
          password: string | undefined;
        }>
      | undefined;
    /** Replicas that must acknowledge an increment, login or logout (WAIT) before it is answered; 0 = none. */
    waitReplicas: number;
    waitTimeoutMs: number;
    commandTimeoutMs: number;
    connectTimeoutMs: number;
  }>;
  session: Readonly<{
    secrets: readonly string[];
    usingDevSecret: boolean;
    cookieName: string;
    idleTimeoutSeconds: number;
    absoluteTimeoutSeconds: number;
  }>;
  idempotencyTtlSeconds: number;
  /** Live Idempotency-Key records one session may hold; 0 = no cap. */
  idempotencyMaxKeys: number;
  /** New sessions per client address per window; limit 0 = off. */
  newSessions: Readonly<{ limit: number; windowSeconds: number }>;
  trustProxy: string | number | boolean;
  keepAliveTimeoutMs: number;
  shutdownDelayMs: number;
  shutdownDrainMs: number;
  /**
   * Test-only (NODE_ENV=test): SIGKILL the replica right after applying a keyed increment whose key has this prefix.
   */
  faultSigkillAfterIncrement: string | undefined;
}>;

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

/** The variables that can also be read from a file, `X_FILE` (Docker and Kubernetes secrets). */
const FILE_KEYS = ["SESSION_SECRET", "SESSION_SECRETS", "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"];

/** Resolves `X_FILE` variables (Docker secrets) into `X`; both set at once is an error. */
function resolveFiles(env: Env, keys: string[], problems: string[]): Env {
  const out: Env = { ...env };
  for (const key of keys) {
    const file = env[`${key}_FILE`];
    if (file === undefined || file === "") continue;
    if (env[key] !== undefined && env[key] !== "") {
      problems.push(`${key}_FILE: set either ${key} or ${key}_FILE, not both`);
      continue;
    }
    try {
      const value = readFileSync(file, "utf8").trim();
      // Not "unset", as a blank variable is: an empty secret file is a mount gone wrong, and unset
      // would mean the development secret, or a Redis login without its password.
      if (value === "") problems.push(`${key}_FILE: ${file} is empty`);
      else out[key] = value;
    } catch (err) {
      problems.push(`${key}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  return out;
}

function parseTrustProxy(value: string): string | number | boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  if (/^\d+$/.test(value)) return Number(value);
  return value;
}

/**
 * Why Express would refuse `value` as its "trust proxy" setting, or undefined: Express itself is
 * asked (app.set compiles the setting and throws on anything it cannot read), so a replica exits
 * 78 naming the key instead of crashing on a TypeError after start.
 */
function trustProxyProblem(value: string): string | undefined {
  try {
    express().set("trust proxy", parseTrustProxy(value));
    return undefined;
  } catch (err) {
    return (
      `"${value}" is not a trust proxy setting (${(err as Error).message}): use true, false, a hop count, ` +
      "or comma-separated addresses, CIDR ranges or the names loopback, linklocal, uniquelocal"
    );
  }
}

export function loadConfig(rawEnv: Env = process.env): Config {
  const problems: string[] = [];
  // Empty and blank (whitespace-only) strings mean "unset", as in most .env tooling: the default applies.
  const cleaned: Env = Object.fromEntries(Object.entries(rawEnv).filter(([, v]) => v !== undefined && v.trim() !== ""));
  const env = resolveFiles(cleaned, FILE_KEYS, problems);
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${issue.path.join(".") || "(env)"}: ${issue.message}`);
  }

  const secretsRaw = env.SESSION_SECRETS ?? env.SESSION_SECRET;
  const secrets = (secretsRaw ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const nodeEnv = parsed.success ? parsed.data.NODE_ENV : env.NODE_ENV;
  if (env.SESSION_SECRETS !== undefined && env.SESSION_SECRET !== undefined) {
    problems.push("SESSION_SECRETS: set either SESSION_SECRET or SESSION_SECRETS (new,old), not both");
  } else if (secretsRaw !== undefined && secrets.length === 0) {
    // Set, yet nothing in it: never fall back to the development secret as if it were unset.
    const key = env.SESSION_SECRETS !== undefined ? "SESSION_SECRETS" : "SESSION_SECRET";
    const file = env[`${key}_FILE`];
    problems.push(`${file ? `${key}_FILE: ${file}` : `${key}:`} holds no secret, only commas and spaces`);
  }
  // One topology at a time: a replica that silently picked one of two would split the sessions.
  if (env.REDIS_CLUSTER_NODES !== undefined) {
    for (const other of ["REDIS_URL", "REDIS_SENTINELS"])
      if (env[other] !== undefined)
        problems.push(`REDIS_CLUSTER_NODES: set either REDIS_CLUSTER_NODES (Redis Cluster) or ${other}, not both`);
    // ioredis Cluster would send the key-less WAIT to a random node, not the one that ran the increment.
    if (Number(env.REDIS_WAIT_REPLICAS ?? 0) > 0)
      problems.push("REDIS_WAIT_REPLICAS: not supported with REDIS_CLUSTER_NODES (Redis Cluster); leave it unset or 0");
  }
  // An explicit REDIS_URL next to Sentinels would be silently ignored.
  if (env.REDIS_URL !== undefined && env.REDIS_SENTINELS !== undefined) {
    problems.push("REDIS_URL: set either REDIS_URL (one server) or REDIS_SENTINELS (Sentinel), not both");
  }
  if (nodeEnv === "production") {
    if (secretsRaw === undefined) problems.push("SESSION_SECRET: required when NODE_ENV=production");
    // It is public (in this repository): anyone could sign a cookie with it.
    if (secrets.includes(DEV_SECRET))
      problems.push("SESSION_SECRET: the development secret, which is public, cannot sign cookies in production");
    for (const [i, s] of secrets.entries()) {
      if (Buffer.byteLength(s) < 32)
        problems.push(
          `SESSION_SECRET: secret #${i + 1} is ${Buffer.byteLength(s)} bytes; at least 32 are required in production`,
        );
    }
  }

  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  const c = parsed.data;
  return Object.freeze({
    nodeEnv: c.NODE_ENV,
    host: c.HOST,
    port: c.PORT,
    opsHost: c.OPS_HOST ?? c.HOST,
    opsPort: c.OPS_PORT,
    publicOrigins: Object.freeze(splitList(c.PUBLIC_ORIGINS ?? "").map((o) => parseOrigin(o)!)),
    replicaId: c.REPLICA_ID ?? hostname(),
    logLevel: c.LOG_LEVEL,
    logFlushMs: c.LOG_FLUSH_MS,
    store: c.STORE,
    counter: c.COUNTER ?? (c.STORE === "redis" ? "atomic" : "session"),
    redis: Object.freeze({
      url: c.REDIS_URL,
      username: c.REDIS_USERNAME,
      password: c.REDIS_PASSWORD,
      clusterNodes: Object.freeze(splitList(c.REDIS_CLUSTER_NODES ?? "").map((n) => Object.freeze(parseHostPort(n)!))),
      sentinel:
        c.REDIS_SENTINELS === undefined
          ? undefined
          : Object.freeze({
              nodes: Object.freeze(splitList(c.REDIS_SENTINELS).map((a) => parseHostPort(a)!)),
              name: c.REDIS_SENTINEL_NAME!,
              username: c.REDIS_SENTINEL_USERNAME,
              password: c.REDIS_SENTINEL_PASSWORD,
            }),
      waitReplicas: c.REDIS_WAIT_REPLICAS,
      waitTimeoutMs: c.REDIS_WAIT_TIMEOUT_MS,
      commandTimeoutMs: c.REDIS_COMMAND_TIMEOUT_MS,
      connectTimeoutMs: c.REDIS_CONNECT_TIMEOUT_MS,
    }),
    session: Object.freeze({
      secrets: Object.freeze(secrets.length > 0 ? secrets : [DEV_SECRET]),
      usingDevSecret: secrets.length === 0,
      cookieName: c.SESSION_COOKIE_NAME,
      idleTimeoutSeconds: c.SESSION_IDLE_TIMEOUT_SECONDS,
      absoluteTimeoutSeconds: c.SESSION_ABSOLUTE_TIMEOUT_SECONDS,
    }),
    idempotencyTtlSeconds: c.IDEMPOTENCY_TTL_SECONDS,
    idempotencyMaxKeys: c.IDEMPOTENCY_MAX_KEYS,
    newSessions: Object.freeze({ limit: c.NEW_SESSION_LIMIT, windowSeconds: c.NEW_SESSION_WINDOW_SECONDS }),
    trustProxy: parseTrustProxy(c.TRUST_PROXY),
    keepAliveTimeoutMs: c.KEEP_ALIVE_TIMEOUT_MS,
    shutdownDelayMs: c.SHUTDOWN_DELAY_MS,
    shutdownDrainMs: c.SHUTDOWN_DRAIN_MS,
    faultSigkillAfterIncrement: c.FAULT_SIGKILL_AFTER_INCREMENT,
  });
}

/** Every variable loadConfig reads (with the `X_FILE` variants): deploy/k8s is checked against it. */
export const ENV_KEYS: readonly string[] = Object.freeze([
  ...Object.keys(schema.shape),
  ...FILE_KEYS.map((k) => `${k}_FILE`),
]);
