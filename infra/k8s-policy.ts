// What deploy/k8s must hold beyond the Kubernetes schema, checked on the rendered objects: every
// object in the one namespace, every Secret, ConfigMap and key a pod or a *_FILE variable names
// rendered, Redis's ACL model (the default user off; the app as `app`, the probes as `health`) and
// no password in a command line. `make k8s-validate` and test/k8s.test.ts report these problems.
import type { K8sObject } from "./k8s-validate.ts";

type Env = {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } };
};
type Exec = { exec?: { command?: string[] } };
type Container = {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Env[];
  readinessProbe?: Exec;
  livenessProbe?: Exec;
  startupProbe?: Exec;
  lifecycle?: { preStop?: Exec; postStart?: Exec };
  volumeMounts?: { name: string; mountPath: string; subPath?: string }[];
};
type Ref = { name: string; items?: { key: string; path: string }[] };
type Volume = {
  name: string;
  secret?: { secretName: string; items?: { key: string; path: string }[] };
  configMap?: Ref;
  projected?: { sources: { secret?: Ref; configMap?: Ref }[] };
};
type Workload = K8sObject & {
  spec: { template: { spec: { containers: Container[]; initContainers?: Container[]; volumes?: Volume[] } } };
};
type Data = K8sObject & { data?: Record<string, string> };

/** The keys of a rendered Secret or ConfigMap, with their values (a Secret's decoded). */
function contents(o: Data): Map<string, string> {
  const decode = (v: string) => (o.kind === "Secret" ? Buffer.from(v.replace(/\s/g, ""), "base64").toString() : v);
  return new Map(Object.entries(o.data ?? {}).map(([k, v]) => [k, decode(v)]));
}

const workloadKinds = new Set(["Deployment", "StatefulSet", "DaemonSet", "Job"]);
const podContainers = (w: Workload) => [
  ...(w.spec.template.spec.initContainers ?? []),
  ...w.spec.template.spec.containers,
];

/** Every argv a container runs: its command and args, its exec probes and hooks. */
function argvs(c: Container): string[][] {
  const execs = [c.readinessProbe, c.livenessProbe, c.startupProbe, c.lifecycle?.preStop, c.lifecycle?.postStart];
  return [[...(c.command ?? []), ...(c.args ?? [])], ...execs.map((e) => e?.exec?.command ?? [])].filter(
    (a) => a.length > 0,
  );
}

/** A password given to a program as an argument, which `ps` shows to every user of the node. */
const PASSWORD_FLAG = /(?:^|\s)(?:-a|--pass|--requirepass|--masterauth|--sentinel-pass|--auth-pass)(?:[\s=]|$)/;

/** The Secrets and ConfigMaps a volume takes its files from, directly or projected. */
function volumeSources(v: Volume): { kind: string; ref: Ref }[] {
  return [
    ...(v.secret ? [{ kind: "Secret", ref: { name: v.secret.secretName, items: v.secret.items } }] : []),
    ...(v.configMap ? [{ kind: "ConfigMap", ref: v.configMap }] : []),
    ...(v.projected?.sources ?? []).flatMap((s) => [
      ...(s.secret ? [{ kind: "Secret", ref: s.secret }] : []),
      ...(s.configMap ? [{ kind: "ConfigMap", ref: s.configMap }] : []),
    ]),
  ];
}

/**
 * The files a container sees under each mount of a Secret or ConfigMap volume: path -> [kind, name, key].
 * A projected source or volume without `items` shows every key of its object under the key's name.
 */
function mountedFiles(
  c: Container,
  volumes: Volume[],
  objects: Map<string, Data>,
): Map<string, { kind: string; name: string; key: string }> {
  const files = new Map<string, { kind: string; name: string; key: string }>();
  for (const m of c.volumeMounts ?? []) {
    const v = volumes.find((x) => x.name === m.name);
    if (v === undefined) continue;
    for (const { kind, ref } of volumeSources(v)) {
      const keys =
        ref.items ??
        [...contents(objects.get(`${kind}/${ref.name}`) ?? ({} as Data)).keys()].map((k) => ({
          key: k,
          path: k,
        }));
      for (const item of keys) {
        const path = `${m.mountPath}/${item.path}`;
        if (m.subPath === undefined) files.set(path, { kind, name: ref.name, key: item.key });
        else if (m.subPath === item.path) files.set(m.mountPath, { kind, name: ref.name, key: item.key });
      }
    }
  }
  return files;
}

/**
 * A command line with the text of each mounted ConfigMap file it names appended (two levels: a
 * start script and the scripts it runs), so a check sees what the container really runs.
 */
function expand(text: string, files: ReturnType<typeof mountedFiles>, objects: Map<string, Data>, depth = 2): string {
  let out = text;
  for (const [path, f] of files) {
    if (f.kind !== "ConfigMap" || !text.includes(path)) continue;
    const body = contents(objects.get(`ConfigMap/${f.name}`) ?? ({} as Data)).get(f.key) ?? "";
    out += `\n${depth > 1 ? expand(body, files, objects, depth - 1) : body}`;
  }
  return out;
}

