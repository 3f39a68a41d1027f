// What can be checked of deploy/k8s without a cluster: every overlay renders with a real
// kustomize and validates against the Kubernetes schema, a broken manifest does not, and the
// manifests agree with the app (its variables, probes, ports, secrets) and with nginx/.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { redisAclFile, SENTINEL_MASTER, sentinelConf } from "../infra/cluster/redis-conf.ts";
import { policyProblems } from "../infra/k8s-policy.ts";
import { writeK8sSecrets } from "../infra/k8s-secrets.ts";
import { ENV_KEYS } from "../services/app/src/config.ts";
import {
  K8S_DIR,
  kustomizeVersion,
  OVERLAYS,
  render,
  renderAll,
  SECRET_FILES,
  stagedCopy,
  validateAll,
  type K8sObject,
  type Rendered,
} from "../infra/k8s-validate.ts";

const root = resolve(import.meta.dirname, "..");

/**
 * Variables the manifests set before the app reads them, each with the change that adds it.
 * Remove an entry once that change is in: from then on ENV_KEYS has the key.
 */
const PENDING_KEYS: Record<string, string> = {};

type Env = { name: string; value?: string };
type Port = { name?: string; containerPort: number };
type Probe = { httpGet?: { path: string; port: string | number } };
type Container = {
  name: string;
  env?: Env[];
  ports?: Port[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[] };
  };
  volumeMounts?: { name: string; mountPath: string }[];
};
type Volume = {
  name: string;
  secret?: { secretName: string };
  projected?: { sources: { secret?: { name: string; items?: { key: string; path: string }[] } }[] };
};
type PodSpec = {
  containers: Container[];
  volumes?: Volume[];
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; seccompProfile?: { type: string } };
  topologySpreadConstraints?: unknown[];
};
type Workload = K8sObject & { spec: { replicas?: number; serviceName?: string; template: { spec: PodSpec } } };
type NetworkPolicy = K8sObject & {
  spec: {
    podSelector: { matchLabels?: Record<string, string> };
    ingress?: {
      from?: { podSelector?: { matchLabels?: Record<string, string> } }[];
      ports?: { port: string | number }[];
    }[];
  };
};

const find = <T extends K8sObject>(objects: K8sObject[], kind: string, name: string): T => {
  const found = objects.find(
    (o) => o.kind === kind && (o.metadata.name === name || o.metadata.name.startsWith(`${name}-`)),
  );
  if (found === undefined) throw new Error(`no ${kind}/${name} in the rendered manifests`);
  return found as T;
};
const workloads = (objects: K8sObject[]) =>
  objects.filter((o): o is Workload => o.kind === "Deployment" || o.kind === "StatefulSet");
const appContainer = (objects: K8sObject[]) =>
  find<Workload>(objects, "Deployment", "app").spec.template.spec.containers[0]!;
const envOf = (c: Container) => new Map((c.env ?? []).map((e) => [e.name, e.value]));

