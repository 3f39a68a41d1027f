// The Swarm stack file generated from docker-compose.yml: what a rolling update, a replaced
// task and the published port depend on. Needs the compose CLI (not a Docker engine).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { composeCommand } from "../cluster/docker.ts";
import { configName, stackFile } from "./stack.ts";

type Svc = {
  environment: Record<string, string>;
  stop_grace_period: string;
  healthcheck?: { interval: string; timeout: string; retries: number; test?: unknown };
  ports?: { mode: string; published: number }[];
  deploy: {
    endpoint_mode: string;
    restart_policy: { condition: string };
    update_config?: { order: string; failure_action: string };
    resources: { limits: Record<string, unknown> };
  };
  read_only: boolean;
  cap_drop: string[];
};

const repoRoot = resolve(import.meta.dirname, "../..");
const seconds = (d: string) => Number(/^(\d+)s$/.exec(d)?.[1] ?? NaN);

describe.skipIf(!composeCommand())("Swarm stack file (infra/swarm/stack.ts)", () => {
  let dir: string;
  let services: Record<string, Svc>;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "stack-test-"));
    const limits = join(dir, "client-limits.conf");
    writeFileSync(limits, "");
    const env = { SECRETS_DIR: join(dir, "secrets"), APP_IMAGE: "app:test", NGINX_CLIENT_LIMITS: limits };
    const yml = await stackFile("t", { env, clientLimitsFile: limits, port: 18000, replicas: 3 });
    services = (parse(yml) as { services: Record<string, Svc> }).services;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("keeps a stopping app task serving until nginx has let go of it, within its stop grace period", () => {
    const app = services.app!;
    const delay = Number(app.environment.SHUTDOWN_DELAY_MS);
    const drain = Number(app.environment.SHUTDOWN_DRAIN_MS);
    // nginx's watcher polls DNS every second and a reload took up to 3 s on a loaded host.
    expect(delay).toBeGreaterThanOrEqual(5000);
    expect(seconds(app.stop_grace_period) * 1000).toBeGreaterThan(delay + drain);
  });

  it("gives every health check 30 s, since Swarm stops a task after three failed ones", () => {
    for (const name of ["redis", "app", "nginx"]) {
      const hc = services[name]!.healthcheck!;
      expect(seconds(hc.timeout), name).toBeGreaterThanOrEqual(30);
      expect(seconds(hc.interval), name).toBeLessThanOrEqual(2);
    }
  });

  it("checks the app with the image's own HEALTHCHECK (probe.sh), not a copy of it", () => {
    // No `test:` in docker-compose.yml or the stack: Docker takes the image's, and the stack sets timings only.
    expect(services.app!.healthcheck).not.toHaveProperty("test");
    const dockerfile = readFileSync(join(repoRoot, "services/app/Dockerfile"), "utf8");
    expect(dockerfile).toMatch(/^HEALTHCHECK .*CMD \["bash", "\/app\/probe\.sh", "\/healthz"\]$/m);
  });

  it("rolls the app start-first with rollback, uses DNS round-robin, publishes nginx in host mode", () => {
    const app = services.app!;
    expect(app.deploy.update_config).toMatchObject({ order: "start-first", failure_action: "rollback" });
    for (const s of Object.values(services)) {
      expect(s.deploy.endpoint_mode).toBe("dnsrr");
      expect(s.deploy.restart_policy.condition).toBe("any");
      expect(Object.keys(s.deploy.resources.limits).sort()).toEqual(["cpus", "memory", "pids"]);
      expect(s.read_only).toBe(true);
      expect(s.cap_drop).toEqual(["ALL"]);
    }
    expect(services.nginx!.ports).toEqual([{ target: 8080, published: 18000, protocol: "tcp", mode: "host" }]);
  });

  it("names every config within Swarm's 64 characters and distinct per stack, whatever the stack name", () => {
    const valid = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}[a-zA-Z0-9]$/;
    const names = ["esc-verify-concurrent-session-4yv4bo", "esc-verify-concurrent-session-9zq1xx", "esc"].map((stack) =>
      configName(stack, "nginx_client_limits", "limit_req_zone ..."),
    );
    for (const n of names) expect(n).toMatch(valid);
    expect(new Set(names).size).toBe(3);
    expect(names[2]).toBe(`esc_nginx_client_limits_${names[2]!.slice(-10)}`);
  });
});
