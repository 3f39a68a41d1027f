// Renders every kustomize overlay of deploy/k8s with a real kustomize (`kubectl kustomize`) and
// validates each object against the Kubernetes OpenAPI schema (kubernetes-models' validators,
// generated from the API's own spec), then checks what the schema cannot (infra/k8s-policy.ts).
// `make k8s-validate` runs it; test/k8s.test.ts uses it too.
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import ts from "typescript";
import { parseAllDocuments } from "yaml";
import { policyProblems } from "./k8s-policy.ts";

export const K8S_DIR = resolve(import.meta.dirname, "../deploy/k8s");
export const OVERLAYS = ["dev", "ha"] as const;
/** Redis's ACL users that log in (infra/redis/users.acl); each has a password file. */
export const REDIS_USERS = ["app", "health", "admin", "replication", "sentinel"] as const;
/** The files base/kustomization.yaml's secretGenerator reads; `make k8s-secrets` writes them. */
export const SECRET_FILES = [
  "session_secret",
  ...REDIS_USERS.map((user) => `redis_${user}_password` as const),
] as const;
/** kustomize v4 is the first with `labels:`; kubectl 1.21 the first to embed it (Debian 12's 1.20 has v2). */
const MIN_KUSTOMIZE_MAJOR = 4;

export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
};

export type Rendered = { overlay: string; objects: K8sObject[] };

/** The kustomize version inside kubectl, refused with what to install when it is too old. */
export function kustomizeVersion(): string {
  let out: string;
  try {
    out = execFileSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  } catch (err) {
    throw new Error(
      `kubectl is needed to render deploy/k8s (run infra/ensure-system-deps.sh kubectl): ${String(err)}`,
      {
        cause: err,
      },
    );
  }
  const version = /Kustomize Version: (v[\d.]+)/.exec(out)?.[1];
  const major = Number(/^v(\d+)/.exec(version ?? "")?.[1] ?? 0);
  if (major < MIN_KUSTOMIZE_MAJOR) {
    throw new Error(
      `kubectl embeds kustomize ${version ?? "v2 or older"}; deploy/k8s needs v${MIN_KUSTOMIZE_MAJOR} or later, ` +
        "which kubectl 1.21+ embeds (Debian 12's kubernetes-client is 1.20): " +
        "install a newer kubectl or a standalone kustomize",
    );
  }
  return version!;
}

export function kubectlVersion(): string {
  const out = execFileSync("kubectl", ["version", "--client"], { encoding: "utf8" });
  return /Client Version: (\S+)/.exec(out)?.[1] ?? "unknown";
}

/**
 * A copy of deploy/k8s (or of `source`) in a temporary folder, with placeholder secrets: the
 * checks never need, read or print your real ones. Remove it with the returned `remove`.
 */
export function stagedCopy(source = K8S_DIR): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "k8s-validate-"));
  cpSync(source, dir, { recursive: true, filter: (src) => !src.includes("/secrets/") || src.endsWith(".gitignore") });
  for (const name of SECRET_FILES)
    writeFileSync(join(dir, "base/secrets", name), `placeholder-${name}-0123456789abcdef0123456789`);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `kubectl kustomize` of one overlay folder, parsed into objects. Throws kustomize's own error. */
export function render(overlayDir: string): K8sObject[] {
  let yaml: string;
  try {
    yaml = execFileSync("kubectl", ["kustomize", overlayDir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw new Error(`kubectl kustomize ${overlayDir} failed: ${stderr.trim()}`, { cause: err });
  }
  return parseAllDocuments(yaml).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`kustomize printed invalid YAML: ${doc.errors[0]!.message}`);
    return doc.toJSON() as K8sObject;
  });
}

/** Renders every overlay from a staged copy of `source`. */
export function renderAll(source = K8S_DIR): Rendered[] {
  const staged = stagedCopy(source);
  try {
    return OVERLAYS.map((overlay) => ({ overlay, objects: render(join(staged.dir, "overlays", overlay)) }));
  } finally {
    staged.remove();
  }
}

type Model = { validate(): void };
type ModelClass = new (data: unknown) => Model;

/** kubernetes-models' module for an apiVersion and kind: core is v1/Kind, others group/version/Kind. */
async function modelFor(apiVersion: string, kind: string): Promise<ModelClass | undefined> {
  try {
    const path = `kubernetes-models/${apiVersion}/${kind}`;
    const mod = (await import(/* @vite-ignore */ path)) as Record<string, ModelClass>;
    return mod[kind];
  } catch {
    return undefined;
  }
}