describe("deploy/k8s", { timeout: 60_000 }, () => {
  let rendered: Rendered[];
  beforeAll(() => {
    kustomizeVersion();
    rendered = renderAll();
  });
  const each = (fn: (r: Rendered) => void) => () => {
    expect(rendered.map((r) => r.overlay)).toEqual([...OVERLAYS]);
    for (const r of rendered) fn(r);
  };

  it("renders every overlay and validates every object against the Kubernetes schema", async () => {
    for (const { overlay, objects } of rendered) {
      const kinds = new Set(objects.map((o) => o.kind));
      for (const kind of ["Namespace", "Deployment", "StatefulSet", "Service", "ConfigMap", "Secret"]) {
        expect(kinds, `${overlay} has a ${kind}`).toContain(kind);
      }
      for (const kind of ["PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"]) {
        expect(kinds, `${overlay} has a ${kind}`).toContain(kind);
      }
      expect(await validateAll(objects), overlay).toEqual([]);
    }
  });

  it("fails validation for a broken manifest, naming the object and the field", async () => {
    const staged = stagedCopy();
    try {
      const file = join(staged.dir, "base/app.yaml");
      const yaml = readFileSync(file, "utf8");
      // A string where the schema wants an integer, an HPA target without its required name, and
      // a misspelt field (which the API server would refuse too: kubectl's --validate=strict).
      const broken = yaml
        .replace("containerPort: 9091", "containerPort: ops-port")
        .replace(/(kind: Deployment\n)(\s+)name: app\n/, "$1");
      expect(broken).not.toBe(yaml);
      writeFileSync(file, broken);
      const nginx = join(staged.dir, "base/nginx.yaml");
      writeFileSync(nginx, readFileSync(nginx, "utf8").replace("readinessProbe:", "readinesProbe:"));
      const problems = await validateAll(render(join(staged.dir, "overlays/dev")));
      expect(problems).toContain(
        "Deployment/app: /spec/template/spec/containers/0/ports/1/containerPort must be integer",
      );
      expect(problems).toContain("HorizontalPodAutoscaler/app: /spec/scaleTargetRef must have required property name");
      expect(problems).toContain(
        "Deployment/nginx: Object literal may only specify known properties, " +
          `and '"readinesProbe"' does not exist in type 'IContainer'.`,
      );
      expect(problems).toHaveLength(3);
    } finally {
      staged.remove();
    }
  });

  it("refuses a kind no Kubernetes schema defines", async () => {
    const made = { apiVersion: "apps/v1", kind: "Deploymnet", metadata: { name: "x" } };
    expect(await validateAll([made])).toEqual([
      "Deploymnet/x: no Kubernetes schema for apiVersion apps/v1, kind Deploymnet",
    ]);
  });

  it("fails to render when a kustomization names a file that is not there", () => {
    const staged = stagedCopy();
    try {
      const file = join(staged.dir, "base/kustomization.yaml");
      writeFileSync(file, readFileSync(file, "utf8").replace("- app.yaml", "- app-typo.yaml"));
      expect(() => render(join(staged.dir, "overlays/dev"))).toThrow(/app-typo\.yaml/);
    } finally {
      staged.remove();
    }
  });

  it(
    "sets only variables the app's config reads",
    each(({ overlay, objects }) => {
      const known = new Set([...ENV_KEYS, ...Object.keys(PENDING_KEYS)]);
      const unknown = [...envOf(appContainer(objects)).keys()].filter((k) => !known.has(k));
      expect(unknown, overlay).toEqual([]);
    }),
  );

  it(
    "probes /readyz and /healthz on the operator port OPS_PORT, and routes the Services to PORT",
    each(({ overlay, objects }) => {
      const app = appContainer(objects);
      const env = envOf(app);
      const portNamed = (name: string | number) =>
        app.ports!.find((p) => p.name === name || p.containerPort === name)!.containerPort;
      expect(portNamed("ops"), overlay).toBe(Number(env.get("OPS_PORT")));
      expect(portNamed("http"), overlay).toBe(Number(env.get("PORT")));
      expect(app.readinessProbe?.httpGet?.path).toBe("/readyz");
      expect(app.livenessProbe?.httpGet?.path).toBe("/healthz");
      for (const probe of [app.readinessProbe, app.livenessProbe, app.startupProbe]) {
        expect(portNamed(probe!.httpGet!.port)).toBe(Number(env.get("OPS_PORT")));
      }
      const service = find<K8sObject & { spec: { clusterIP?: string; ports: { port: number }[] } }>(
        objects,
        "Service",
        "app",
      );
      expect(service.spec.clusterIP, "headless, for nginx's resolver").toBe("None");
      expect(service.spec.ports.map((p) => p.port)).toEqual([Number(env.get("PORT"))]);
    }),
  );

  it("probes paths the app serves", () => {
    const sources = readdirSync(join(root, "services/app/src"), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
      .map((f) => readFileSync(join(root, "services/app/src", f), "utf8"))
      .join("\n");
    expect(sources).toMatch(/\.get\("\/healthz"/);
    expect(sources).toMatch(/\.get\("\/readyz"/);
  });

  it(
    "gives a stopping replica longer than its preStop sleep and drain before SIGKILL",
    each(({ overlay, objects }) => {
      const pod = find<Workload>(objects, "Deployment", "app").spec.template.spec;
      const app = pod.containers[0]!;
      const env = envOf(app);
      const command = app.lifecycle?.preStop?.exec?.command ?? [];
      expect(command[0], "preStop is a sleep").toBe("sleep");
      const drainSeconds =
        Number(command[1]) + (Number(env.get("SHUTDOWN_DELAY_MS")) + Number(env.get("SHUTDOWN_DRAIN_MS"))) / 1000;
      expect(drainSeconds, overlay).toBeGreaterThan(10);
      expect(pod.terminationGracePeriodSeconds, overlay).toBeGreaterThan(drainSeconds);
    }),
  );

  it(
    "mounts each *_FILE variable's file from a generated Secret with that key, and of Redis's passwords the app's only",
    each(({ overlay, objects }) => {
      const pod = find<Workload>(objects, "Deployment", "app").spec.template.spec;
      const app = pod.containers[0]!;
      const env = envOf(app);
      const files = [...env].filter(([k]) => k.endsWith("_FILE"));
      expect(files.map(([k]) => k).sort(), overlay).toEqual(
        overlay === "ha"
          ? ["REDIS_PASSWORD_FILE", "REDIS_SENTINEL_PASSWORD_FILE", "SESSION_SECRET_FILE"]
          : ["REDIS_PASSWORD_FILE", "SESSION_SECRET_FILE"],
      );
      // As in Compose: the session secret, and the password of Redis's `app` user (and the
      // Sentinels' `app` user in ha), which REDIS_USERNAME and REDIS_SENTINEL_USERNAME name.
      expect(env.get("SESSION_SECRET_FILE")).toBe("/run/secrets/session_secret");
      expect(env.get("REDIS_USERNAME"), overlay).toBe("app");
      expect(env.get("REDIS_PASSWORD_FILE"), overlay).toBe("/run/secrets/redis_app_password");
      if (overlay === "ha") {
        expect(env.get("REDIS_SENTINEL_USERNAME")).toBe("app");
        expect(env.get("REDIS_SENTINEL_PASSWORD_FILE")).toBe("/run/secrets/redis_app_password");
      }
      const mount = app.volumeMounts!.find((m) => m.mountPath === "/run/secrets")!;
      const volume = pod.volumes!.find((v) => v.name === mount.name)!;
      const items = volume.projected!.sources.flatMap((s) =>
        s.secret!.items!.map((i) => ({ ...i, secret: s.secret! })),
      );
      expect(items.map((i) => i.path).sort(), `${overlay}: nothing more is mounted`).toEqual([
        "redis_app_password",
        "session_secret",
      ]);
      for (const [key, path] of files) {
        expect(ENV_KEYS).toContain(key);
        const item = items.find((i) => `/run/secrets/${i.path}` === path)!;
        expect(item, `${overlay} ${key}: ${path} is mounted`).toBeDefined();
        const secret = find<K8sObject & { data: Record<string, string> }>(objects, "Secret", item.secret.name);
        expect(secret.metadata.name, "the hashed name kustomize generated").toBe(item.secret.name);
        expect(Object.keys(secret.data)).toContain(item.key);
      }
    }),
  );

  it(
    "passes the checks beyond the schema: one namespace, references that resolve, ACL users, no password in argv",
    each(({ overlay, objects }) => {
      expect(policyProblems(objects), overlay).toEqual([]);
    }),
  );

  it("fails those checks for a deliberately broken manifest, naming the object and the fault", () => {
    const staged = stagedCopy();
    try {
      const edit = (file: string, from: string | RegExp, to: string) => {
        const path = join(staged.dir, file);
        const text = readFileSync(path, "utf8");
        const changed = text.replace(from, to);
        expect(changed, `${file}: ${String(from)}`).not.toBe(text);
        writeFileSync(path, changed);
      };
      // The app names a Secret key that does not exist, and a password file no volume has.
      edit("base/app.yaml", "- key: redis_app_password", "- key: redis_password");
      edit("base/app.yaml", "value: /run/secrets/redis_app_password", "value: /run/secrets/redis_password");
      // dev's Redis drops its aclfile (its default user on, without a password) and its probe
      // passes a password in argv; ha's Sentinels turn their default user on.
      edit("overlays/dev/redis.yaml", " --aclfile /tmp/users.acl", "");
      edit(
        "overlays/dev/redis.yaml",
        "redis-cli --user health ping",
        'redis-cli --user health -a "$REDISCLI_AUTH" ping',
      );
      edit("overlays/ha/redis/sentinel-conf.sh", 'echo "user default off"', 'echo "user default on nopass"');
      // An object outside the namespace.
      edit("overlays/ha/kustomization.yaml", /^namespace: .*\n/m, "");
      const problems = (overlay: string) => policyProblems(render(join(staged.dir, "overlays", overlay)));
      const dev = problems("dev");
      const secret = dev.find((p) => p.startsWith("Deployment/app: volume secrets names key"));
      expect(secret).toMatch(
        /^Deployment\/app: volume secrets names key redis_password, not in Secret redis-app-password-/,
      );
      expect(dev.filter((p) => p !== secret)).toEqual([
        "Deployment/app container app: REDIS_PASSWORD_FILE names /run/secrets/redis_password, " +
          "which no mounted Secret or ConfigMap key provides",
        "Deployment/app container app: REDIS_PASSWORD_FILE is /run/secrets/redis_password, " +
          "not a redis_app_password file",
        "StatefulSet/redis container redis: a password flag in a command line: sh ...",
        "StatefulSet/redis container redis: Redis starts without an aclfile, " +
          "so its default user is on with no password",
      ]);

      const ha = problems("ha");
      for (const p of [
        "StatefulSet/redis: in namespace (none), not express-session-cluster",
        // Outside the namespace, its references to the base's Secrets keep the unhashed names.
        "StatefulSet/redis: volume acl names ConfigMap redis-acl, which is not rendered",
        "StatefulSet/redis: volume redis-secrets names Secret redis-app-password, which is not rendered",
        `StatefulSet/redis container sentinel: the Sentinel's config has no "user default off"`,
      ])
        expect(ha).toContain(p);
      // Redis's users with the default user on, for anyone, without a password.
      edit("base/redis/users.acl", /^user default off/m, "user default on nopass");
      expect(problems("dev").filter((p) => p.startsWith("ConfigMap/"))).toEqual([
        expect.stringMatching(
          /^ConfigMap\/redis-acl-\w+: users.acl must have one "user default off" line, not \["user default on nopass /,
        ),
      ]);
    } finally {
      staged.remove();
    }
  });

  it(
    "ships infra/redis/users.acl unchanged, and builds Redis's aclfile from it as Compose does",
    each(({ overlay, objects }) => {
      const acl = find<K8sObject & { data: Record<string, string> }>(objects, "ConfigMap", "redis-acl").data;
      const template = readFileSync(join(root, "infra/redis/users.acl"), "utf8");
      const why = `${overlay}: deploy/k8s/base/redis/users.acl must be a copy of infra/redis/users.acl (cp it)`;
      expect(acl["users.acl"], why).toBe(template);
      // aclfile.sh run on the passwords this overlay's Redis mounts, against redis-conf.ts's redisAclFile.
      const redis = find<Workload>(objects, "StatefulSet", "redis").spec.template.spec;
      const container = redis.containers.find((c) => c.name === "redis")!;
      const mount = container.volumeMounts!.find((m) => m.mountPath === "/run/secrets")!;
      const volume = redis.volumes!.find((v) => v.name === mount.name)!;
      const secrets = volume.projected!.sources.map((s) =>
        find<K8sObject & { data: Record<string, string> }>(objects, "Secret", s.secret!.name),
      );
      const dir = mkdtempSync(join(tmpdir(), "k8s-acl-"));
      try {
        const passwords: Record<string, string> = {};
        for (const secret of secrets)
          for (const [key, value] of Object.entries(secret.data)) {
            writeFileSync(join(dir, key), Buffer.from(value.replace(/\s/g, ""), "base64"));
            passwords[/^redis_(\w+)_password$/.exec(key)![1]!] = Buffer.from(value, "base64").toString().trim();
          }
        expect(Object.keys(passwords).sort(), overlay).toEqual(
          overlay === "ha" ? ["admin", "app", "health", "replication", "sentinel"] : ["admin", "app", "health"],
        );
        writeFileSync(join(dir, "aclfile.sh"), acl["aclfile.sh"]!);
        writeFileSync(join(dir, "users.acl"), acl["users.acl"]!);
        const out = execFileSync("sh", [join(dir, "aclfile.sh"), join(dir, "users.acl"), dir], { encoding: "utf8" });
        expect(out, overlay).toBe(redisAclFile(template, passwords));
        expect(out).toMatch(/^user default off /m);
        // A password file that is there but empty stops Redis's start rather than lock a user out.
        writeFileSync(join(dir, "redis_app_password"), "");
        expect(() =>
          execFileSync("sh", [join(dir, "aclfile.sh"), join(dir, "users.acl"), dir], { stdio: "pipe" }),
        ).toThrow(/redis_app_password is empty/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }),
  );

  it("gives ha's Sentinels the users and logins infra/cluster/redis-conf.ts gives Compose's", () => {
    const { objects } = rendered.find((r) => r.overlay === "ha")!;
    const scripts = find<K8sObject & { data: Record<string, string> }>(objects, "ConfigMap", "redis-scripts").data;
    const sentinel = find<Workload>(objects, "StatefulSet", "redis").spec.template.spec.containers.find(
      (c) => c.name === "sentinel",
    )!;
    const name = envOf(sentinel).get("SENTINEL_NAME")!;
    expect(name).toBe(SENTINEL_MASTER);
    const passwords = {
      app: "pw-app",
      admin: "pw-admin",
      health: "pw-health",
      replication: "",
      sentinel: "pw-sentinel",
    };
    const dir = mkdtempSync(join(tmpdir(), "k8s-sentinel-conf-"));
    try {
      for (const [user, pw] of Object.entries(passwords))
        if (pw !== "") writeFileSync(join(dir, `redis_${user}_password`), `${pw}\n`);
      writeFileSync(join(dir, "sentinel-conf.sh"), scripts["sentinel-conf.sh"]!);
      const out = execFileSync("sh", [join(dir, "sentinel-conf.sh"), "redis-0.redis"], {
        encoding: "utf8",
        env: { PATH: process.env.PATH, HOSTNAME: "redis-0", SERVICE: "redis", SENTINEL_NAME: name, SECRETS_DIR: dir },
      });
      const logins = (conf: string) =>
        conf.split("\n").filter((l) => /^(user |sentinel (auth-user|auth-pass|sentinel-user|sentinel-pass) )/.test(l));
      const compose = sentinelConf({
        port: 26379,
        bind: "*",
        dir: "/tmp",
        primary: { host: "redis-0.redis", port: 6379 },
        passwords,
      });
      expect(logins(out)).toEqual(logins(compose));
      expect(logins(out)).toContain("user default off");
      expect(out).toContain(`sentinel monitor ${name} redis-0.redis 6379 2\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("writes every secret file the secretGenerator reads with `make k8s-secrets`, and keeps existing ones", () => {
    const kustomization = parse(readFileSync(join(K8S_DIR, "base/kustomization.yaml"), "utf8")) as {
      secretGenerator: { files: string[] }[];
    };
    const generated = kustomization.secretGenerator.flatMap((g) => g.files.map((f) => f.replace(/^secrets\//, "")));
    expect([...SECRET_FILES].sort()).toEqual(generated.sort());
    const dir = mkdtempSync(join(tmpdir(), "k8s-secrets-"));
    try {
      writeFileSync(join(dir, "session_secret"), "mine\n");
      expect(writeK8sSecrets(dir).sort()).toEqual(SECRET_FILES.filter((f) => f !== "session_secret").sort());
      expect(readFileSync(join(dir, "session_secret"), "utf8")).toBe("mine\n");
      for (const f of SECRET_FILES.filter((x) => x !== "session_secret")) {
        expect(readFileSync(join(dir, f), "utf8")).toMatch(/^[0-9a-f]{64}\n$/);
        expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
      }
      expect(writeK8sSecrets(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("commits no secret: only the .gitignore is tracked in base/secrets", () => {
    const tracked = execFileSync("git", ["ls-files", "deploy/k8s/base/secrets"], { cwd: root, encoding: "utf8" });
    expect(tracked.trim().split("\n")).toEqual(["deploy/k8s/base/secrets/.gitignore"]);
  });

  it(
    "ships the repository's nginx config, with an upstream that follows the app's headless Service",
    each(({ overlay, objects }) => {
      const config = find<K8sObject & { data: Record<string, string> }>(objects, "ConfigMap", "nginx").data;
      const repo = (f: string) => readFileSync(join(root, "nginx", f), "utf8");
      // Each file Compose's nginx.conf includes is in the ConfigMap as a byte-for-byte copy, and
      // the pod mounts every key where the includes look for it.
      const included = [...repo("nginx.conf").matchAll(/^\s*include \/etc\/nginx\/(\S+);/gm)].map((m) => m[1]!);
      expect(Object.keys(config).sort(), overlay).toEqual(["nginx.conf", ...included].sort());
      for (const name of included) {
        const why = `${overlay}: deploy/k8s/base/nginx/${name} must be a copy of nginx/${name} (cp it)`;
        expect(config[name], why).toBe(repo(name));
      }
      const nginxPod = find<Workload>(objects, "Deployment", "nginx").spec.template.spec;
      const mounts = (nginxPod.containers[0]!.volumeMounts ?? []) as { mountPath: string; subPath?: string }[];
      for (const key of Object.keys(config)) {
        const mount = mounts.find((m) => m.subPath === key);
        expect(mount?.mountPath, `${overlay}: ${key} mounted`).toBe(`/etc/nginx/${key}`);
      }

      // Kubernetes' nginx.conf is Compose's but for the resolver and the upstream's server line.
      const namespace = find(objects, "Namespace", "express-session-cluster").metadata.name;
      const port = envOf(appContainer(objects)).get("PORT");
      const k8s = config["nginx.conf"]!;
      expect(k8s).toContain(
        `  server app.${namespace}.svc.cluster.local:${port} resolve max_fails=1 fail_timeout=2s;\n`,
      );
      expect(k8s).toMatch(/^\s*resolver \S+ valid=\d+s/m);
      const directives = (conf: string) =>
        conf
          .split("\n")
          .map((l) => l.replace(/#.*/, "").trim())
          .filter((l) => l !== "" && !/^resolver(_timeout)? /.test(l) && !/^server app[.:]/.test(l));
      expect(directives(k8s)).toEqual(directives(repo("nginx.conf")));
    }),
  );

  it("has a Kubernetes nginx.conf that nginx accepts (nginx -t)", () => {
    const nginx = ["/usr/sbin/nginx", ...(process.env.PATH ?? "").split(":").map((d) => join(d, "nginx"))].find((p) =>
      existsSync(p),
    );
    expect(nginx, "nginx is installed (make test installs it)").toBeDefined();
    const config = find<K8sObject & { data: Record<string, string> }>(rendered[0]!.objects, "ConfigMap", "nginx").data;
    const dir = mkdtempSync(join(tmpdir(), "k8s-nginx-"));
    try {
      for (const [name, text] of Object.entries(config)) {
        // Here, not in a pod: its paths in a temporary folder, and addresses instead of the
        // cluster's DNS names. Debian's nginx is 1.22, older than the upstream `resolve` (1.27.3), so that
        // one word is dropped; everything else is checked as the pod would load it.
        const local = text
          .replaceAll("/tmp/", `${dir}/`)
          .replaceAll("/etc/nginx/", `${dir}/`)
          // Node gives a child sockets, not pipes, for its stdio: /dev/stderr cannot be opened.
          .replaceAll("/dev/stderr", `${dir}/error.log`)
          .replaceAll("/dev/stdout", `${dir}/access.log`)
          .replace(/server app\.\S+:(\d+) resolve /, "server 127.0.0.1:$1 ")
          .replace(/^(\s*)resolver \S+ /m, "$1resolver 127.0.0.1 ");
        if (name === "nginx.conf") expect(local).toContain("server 127.0.0.1:3000 max_fails");
        writeFileSync(join(dir, name), local);
      }
      const args = ["-t", "-q", "-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")];
      const stderr = (() => {
        try {
          execFileSync(nginx!, args, { stdio: "pipe" });
          return "";
        } catch (err) {
          return String((err as { stderr?: Buffer }).stderr ?? err);
        }
      })();
      expect(stderr).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it(
    "runs every container non-root, read-only, without capabilities, seccomp RuntimeDefault, with requests and limits",
    each(({ overlay, objects }) => {
      for (const w of workloads(objects)) {
        const pod = w.spec.template.spec;
        expect(pod.securityContext?.runAsNonRoot, `${overlay} ${w.metadata.name}`).toBe(true);
        expect(pod.securityContext?.seccompProfile?.type).toBe("RuntimeDefault");
        // Several replicas spread over nodes and zones; dev's single Redis has nothing to spread.
        if (w.spec.replicas !== 1)
          expect(pod.topologySpreadConstraints?.length ?? 0, `${w.metadata.name} spreads`).toBeGreaterThan(0);
        for (const c of pod.containers) {
          const id = `${overlay} ${w.metadata.name}/${c.name}`;
          expect(c.securityContext, id).toMatchObject({
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
          });
          expect(c.securityContext?.capabilities?.drop, id).toEqual(["ALL"]);
          expect(Object.keys(c.resources?.requests ?? {}).sort(), id).toEqual(["cpu", "memory"]);
          expect(Object.keys(c.resources?.limits ?? {}).sort(), id).toEqual(["cpu", "memory"]);
          expect(c.readinessProbe, `${id} readiness`).toBeDefined();
          expect(c.livenessProbe, `${id} liveness`).toBeDefined();
        }
      }
    }),
  );

  it(
    "lets only the app reach Redis and only nginx reach the app, behind a default deny",
    each(({ overlay, objects }) => {
      const policies = objects.filter((o): o is NetworkPolicy => o.kind === "NetworkPolicy");
      const deny = policies.find((p) => Object.keys(p.spec.podSelector.matchLabels ?? {}).length === 0);
      expect(deny?.spec.ingress, `${overlay} default deny`).toBeUndefined();
      const sources = (target: string) =>
        policies
          .filter((p) => p.spec.podSelector.matchLabels?.["app.kubernetes.io/name"] === target)
          .flatMap((p) => p.spec.ingress ?? [])
          .flatMap((rule) =>
            (rule.from ?? [{}]).map((f) => f.podSelector?.matchLabels?.["app.kubernetes.io/name"] ?? "anywhere"),
          );
      expect(sources("app"), overlay).toEqual(["nginx"]);
      // In ha the Redis pods also talk to each other (replication, Sentinel).
      expect(sources("redis").sort(), overlay).toEqual(overlay === "ha" ? ["app", "redis"] : ["app"]);
      expect(sources("nginx"), overlay).toEqual(["anywhere"]);
    }),
  );

  it("points the app at every Sentinel of the ha Redis set, by the name they monitor", () => {
    const { objects } = rendered.find((r) => r.overlay === "ha")!;
    const env = envOf(appContainer(objects));
    const redis = find<Workload>(objects, "StatefulSet", "redis");
    const sentinel = redis.spec.template.spec.containers.find((c) => c.name === "sentinel")!;
    const sentinelPort = sentinel.ports!.find((p) => p.name === "sentinel")!.containerPort;
    const pods = Array.from(
      { length: redis.spec.replicas! },
      (_, i) => `${redis.metadata.name}-${i}.${redis.spec.serviceName}`,
    );
    expect(env.get("REDIS_SENTINELS")).toBe(pods.map((p) => `${p}:${sentinelPort}`).join(","));
    expect(env.get("REDIS_SENTINEL_NAME")).toBe(envOf(sentinel).get("SENTINEL_NAME"));
    expect(envOf(sentinel).get("PEERS")).toBe(pods.join(" "));
    expect(redis.spec.replicas).toBe(3);
  });

  it("ships ha's Redis scripts as valid POSIX shell", () => {
    const dir = join(K8S_DIR, "overlays/ha/redis");
    for (const script of readdirSync(dir).filter((f) => f.endsWith(".sh"))) {
      expect(() => execFileSync("sh", ["-n", join(dir, script)]), script).not.toThrow();
    }
  });
});
