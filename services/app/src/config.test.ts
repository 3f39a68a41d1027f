import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseEnv } from "node:util";
import express from "express";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.ts";

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
};

describe("loadConfig", () => {
  it("reads REDIS_CLUSTER_NODES as seed nodes and lists every entry that is not host:port", () => {
    expect(loadConfig({ REDIS_CLUSTER_NODES: "redis-1:6379, 10.0.0.2:7000,[::1]:7001" }).redis.clusterNodes).toEqual([
      { host: "redis-1", port: 6379 },
      { host: "10.0.0.2", port: 7000 },
      { host: "::1", port: 7001 },
    ]);
    expect(loadConfig({}).redis.clusterNodes).toEqual([]);
    const problems = problemsOf({ REDIS_CLUSTER_NODES: "redis-1,redis-2:0,redis-3:6379" });
    expect(problems.filter((p) => p.startsWith("REDIS_CLUSTER_NODES"))).toHaveLength(2);
    expect(problems.join("\n")).toContain('"redis-1" is not host:port');
  });

  it("refuses two Redis topologies at once, naming every clash", () => {
    const problems = problemsOf({
      REDIS_CLUSTER_NODES: "redis-1:6379",
      REDIS_URL: "redis://redis:6379",
      REDIS_SENTINELS: "s1:26379",
      REDIS_SENTINEL_NAME: "sessions",
      REDIS_WAIT_REPLICAS: "1",
    });
    expect(problems).toEqual([
      "REDIS_CLUSTER_NODES: set either REDIS_CLUSTER_NODES (Redis Cluster) or REDIS_URL, not both",
      "REDIS_CLUSTER_NODES: set either REDIS_CLUSTER_NODES (Redis Cluster) or REDIS_SENTINELS, not both",
      "REDIS_WAIT_REPLICAS: not supported with REDIS_CLUSTER_NODES (Redis Cluster); leave it unset or 0",
      "REDIS_URL: set either REDIS_URL (one server) or REDIS_SENTINELS (Sentinel), not both",
    ]);
    expect(problemsOf({ REDIS_CLUSTER_NODES: "redis-1:6379", REDIS_WAIT_REPLICAS: "0" })).toEqual([]);
  });

  it("applies documented defaults and freezes the result", () => {
    const c = loadConfig({});
    expect(c.port).toBe(3000);
    expect(c.store).toBe("redis");
    expect(c.counter).toBe("atomic");
    expect(c.session.usingDevSecret).toBe(true);
    expect(c.keepAliveTimeoutMs).toBeGreaterThan(60_000);
    expect(Object.isFrozen(c) && Object.isFrozen(c.session)).toBe(true);
  });

  it("puts the operator listener on OPS_PORT (9091) at HOST unless OPS_HOST says otherwise, never on PORT", () => {
    expect(loadConfig({ HOST: "127.0.0.1" })).toMatchObject({ opsHost: "127.0.0.1", opsPort: 9091 });
    expect(loadConfig({ OPS_HOST: "::1", OPS_PORT: "0", PORT: "0" })).toMatchObject({
      opsHost: "::1",
      opsPort: 0,
      port: 0,
    });
    expect(problemsOf({ PORT: "9000", OPS_PORT: "9000" })).toEqual([
      expect.stringMatching(/^OPS_PORT: must differ from PORT/),
    ]);
  });

  it("trims HOST and OPS_HOST and takes an IP address or a host name, naming anything else", () => {
    expect(loadConfig({ HOST: " 127.0.0.1 ", OPS_HOST: "\tlocalhost" })).toMatchObject({
      host: "127.0.0.1",
      opsHost: "localhost",
    });
    expect(loadConfig({ HOST: "fe80::1%eth0" }).host).toBe("fe80::1%eth0");
    expect(problemsOf({ HOST: "x y", OPS_HOST: "[::1]" }).map((p) => p.split(":")[0])).toEqual(["HOST", "OPS_HOST"]);
  });

  it("reads PUBLIC_ORIGINS as a list of origins and names any entry that is not one", () => {
    expect(loadConfig({}).publicOrigins).toEqual([]);
    expect(loadConfig({ PUBLIC_ORIGINS: "https://counter.example, http://127.0.0.1:8080/" }).publicOrigins).toEqual([
      "https://counter.example",
      "http://127.0.0.1:8080",
    ]);
    expect(problemsOf({ PUBLIC_ORIGINS: "https://ok.example,counter.example,https://x.example/path" })).toEqual([
      expect.stringMatching(/^PUBLIC_ORIGINS: "counter.example" is not an origin/),
      expect.stringMatching(/^PUBLIC_ORIGINS: "https:\/\/x.example\/path" is not an origin/),
    ]);
  });

  it("defaults the counter to the seed's session counter with the memory store", () => {
    expect(loadConfig({ STORE: "memory" }).counter).toBe("session");
  });

  it("lists every wrong key at once", () => {
    const problems = problemsOf({
      PORT: "http",
      STORE: "mongo",
      REDIS_URL: "http://x",
      LOG_LEVEL: "loud",
      LOG_FLUSH_MS: "-1",
      SHUTDOWN_DRAIN_MS: "-1",
    });
    const keys = problems.map((p) => p.split(":")[0]);
    expect(keys).toEqual(
      expect.arrayContaining(["PORT", "STORE", "REDIS_URL", "LOG_LEVEL", "LOG_FLUSH_MS", "SHUTDOWN_DRAIN_MS"]),
    );
    expect(problems).toHaveLength(6);
  });

  it("refuses production without a secret, or with a short one", () => {
    expect(problemsOf({ NODE_ENV: "production" })).toEqual(["SESSION_SECRET: required when NODE_ENV=production"]);
    expect(problemsOf({ NODE_ENV: "production", SESSION_SECRET: "short" })[0]).toMatch(/at least 32/);
    expect(problemsOf({ NODE_ENV: "production", SESSION_SECRET: "x".repeat(32) })).toEqual([]);
    expect(
      problemsOf({ NODE_ENV: "production", SESSION_SECRETS: `${"n".repeat(32)},${loadConfig({}).session.secrets[0]}` }),
    ).toEqual(["SESSION_SECRET: the development secret, which is public, cannot sign cookies in production"]);
  });

  it("reads rotated secrets, newest first, and *_FILE variants", () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-"));
    writeFileSync(join(dir, "s"), `${"n".repeat(32)},${"o".repeat(32)}\n`);
    const c = loadConfig({ NODE_ENV: "production", SESSION_SECRETS_FILE: join(dir, "s") });
    expect(c.session.secrets).toEqual(["n".repeat(32), "o".repeat(32)]);
    expect(problemsOf({ SESSION_SECRET_FILE: join(dir, "missing") })[0]).toMatch(/^SESSION_SECRET_FILE: cannot read/);
  });

  it("refuses a *_FILE that holds nothing (a secret mount that came up empty), naming the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-"));
    writeFileSync(join(dir, "blank"), " \n");
    for (const key of ["SESSION_SECRET", "REDIS_PASSWORD"])
      expect(problemsOf({ [`${key}_FILE`]: join(dir, "blank") })).toEqual([
        `${key}_FILE: ${join(dir, "blank")} is empty`,
      ]);
  });

  it("refuses secrets that are only separators, in every environment, from a variable or a file", () => {
    const dir = mkdtempSync(join(tmpdir(), "cfg-"));
    writeFileSync(join(dir, "commas"), ", ,\n");
    expect(problemsOf({ SESSION_SECRETS: "," })).toEqual(["SESSION_SECRETS: holds no secret, only commas and spaces"]);
    expect(problemsOf({ SESSION_SECRET_FILE: join(dir, "commas") })).toEqual([
      `SESSION_SECRET_FILE: ${join(dir, "commas")} holds no secret, only commas and spaces`,
    ]);
  });

  it("rejects the atomic counter without Redis", () => {
    expect(problemsOf({ STORE: "memory", COUNTER: "atomic" })[0]).toMatch(/^COUNTER:/);
  });

  it("refuses the test-only fault hook outside NODE_ENV=test", () => {
    expect(
      problemsOf({ NODE_ENV: "production", SESSION_SECRET: "x".repeat(32), FAULT_SIGKILL_AFTER_INCREMENT: "k-" })[0],
    ).toMatch(/^FAULT_SIGKILL_AFTER_INCREMENT: .*NODE_ENV=test/);
    expect(problemsOf({ FAULT_SIGKILL_AFTER_INCREMENT: "k-" })).toHaveLength(1);
    expect(loadConfig({ NODE_ENV: "test", FAULT_SIGKILL_AFTER_INCREMENT: "k-" }).faultSigkillAfterIncrement).toBe("k-");
    expect(loadConfig({}).faultSigkillAfterIncrement).toBeUndefined();
  });

  it("reads Sentinels and the WAIT knob, and names every wrong Redis topology key at once", () => {
    const c = loadConfig({
      REDIS_SENTINELS: "10.0.0.1:26379, sentinel-2:26380,[::1]:26381",
      REDIS_SENTINEL_NAME: "sessions",
      REDIS_WAIT_REPLICAS: "1",
    });
    expect(c.redis.sentinel?.nodes).toEqual([
      { host: "10.0.0.1", port: 26379 },
      { host: "sentinel-2", port: 26380 },
      { host: "::1", port: 26381 },
    ]);
    expect(c.redis).toMatchObject({ waitReplicas: 1, waitTimeoutMs: 250 });
    expect(loadConfig({}).redis).toMatchObject({ sentinel: undefined, waitReplicas: 0 });
    const problems = problemsOf({
      REDIS_URL: "redis://127.0.0.1:6379",
      REDIS_SENTINELS: "nohost,127.0.0.1:70000",
      REDIS_WAIT_REPLICAS: "1",
      REDIS_WAIT_TIMEOUT_MS: "500",
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^REDIS_URL: set either REDIS_URL .* or REDIS_SENTINELS/),
        expect.stringMatching(/^REDIS_SENTINELS: "nohost" is not host:port/),
        expect.stringMatching(/^REDIS_SENTINELS: "127.0.0.1:70000" is not host:port/),
        expect.stringMatching(/^REDIS_SENTINEL_NAME: required with REDIS_SENTINELS/),
        expect.stringMatching(/^REDIS_WAIT_TIMEOUT_MS: must be below REDIS_COMMAND_TIMEOUT_MS/),
      ]),
    );
    expect(problemsOf({ REDIS_SENTINEL_NAME: "sessions", REDIS_SENTINEL_PASSWORD: "pw" })).toEqual([
      "REDIS_SENTINEL_NAME: set only with REDIS_SENTINELS (host:port,...)",
      "REDIS_SENTINEL_PASSWORD: set only with REDIS_SENTINELS (host:port,...)",
    ]);
  });

  it("reads a blank (whitespace-only) value as unset, so the default applies, not 0", () => {
    const c = loadConfig({ NEW_SESSION_LIMIT: " ", IDEMPOTENCY_MAX_KEYS: "\t", PORT: "  ", TRUST_PROXY: " " });
    expect(c).toMatchObject({
      port: 3000,
      idempotencyMaxKeys: 100,
      newSessions: { limit: 60 },
      trustProxy: 1,
    });
    expect(loadConfig({ PORT: " 3001 " }).port).toBe(3001);
  });

  it("takes integers in plain decimal digits only, naming every key written otherwise", () => {
    const problems = problemsOf({
      PORT: "0x10",
      OPS_PORT: "1e3",
      NEW_SESSION_LIMIT: "+5",
      IDEMPOTENCY_MAX_KEYS: "1.0",
      LOG_FLUSH_MS: "-1",
      SHUTDOWN_DRAIN_MS: "1_000",
    });
    expect(problems).toEqual([
      "PORT: must be a whole number from 0 to 65535, in decimal digits",
      "OPS_PORT: must be a whole number from 0 to 65535, in decimal digits",
      "LOG_FLUSH_MS: must be a whole number from 0 to 10000, in decimal digits",
      "IDEMPOTENCY_MAX_KEYS: must be a whole number from 0 to 1000, in decimal digits",
      "NEW_SESSION_LIMIT: must be a whole number from 0 to 1000000, in decimal digits",
      "SHUTDOWN_DRAIN_MS: must be a whole number from 100 to 120000, in decimal digits",
    ]);
    expect(problemsOf({ IDEMPOTENCY_MAX_KEYS: "1001" })).toEqual([
      "IDEMPOTENCY_MAX_KEYS: must be a whole number from 0 to 1000, in decimal digits",
    ]);
    expect(loadConfig({ NEW_SESSION_LIMIT: "007", IDEMPOTENCY_MAX_KEYS: "0" })).toMatchObject({
      newSessions: { limit: 7 },
      idempotencyMaxKeys: 0,
    });
  });

  it.each([
    ["1", 1],
    ["0", 0],
    ["true", true],
    ["false", false],
    ["loopback", "loopback"],
    ["loopback, 10.0.0.0/8 ,fd00::/8", "loopback, 10.0.0.0/8 ,fd00::/8"],
    ["172.16.0.1/255.240.0.0", "172.16.0.1/255.240.0.0"],
  ])("takes TRUST_PROXY=%s as Express's trust proxy setting", (value, setting) => {
    const c = loadConfig({ TRUST_PROXY: value });
    expect(c.trustProxy).toEqual(setting);
    expect(() => express().set("trust proxy", c.trustProxy)).not.toThrow();
  });

  it.each(["banana", "loopback,", "10.0.0.0/33", "-1", "TRUE", "localhost"])(
    "refuses TRUST_PROXY=%s, which Express would throw on, and names it with the other wrong keys",
    (value) => {
      expect(() => express().set("trust proxy", value)).toThrow(TypeError);
      const problems = problemsOf({ TRUST_PROXY: value, LOG_LEVEL: "loud" });
      expect(problems.map((p) => p.split(":")[0])).toEqual(["LOG_LEVEL", "TRUST_PROXY"]);
      expect(problems[1]).toContain(`"${value}" is not a trust proxy setting`);
    },
  );

  it("accepts every value .env.example sets", () => {
    const example = parseEnv(readFileSync(resolve(import.meta.dirname, "../../../.env.example"), "utf8"));
    expect(problemsOf(example as Record<string, string>)).toEqual([]);
  });
});