/** Every problem of the rendered objects of one overlay, as "Kind/name: what is wrong". */
export function policyProblems(objects: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  const byId = new Map(objects.map((o) => [`${o.kind}/${o.metadata.name}`, o as Data]));
  const namespace = objects.find((o) => o.kind === "Namespace")?.metadata.name;
  const secretValues = objects
    .filter((o) => o.kind === "Secret")
    .flatMap((s) => [...contents(s as Data)].map(([key, value]) => ({ secret: s.metadata.name, key, value })))
    .filter((s) => s.value.trim().length >= 8);

  for (const o of objects) {
    const id = `${o.kind}/${o.metadata.name}`;
    if (o.kind !== "Namespace" && o.metadata.namespace !== namespace)
      problems.push(`${id}: in namespace ${o.metadata.namespace ?? "(none)"}, not ${namespace ?? "(none)"}`);
    // A Secret's value anywhere but in its Secret (a ConfigMap, an env value, a command line).
    if (o.kind !== "Secret") {
      const text = JSON.stringify(o);
      for (const s of secretValues)
        if (text.includes(s.value.trim())) problems.push(`${id}: holds the value of Secret ${s.secret} key ${s.key}`);
    }
  }

  // Redis's users (base's ConfigMap redis-acl): the default user off.
  const acl = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name.startsWith("redis-acl"));
  if (acl !== undefined) {
    const users = contents(acl).get("users.acl") ?? "";
    const defaults = users.split("\n").filter((l) => /^user default\b/.test(l));
    if (defaults.length !== 1 || !/^user default off\b/.test(defaults[0]!) || /\bnopass\b/.test(defaults[0]!))
      problems.push(
        `ConfigMap/${acl.metadata.name}: users.acl must have one "user default off" line, ` +
          `not ${JSON.stringify(defaults)}`,
      );
  }

  for (const w of objects.filter((o): o is Workload => workloadKinds.has(o.kind))) {
    const volumes = w.spec.template.spec.volumes ?? [];
    for (const v of volumes) {
      for (const { kind, ref } of volumeSources(v)) {
        const target = byId.get(`${kind}/${ref.name}`);
        const where = `${w.kind}/${w.metadata.name}: volume ${v.name}`;
        if (target === undefined) {
          problems.push(`${where} names ${kind} ${ref.name}, which is not rendered`);
          continue;
        }
        for (const item of ref.items ?? [])
          if (!contents(target).has(item.key))
            problems.push(`${where} names key ${item.key}, not in ${kind} ${ref.name}`);
      }
    }

    for (const c of podContainers(w)) {
      const id = `${w.kind}/${w.metadata.name} container ${c.name}`;
      const files = mountedFiles(c, volumes, byId);
      const env = new Map((c.env ?? []).map((e) => [e.name, e.value]));
      for (const e of c.env ?? []) {
        if (e.valueFrom?.secretKeyRef)
          problems.push(`${id}: env ${e.name} from a Secret (its value shows in the environment): use a *_FILE file`);
        if (e.name.endsWith("_FILE") && e.value !== undefined && !files.has(e.value))
          problems.push(`${id}: ${e.name} names ${e.value}, which no mounted Secret or ConfigMap key provides`);
      }
      for (const argv of argvs(c)) {
        const text = expand(argv.join(" "), files, byId);
        if (PASSWORD_FLAG.test(text)) problems.push(`${id}: a password flag in a command line: ${argv[0]} ...`);
        // redis-cli with a password reads it from REDISCLI_AUTH; it must name the user it logs in as.
        if (/\bREDISCLI_AUTH\b/.test(text) && !/redis-cli\b[^|;]*--user \w+/.test(text))
          problems.push(`${id}: redis-cli with REDISCLI_AUTH but no --user: that logs in as the default user`);
      }

      // The app's Redis logins: the `app` user, with its own password and no other user's.
      if (env.has("REDIS_URL") || env.has("REDIS_SENTINELS") || env.has("REDIS_CLUSTER_NODES")) {
        for (const prefix of ["REDIS", ...(env.has("REDIS_SENTINELS") ? ["REDIS_SENTINEL"] : [])]) {
          const user = env.get(`${prefix}_USERNAME`);
          const file = env.get(`${prefix}_PASSWORD_FILE`);
          if (user !== "app") problems.push(`${id}: ${prefix}_USERNAME is ${user ?? "unset"}, not app`);
          if (file === undefined || !file.endsWith("/redis_app_password"))
            problems.push(`${id}: ${prefix}_PASSWORD_FILE is ${file ?? "unset"}, not a redis_app_password file`);
        }
        for (const [path, f] of files)
          if (/redis_(?!app_)\w+_password$/.test(f.key))
            problems.push(`${id}: mounts ${f.key} at ${path}; the app needs redis_app_password alone`);
      }

      // A Redis (or Sentinel) container: what it runs at start, with the scripts that names.
      if (/^(?:.*\/)?redis(?:[:@]|$)/.test(c.image ?? "")) {
        const start = expand(argvs(c)[0]?.join(" ") ?? "", files, byId);
        if (/\brequirepass\b/.test(start))
          problems.push(`${id}: requirepass sets the default user's password: use the ACL users`);
        if (/--sentinel\b/.test(start)) {
          if (!/^\s*(?:echo\s+")?user default off"?\s*$/m.test(start))
            problems.push(`${id}: the Sentinel's config has no "user default off"`);
        } else {
          if (!/(?:^|\s|")(?:--)?aclfile \/\S+/m.test(start))
            problems.push(`${id}: Redis starts without an aclfile, so its default user is on with no password`);
          if (acl === undefined) problems.push(`${id}: no ConfigMap redis-acl (Redis's users) is rendered`);
        }
      }
    }
  }

  return problems;
}