/**
 * Every schema problem of one object, as "Kind/name: /path message". An apiVersion or kind the
 * schemas do not know is a problem too (kubeconform without -ignore-missing-schemas does the same).
 */
export async function validateObject(obj: K8sObject): Promise<string[]> {
  const id = `${obj.kind}/${obj.metadata?.name ?? "(no name)"}`;
  const Model = await modelFor(obj.apiVersion, obj.kind);
  if (Model === undefined) return [`${id}: no Kubernetes schema for apiVersion ${obj.apiVersion}, kind ${obj.kind}`];
  try {
    new Model(obj.kind === "Secret" ? unwrapSecretData(obj) : obj).validate();
    return [];
  } catch (err) {
    const errors = (err as { errors?: { instancePath: string; message?: string }[] }).errors;
    if (!errors) return [`${id}: ${String(err)}`];
    return errors.map((e) => `${id}: ${e.instancePath || "/"} ${e.message ?? "is invalid"}`);
  }
}

/**
 * kustomize wraps a generated Secret's base64 at 76 characters; the API server's decoder (Go's
 * encoding/base64) skips the newlines, the schema's "byte" pattern does not.
 */
function unwrapSecretData(secret: K8sObject): K8sObject {
  const data = secret.data as Record<string, string> | undefined;
  if (data === undefined) return secret;
  return { ...secret, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, v.replace(/[\r\n]/g, "")])) };
}

/** Schema problems of every object, then the fields no schema defines. */
export async function validateAll(objects: readonly K8sObject[]): Promise<string[]> {
  const schema = (await Promise.all(objects.map(validateObject))).flat();
  // An object without a schema has no interface either: the first check already names it.
  return [
    ...schema,
    ...unknownFieldProblems(
      objects.filter((o) => !schema.some((p) => p.startsWith(`${o.kind}/${o.metadata?.name}: no`))),
    ),
  ];
}

const repoRoot = resolve(import.meta.dirname, "..");

/**
 * Fields the schema does not define (a misspelt `readinesProbe`, a field at the wrong level),
 * which the schema validators above let through, as kubeconform does without -strict. Each
 * object is type-checked as a literal of kubernetes-models' interface for its kind (generated
 * from the same OpenAPI spec): TypeScript's excess-property check names every unknown field.
 */
export function unknownFieldProblems(objects: readonly K8sObject[]): string[] {
  const file = join(repoRoot, "__k8s_strict_check__.ts");
  const lines = objects.map(
    (o, i) =>
      `import type { I${o.kind} as T${i} } from "kubernetes-models/${o.apiVersion}/${o.kind}"; ` +
      `export const o${i}: T${i} = ${JSON.stringify(o)};`,
  );
  const source = ts.createSourceFile(file, lines.join("\n"), ts.ScriptTarget.ES2022, true);
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (name, ...rest) => (name === file ? source : getSourceFile(name, ...rest));
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  // Only the excess-property errors (2353, and 2561 with a "did you mean"): types and required
  // fields are the schema validators' job, and they name the path. TypeScript skips the
  // excess-property check of a literal that has a type error; the schema check reports that one.
  const excess = new Set([2353, 2561]);
  const diagnostics = ts.getPreEmitDiagnostics(program, source).filter((d) => excess.has(d.code));
  return diagnostics.map((d) => {
    const line = d.start === undefined ? 0 : source.getLineAndCharacterOfPosition(d.start).line;
    const o = objects[line]!;
    return `${o.kind}/${o.metadata?.name ?? "(no name)"}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
  });
}

export function schemasVersion(): string {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve("kubernetes-models/package.json");
  return `kubernetes-models ${(JSON.parse(readFileSync(pkg, "utf8")) as { version: string }).version}`;
}

async function main(): Promise<number> {
  const kustomize = kustomizeVersion();
  console.log(
    `rendering with kubectl ${kubectlVersion()} (kustomize ${kustomize}), validating with ${schemasVersion()}`,
  );
  let failed = 0;
  for (const { overlay, objects } of renderAll()) {
    // The schema, then what the schema cannot say: references, Redis's ACL users, no password in argv.
    const problems = [...(await validateAll(objects)), ...policyProblems(objects)];
    const kinds = [...new Set(objects.map((o) => o.kind))].sort().join(", ");
    const verdict = problems.length === 0 ? "all valid" : `${problems.length} problems`;
    console.log(`${overlay}: ${objects.length} objects, ${verdict} (${kinds})`);
    for (const p of problems) console.log(`  ${p}`);
    failed += problems.length;
  }
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error((err as Error).message);
      process.exit(1);
    },
  );
}
