// The ha overlay's Redis set, run for real in containers the way its StatefulSet runs it: per pod
// a holder of the network namespace with the pod's DNS name (redis-N.redis), and beside it a
// Redis and a Sentinel started by deploy/k8s/overlays/ha/redis's scripts, as a non-root user on a
// read-only root filesystem. Kubernetes itself is not here; the scripts and Sentinel's failover are.
// Then dev's one Redis, from its rendered StatefulSet: its ACL users, its probe, its command line.
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, dockerAvailable } from "../infra/cluster/docker.ts";
import { resolveBaseImages } from "../infra/images/images.ts";
import { K8S_DIR, REDIS_USERS, renderAll, type K8sObject } from "../infra/k8s-validate.ts";

const PODS = 3;

type Container = {
  name: string;
  command: string[];
  readinessProbe: { exec: { command: string[] } };
  volumeMounts: { name: string; mountPath: string }[];
};
type PodOwner = {
  spec: {
    template: {
      spec: {
        securityContext: { runAsUser: number; runAsGroup: number };
        containers: Container[];
        volumes: {
          name: string;
          configMap?: { name: string };
          projected?: { sources: { secret?: { name: string } }[] };
        }[];
      };
    };
  };
};

if (!dockerAvailable()) {
  if (process.env.REQUIRE_DOCKER === "1") throw new Error("REQUIRE_DOCKER=1 but there is no Docker engine");
  console.log(
    "skipped: no Docker engine (the Sentinel scripts run in containers; REQUIRE_DOCKER=1 makes this a failure)",
  );
  describe.skip("ha overlay's Redis Sentinel set", () => it("needs a Docker engine", () => {}));
} else {
  describe("ha overlay's Redis Sentinel set", { timeout: 120_000 }, () => {
    // A Compose-project label, so CI's clean-up of esc-test-* removes what a killed run left.
    const project = `esc-test-k8s-${randomBytes(4).toString("hex")}`;
    const dir = mkdtempSync(join(tmpdir(), "k8s-sentinel-"));
    // One password per ACL user, as `make k8s-secrets` writes them.
    const passwords = Object.fromEntries(REDIS_USERS.map((u) => [u, randomBytes(16).toString("hex")])) as Record<
      (typeof REDIS_USERS)[number],
      string
    >;
    const started: string[] = [];
    // The env the StatefulSet gives both containers (SERVICE, SENTINEL_NAME, PEERS).
    const manifest = readFileSync(join(K8S_DIR, "overlays/ha/redis-sentinel.yaml"), "utf8");
    const statefulSet = parse(manifest.split(/^---$/m)[0]!) as {
      spec: {
        template: {
          spec: {
            containers: {
              name: string;
              env: { name: string; value: string }[];
              readinessProbe: { exec: { command: string[] } };
            }[];
          };
        };
      };
    };
    const env = statefulSet.spec.template.spec.containers[0]!.env;
    const sentinelName = env.find((e) => e.name === "SENTINEL_NAME")!.value;
    let image = "";

    const pod = (i: number) => `${project}-pod${i}`;
    /** redis-cli inside pod i's network namespace, as `user` (none: anonymous). */
    const cli = async (i: number, args: string[], port = 6379, user: keyof typeof passwords | "" = "admin") =>
      (
        await docker(
          [
            "exec",
            ...(user === "" ? [] : ["--env", `REDISCLI_AUTH=${passwords[user]}`]),
            pod(i),
            "redis-cli",
            "-p",
            String(port),
            ...(user === "" ? [] : ["--user", user]),
            ...args,
          ],
          { timeoutMs: 10_000 },
        )
      ).trim();
    const primary = async () =>
      (await cli(0, ["SENTINEL", "get-master-addr-by-name", sentinelName], 26379)).split("\n")[0];
    /** Polls `check` every 500 ms until it returns true, at most `seconds`. */
    const until = async (what: string, seconds: number, check: () => Promise<boolean>) => {
      for (let i = 0; i < seconds * 2; i++) {
        if (await check().catch(() => false)) return;
        await new Promise((r) => setTimeout(r, 500));
      }
      throw new Error(`not within ${seconds} s: ${what}`);
    };
    const container = async (name: string, args: string[]) => {
      started.push(name);
      await docker(["run", "-d", "--name", name, "--label", `com.docker.compose.project=${project}`, ...args]);
    };
    const startProcess = (i: number, role: "redis" | "sentinel") =>
      container(`${pod(i)}-${role}`, [
        `--network=container:${pod(i)}`,
        "--user=999:1000",
        "--read-only",
        "--tmpfs=/tmp:uid=999,gid=1000",
        ...(role === "redis" ? ["--tmpfs=/data:uid=999,gid=1000"] : []),
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges:true",
        `--env=HOSTNAME=redis-${i}`,
        ...env.map((e) => `--env=${e.name}=${e.value}`),
        `--volume=${join(K8S_DIR, "overlays/ha/redis")}:/scripts:ro`,
        // base's ConfigMap redis-acl, and the passwords the StatefulSet gives this container.
        `--volume=${join(K8S_DIR, "base/redis")}:/etc/redis-acl:ro`,
        ...REDIS_USERS.filter((u) => role === "redis" || u !== "replication").map(
          (u) => `--volume=${join(dir, `redis_${u}_password`)}:/run/secrets/redis_${u}_password:ro`,
        ),
        image,
        "sh",
        `/scripts/start-${role}.sh`,
      ]);

    beforeAll(async () => {
      image = (await resolveBaseImages()).REDIS_IMAGE;
      for (const [user, pw] of Object.entries(passwords)) {
        writeFileSync(join(dir, `redis_${user}_password`), `${pw}\n`);
        chmodSync(join(dir, `redis_${user}_password`), 0o644);
      }
      await docker(["network", "create", "--label", `com.docker.compose.project=${project}`, project]);
      // In StatefulSet order: a pod starts once the one before it answers.
      for (let i = 0; i < PODS; i++) {
        // The pod's network namespace and its name in the headless Service.
        await container(pod(i), [
          `--network=${project}`,
          `--network-alias=redis-${i}.redis`,
          "--user=999:1000",
          "--tmpfs=/tmp:uid=999,gid=1000",
          image,
          // Any long-lived process does; the image may have nothing but redis-server and sh.
          "redis-server",
          "--port",
          "0",
          "--unixsocket",
          "/tmp/holder.sock",
          "--save",
          "",
        ]);
        await startProcess(i, "redis");
        await startProcess(i, "sentinel");
        await until(`redis-${i} and its Sentinel answer`, 20, async () => {
          return (await cli(i, ["PING"])) === "PONG" && (await cli(i, ["PING"], 26379)) === "PONG";
        });
      }
    }, 120_000);

    afterAll(async () => {
      const logs = process.env.K8S_SENTINEL_LOGS === "1";
      for (const name of started.reverse()) {
        if (logs) console.log(name, await docker(["logs", name]).catch(String));
        await docker(["rm", "-f", "-v", name]).catch(() => {});
      }
      await docker(["network", "rm", project]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }, 60_000);

    it("starts pod 0 as the primary with two replicas, watched by three Sentinels", async () => {
      await until("the set is complete", 30, async () => {
        const quorum = await cli(0, ["SENTINEL", "CKQUORUM", sentinelName], 26379);
        const replicas = await cli(0, ["SENTINEL", "REPLICAS", sentinelName], 26379);
        return quorum.startsWith("OK 3 usable Sentinels") && (replicas.match(/^flags$/gm) ?? []).length === 2;
      });
      expect(await primary()).toBe("redis-0.redis");
      expect((await cli(0, ["ROLE"])).split("\n")[0]).toBe("master");
      for (const i of [1, 2])
        expect((await cli(i, ["ROLE"])).split("\n").slice(0, 2)).toEqual(["slave", "redis-0.redis"]);
    });

    it("refuses anonymous clients and lets each ACL user do only its part, on Redis and Sentinel", async () => {
      // The default user is off: without AUTH nothing answers but NOAUTH, on Redis and on Sentinel.
      expect(await cli(0, ["PING"], 6379, "")).toMatch(/^NOAUTH/);
      expect(await cli(0, ["PING"], 26379, "")).toMatch(/^NOAUTH/);
      // The probes' user: PING only.
      expect(await cli(1, ["PING"], 6379, "health")).toBe("PONG");
      expect(await cli(1, ["PING"], 26379, "health")).toBe("PONG");
      expect(await cli(0, ["GET", "sess:x"], 6379, "health")).toMatch(/^NOPERM/);
      // The app: its keys and commands on the primary, the primary's address from a Sentinel, no more.
      expect(await cli(0, ["SET", "sess:acl", "1"], 6379, "app")).toBe("OK");
      expect(await cli(0, ["SET", "other:acl", "1"], 6379, "app")).toMatch(/^NOPERM/);
      expect(await cli(0, ["FLUSHALL"], 6379, "app")).toMatch(/^NOPERM/);
      expect(await cli(0, ["CONFIG", "GET", "masterauth"], 6379, "app")).toMatch(/^NOPERM/);
      const addr = await cli(1, ["SENTINEL", "get-master-addr-by-name", sentinelName], 26379, "app");
      expect(addr.split("\n")[0]).toBe("redis-0.redis");
      expect(await cli(1, ["SENTINEL", "FAILOVER", sentinelName], 26379, "app")).toMatch(/^NOPERM/);
      // Replication and the Sentinels' logins (replication, sentinel) reach only their commands.
      expect(await cli(0, ["GET", "sess:acl"], 6379, "replication")).toMatch(/^NOPERM/);
      expect(await cli(0, ["GET", "sess:acl"], 6379, "sentinel")).toMatch(/^NOPERM/);
      expect(await cli(0, ["DEL", "sess:acl"])).toBe("1");
    });

    it("passes the StatefulSet's readiness probes, which log in as health, in every Redis and Sentinel", async () => {
      for (const c of statefulSet.spec.template.spec.containers) {
        expect(c.readinessProbe.exec.command.join(" "), c.name).toContain("--user health");
        for (let i = 0; i < PODS; i++) await docker(["exec", `${pod(i)}-${c.name}`, ...c.readinessProbe.exec.command]);
      }
    });

    it("shows no password in any process's command line", async () => {
      for (const name of started) {
        // `docker top` reads the processes from the host: the container needs no ps.
        const argv = await docker(["top", name, "-eo", "pid,args"]);
        expect(argv, name).toContain("redis-server");
        for (const [user, pw] of Object.entries(passwords))
          expect(argv, `${name}: ${user}'s password`).not.toContain(pw);
      }
    });

    it("promotes a replica when the primary is killed, with its data; the old one returns as a replica", async () => {
      expect(await cli(0, ["SET", "k8s:count", "41"])).toBe("OK");
      expect(await cli(0, ["INCR", "k8s:count"])).toBe("42");
      // Both replicas have it before the primary goes.
      expect(await cli(0, ["WAIT", "2", "5000"])).toBe("2");

      await docker(["kill", `${pod(0)}-redis`]);
      await until("a Sentinel names another primary", 60, async () => (await primary()) !== "redis-0.redis");
      const promoted = Number(/^redis-(\d)\.redis$/.exec((await primary())!)![1]);
      expect(promoted).toBeGreaterThan(0);
      expect(await cli(promoted, ["GET", "k8s:count"])).toBe("42");
      expect(await cli(promoted, ["INCR", "k8s:count"])).toBe("43");

      // The container restarts as the kubelet would restart it: the same script, asking the Sentinels first.
      await docker(["start", `${pod(0)}-redis`]);
      // A replica from its first answer: it asked the Sentinels before starting. (Left to the
      // Sentinels alone, it would be a primary for seconds, taking writes it then loses.)
      await until("redis-0 answers again", 20, async () => (await cli(0, ["PING"])) === "PONG");
      expect((await cli(0, ["ROLE"])).split("\n")[0]).toBe("slave");
      await until("redis-0 follows the new primary", 30, async () => {
        const role = (await cli(0, ["ROLE"])).split("\n");
        return role[0] === "slave" && role[1] === `redis-${promoted}.redis`;
      });
      await until("redis-0 has the primary's writes", 20, async () => (await cli(0, ["GET", "k8s:count"])) === "43");
    });
  });

  describe("dev overlay's Redis, as its rendered StatefulSet runs it", { timeout: 60_000 }, () => {
    const name = `esc-test-k8s-dev-${randomBytes(4).toString("hex")}`;
    const dir = mkdtempSync(join(tmpdir(), "k8s-dev-redis-"));
    let container: Container;
    const secretValues: string[] = [];
    /** redis-cli in the container, as `user` with the password its Secret holds (none: anonymous). */
    const cli = async (args: string[], user = "") => {
      const pw = user === "" ? "" : readFileSync(join(dir, "secrets", `redis_${user}_password`), "utf8").trim();
      const auth = user === "" ? [] : ["--env", `REDISCLI_AUTH=${pw}`];
      const as = user === "" ? [] : ["--user", user];
      return (await docker(["exec", ...auth, name, "redis-cli", ...as, ...args], { timeoutMs: 10_000 })).trim();
    };

    beforeAll(async () => {
      // The rendered objects (placeholder secrets): each Secret and ConfigMap volume becomes a folder
      // of its keys, each emptyDir or volume claim a tmpfs, as the kubelet would mount them.
      const { objects } = renderAll().find((r) => r.overlay === "dev")!;
      const byName = (kind: string, n: string) => objects.find((o) => o.kind === kind && o.metadata.name === n)!;
      const statefulSet = objects.find((o) => o.kind === "StatefulSet") as unknown as PodOwner;
      const pod = statefulSet.spec.template.spec;
      container = pod.containers.find((c) => c.name === "redis")!;
      const mounts: string[] = [];
      for (const m of container.volumeMounts) {
        const v = pod.volumes.find((x) => x.name === m.name);
        const refs = [
          ...(v?.configMap ? [byName("ConfigMap", v.configMap.name)] : []),
          ...(v?.projected?.sources ?? []).map((src) => byName("Secret", src.secret!.name)),
        ] as (K8sObject & { data: Record<string, string> })[];
        if (refs.length === 0) {
          mounts.push(
            `--tmpfs=${m.mountPath}:uid=${pod.securityContext.runAsUser},gid=${pod.securityContext.runAsGroup}`,
          );
          continue;
        }
        const folder = join(dir, m.name);
        mkdirSync(folder, { mode: 0o755 });
        chmodSync(dir, 0o755);
        for (const o of refs)
          for (const [key, value] of Object.entries(o.data)) {
            const text = o.kind === "Secret" ? Buffer.from(value.replace(/\s/g, ""), "base64").toString() : value;
            if (o.kind === "Secret") secretValues.push(text.trim());
            writeFileSync(join(folder, key), text, { mode: 0o644 });
          }
        mounts.push(`--volume=${folder}:${m.mountPath}:ro`);
      }
      expect(secretValues).toHaveLength(3);
      await docker([
        "run",
        "-d",
        "--name",
        name,
        "--label",
        `com.docker.compose.project=${name}`,
        "--network=none",
        `--user=${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`,
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges:true",
        ...mounts,
        "--entrypoint",
        container.command[0]!,
        (await resolveBaseImages()).REDIS_IMAGE,
        ...container.command.slice(1),
      ]);
    }, 120_000);

    afterAll(async () => {
      await docker(["rm", "-f", "-v", name]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    });

    it("passes its readiness probe, which logs in as health", async () => {
      const probe = container.readinessProbe.exec.command;
      expect(probe.join(" ")).toContain("--user health");
      let ok = false;
      for (let i = 0; i < 40 && !ok; i++) {
        ok = await docker(["exec", name, ...probe]).then(
          () => true,
          () => false,
        );
        if (!ok) await new Promise((r) => setTimeout(r, 500));
      }
      expect(ok).toBe(true);
    });

    it("refuses anonymous clients and lets the app reach its keys only", async () => {
      expect(await cli(["PING"])).toMatch(/^NOAUTH/);
      expect(await cli(["SET", "sess:dev", "1"], "app")).toBe("OK");
      expect(await cli(["SET", "other:dev", "1"], "app")).toMatch(/^NOPERM/);
      expect(await cli(["KEYS", "*"], "app")).toMatch(/^NOPERM/);
      expect(await cli(["GET", "sess:dev"], "health")).toMatch(/^NOPERM/);
      expect(await cli(["ACL", "LIST"], "admin")).toMatch(/^user default off /m);
      // dev mounts no password for these: nobody logs in as them.
      expect(await cli(["ACL", "LIST"], "admin")).toMatch(/^user replication on resetchannels -@all/m);
    });

    it("shows no password in any process's command line", async () => {
      const argv = await docker(["top", name, "-eo", "pid,args"]);
      expect(argv).toContain("redis-server");
      for (const pw of secretValues) expect(argv).not.toContain(pw);
    });
  });
}
