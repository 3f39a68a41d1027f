// What only the Compose cluster can show about its hardening (issue 14): nginx sits on a
// network that does not reach Redis, Redis's users are the ACL ones with the app's limited to
// its keys and commands, and no container's command line carries a secret. Needs a Docker
// engine; skipped without one unless REQUIRE_DOCKER=1, as compose-cluster.test.ts.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ComposeCluster } from "./compose-cluster.ts";
import { docker } from "./docker.ts";
import { composeTierRuns } from "../../test/compose-tier.ts";

type Inspect = {
  Id: string;
  Config: { Image: string; Labels: Record<string, string> };
  NetworkSettings: { Networks: Record<string, unknown> };
};

if (!composeTierRuns("the Docker Compose tier")) {
  describe.skip("Docker Compose hardening", () => it("needs a Docker engine", () => {}));
} else {
  describe("Docker Compose hardening: networks, Redis users, secrets", () => {
    let cluster: ComposeCluster;
    const containers = new Map<string, Inspect>();
    beforeAll(async () => {
      cluster = ComposeCluster.create({
        dir: mkdtempSync(join(tmpdir(), "compose-security-")),
        project: `esc-test-${randomBytes(4).toString("hex")}`,
        replicas: 1,
        port: 0,
      });
      await cluster.start();
      const ids = (await docker(["ps", "-q", "--filter", `label=com.docker.compose.project=${cluster.project}`]))
        .split("\n")
        .filter(Boolean);
      for (const c of JSON.parse(await docker(["inspect", ...ids])) as Inspect[])
        containers.set(c.Config.Labels["com.docker.compose.service"]!, c);
    }, 600_000);
    afterAll(async () => {
      await cluster?.stop();
    }, 120_000);

    /** redis-cli as the health user, run in the network namespace of `service`'s container. */
    const pingFrom = async (service: string): Promise<string> => {
      const redisImage = containers.get("redis")!.Config.Image;
      const pw = readFileSync(join(cluster.dir, "secrets", "redis_health_password"), "utf8").trim();
      // The password reaches the probe in its environment (-e NAME takes the value from ours).
      const args = [
        "run",
        "--rm",
        "--network",
        `container:${containers.get(service)!.Id}`,
        "-e",
        "REDISCLI_AUTH",
        redisImage,
        "redis-cli",
        "-h",
        "redis",
        "--user",
        "health",
        "PING",
      ];
      return docker(args, { timeoutMs: 60_000, env: { ...process.env, REDISCLI_AUTH: pw } }).then(
        (out) => out.trim(),
        (err: Error) => `failed: ${err.message}`,
      );
    };

    it("puts nginx on the edge network only, Redis on the internal store network only, the app on both", async () => {
      const nets = (service: string) =>
        Object.keys(containers.get(service)!.NetworkSettings.Networks)
          .map((n) => n.replace(/^.*_/, ""))
          .sort();
      expect(nets("nginx")).toEqual(["edge"]);
      expect(nets("redis")).toEqual(["store"]);
      expect(nets("app")).toEqual(["edge", "store"]);
      const store = JSON.parse(await docker(["network", "inspect", `${cluster.project}_store`])) as {
        Internal: boolean;
      }[];
      expect(store[0]!.Internal).toBe(true);
    });

    it("lets the app's network namespace reach Redis, and not nginx's", async () => {
      expect(await pingFrom("app")).toBe("PONG");
      const fromNginx = await pingFrom("nginx");
      expect(fromNginx).not.toBe("PONG");
      expect(fromNginx).toMatch(/Could not connect|not known|resolve|failed/i);
    });

    it("gives the app's Redis user only the app's keys and commands, and nothing to the default user", async () => {
      const redis = containers.get("redis")!.Id;
      const as = (user: string, ...args: string[]) =>
        docker(
          [
            "exec",
            redis,
            "sh",
            "-c",
            `read -r REDISCLI_AUTH < /run/secrets/redis_${user}_password; export REDISCLI_AUTH; exec ` +
              `redis-cli --user ${user} "$@"`,
            "sh",
            ...args,
          ],
          { timeoutMs: 10_000 },
        ).then(
          (o) => o.trim(),
          (e: Error) => e.message,
        );
      for (const cmd of [["FLUSHALL"], ["CONFIG", "GET", "maxmemory"], ["KEYS", "*"]])
        expect(await as("app", ...cmd), cmd.join(" ")).toMatch(/NOPERM/);
      expect(await as("app", "SET", "elsewhere", "1")).toMatch(/NOPERM/);
      expect(await as("health", "GET", "sess:x")).toMatch(/NOPERM/);
      expect(
        await docker(["exec", redis, "redis-cli", "PING"]).then(
          (o) => o.trim(),
          (e: Error) => e.message,
        ),
      ).toMatch(/NOAUTH/);
      expect((await cluster.redisCommand("CONFIG", "GET", "maxmemory-policy")).split("\n")[1]).toBe("noeviction");
      // The app runs as its user: a request through nginx counts.
      const r = await fetch(`${cluster.baseUrl()}/counter`);
      expect(await r.text()).toBe("count is 1");
    });

    it("mounts each container only the secrets it needs, and shows none in a command line", async () => {
      const secretsDir = join(cluster.dir, "secrets");
      const secrets = readdirSync(secretsDir).map((f) => readFileSync(join(secretsDir, f), "utf8").trim());
      for (const [service, c] of containers) {
        const top = await docker(["top", c.Id, "-eo", "pid,args"]);
        for (const s of secrets) expect(top, service).not.toContain(s);
      }
      const mounted = async (service: string) =>
        (
          await docker([
            "exec",
            containers.get(service)!.Id,
            "sh",
            "-c",
            'cd /run/secrets 2>/dev/null && for f in *; do echo "$f"; done',
          ]).catch(() => "")
        )
          .split("\n")
          .filter((l) => l && l !== "*")
          .sort();
      expect(await mounted("app")).toEqual(["redis_app_password", "session_secret"]);
      expect(await mounted("nginx")).toEqual([]);
    });
  });
}
