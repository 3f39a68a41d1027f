// Keeps the README and docs/*.md true: every command they show is a make target or a curl through the
// load balancer, and replayed in order as a new user would, each prints output of the shape shown.
import { execFile, execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { dockerAvailable } from "../infra/cluster/open.ts";
import { freePort } from "../infra/cluster/ports.ts";

const root = resolve(import.meta.dirname, "..");
const docFiles = [
  "README.md",
  ...readdirSync(join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => `docs/${f}`),
];
const read = (file: string) => readFileSync(join(root, file), "utf8");
const targets = new Set([...read("Makefile").matchAll(/^([a-z][a-z0-9-]*):/gm)].map((m) => m[1]!));
/** Targets the replay runs; the others (verify, bench, test, ...) take minutes and have tests of their own. */
const REPLAYED = new Set([
  ...["up", "down", "ps", "kill", "start", "logs", "config", "scale", "help"],
  ...["restart-redis", "failover-redis", "start-redis-node"],
]);
/** Targets that talk to a running cluster: one is started first when none is up. */
const NEEDS_CLUSTER = new Set([
  "ps",
  "kill",
  "start",
  "logs",
  "scale",
  "restart-redis",
  "failover-redis",
  "start-redis-node",
]);
const LB = "127.0.0.1:8080";

interface Step {
  file: string;
  line: number;
  command: string;
  shown: string[];
}
type Kind = { make: string } | { curl: true };

/** Every `$ command` in a ```console block, with the lines shown under it. */
function steps(file: string): Step[] {
  const out: Step[] = [];
  let inConsole = false;
  read(file)
    .split("\n")
    .forEach((text, i) => {
      if (/^```console\s*$/.test(text)) inConsole = true;
      else if (inConsole && /^```/.test(text)) inConsole = false;
      else if (inConsole && text.startsWith("$ ")) out.push({ file, line: i + 1, command: text.slice(2), shown: [] });
      else if (inConsole && out.length) out.at(-1)!.shown.push(text.trimEnd());
    });
  return out;
}

/** A make target or a curl (alone or in a `for` loop), optionally piped into grep; undefined otherwise. */
function kind(command: string): Kind | undefined {
  const [first, ...pipes] = command.split(/\s\|\s/);
  if (pipes.some((p) => !/^\s*grep\s/.test(p))) return undefined;
  const bare = first!.replace(/^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+/, "");
  const make = /^make\s+([a-z][a-z0-9-]*)/.exec(bare);
  if (make) return { make: make[1]! };
  if (/^curl\s/.test(bare) || /^for [^;]+; do curl\s[^;]+; done$/.test(bare)) return { curl: true };
  return undefined;
}

// Output is compared by shape: what varies between runs (ports, ids, hashes, times, metric values,
// Compose project names) is a placeholder, and what the placeholders stood for is remembered, so a later
// command that uses a shown id or replica URL gets the real one. JSON is compared by keys, plus the
// values of `count`, `error` and booleans (message wording may change).
const VARYING = new RegExp(
  [
    String.raw`(?<url>https?://127\.0\.0\.1:\d+)`,
    String.raw`(?<composeName>[\w.-]+[-_]app[-_]\d+)`,
    String.raw`(?<makefileLine>Makefile:\d+)`,
    String.raw`(?<makeLevel>make\[\d+\])`,
    String.raw`(?<replica>\bapp-\d+\b)`,
    String.raw`(?<redisNode>\bredis-\d+\b)`,
    String.raw`(?<id>[A-Za-z0-9%+/._=-]*\d[A-Za-z0-9%+/._=-]*)`,
  ].join("|"),
  "g",
);
interface Shape {
  skeleton: string;
  json?: unknown;
  captures: string[];
}

function shape(line: string): Shape {
  const captures: string[] = [];
  const normalize = (text: string) =>
    text
      .replace(/^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) [\d.e+-]+$/, "$1 #") // a metric sample's value
      .replace(VARYING, (m, ...args) => {
        const g = args.at(-1) as Record<string, string | undefined>;
        if (g.url) return (captures.push(m), "URL");
        if (g.composeName) return (captures.push(m), "*app" + /\d+$/.exec(m)![0]);
        if (g.makefileLine) return "Makefile:#";
        if (g.makeLevel) return "make";
        if (g.replica) return "app-#"; // which replica answers depends on nginx's two workers
        if (g.redisNode) return "redis-#"; // which replica Sentinel promotes varies

        if (/^\d+\.\d+s?$/.test(m)) return "#.#"; // a time or a ratio
        if (m.length >= 12) return (captures.push(m), "ID");
        return m;
      })
      .replace(/\s+/g, " ")
      .trim();
  const j = /^([\w-]*\s*\|\s*)?(\{.*\})$/.exec(line.trim());
  if (j) {
    try {
      return { skeleton: normalize(j[1] ?? "") + " JSON", json: JSON.parse(j[2]!), captures };
    } catch {
      // not JSON after all: compared as text
    }
  }
  return { skeleton: normalize(line), captures };
}

function jsonFits(shown: unknown, actual: unknown, key = ""): boolean {
  if (shown !== null && typeof shown === "object") {
    if (actual === null || typeof actual !== "object") return false;
    return Object.entries(shown).every(
      ([k, v]) => k in actual && jsonFits(v, (actual as Record<string, unknown>)[k], k),
    );
  }
  if (key === "count" || key === "error" || typeof shown === "boolean") return shown === actual;
  return typeof shown === typeof actual;
}

function fits(shown: Shape, actual: Shape): boolean {
  if (shown.skeleton !== actual.skeleton) return false;
  return shown.json === undefined || jsonFits(shown.json, actual.json);
}

/** The shown lines in order within the actual ones (lines may be left out, not added); the placeholders' values. */
function match(shown: string[], actual: string[]): { ok: boolean; missing?: string; values: Map<string, string> } {
  const values = new Map<string, string>();
  const got = actual.map(shape);
  let at = 0;
  for (const line of shown) {
    if (line === "..." || line === "") continue;
    const want = shape(line);
    while (at < got.length && !fits(want, got[at]!)) at++;
    if (at === got.length) return { ok: false, missing: line, values };
    want.captures.forEach((c, i) => {
      if (c !== got[at]!.captures[i]) values.set(c, got[at]!.captures[i]!);
    });
    at++;
  }
  return { ok: true, values };
}

/** Which replica answered each line: `<- name`, an X-Replica header, a JSON "replica". */
function replicas(lines: string[]): string[] {
  return lines.flatMap((l) => {
    const m = /<-\s+(\S+)/.exec(l) ?? /^x-replica:\s*(\S+)/i.exec(l) ?? /"replica":"([^"]+)"/.exec(l);
    return m ? [m[1]!] : [];
  });
}

describe("README and docs/", () => {
  it("mention only make targets that exist", () => {
    const mentioned = [...docFiles, "loadtest/bench/README.md"].flatMap((f) =>
      [...read(f).matchAll(/`(?:[A-Z_][A-Z0-9_]*=\S*\s+)*make ([a-z][a-z0-9-]*)/g)].map((m) => `${f}: make ${m[1]}`),
    );
    expect(mentioned.length).toBeGreaterThan(20);
    expect(mentioned.filter((m) => !targets.has(m.split("make ")[1]!))).toEqual([]);
  });

  it("show only commands that are make targets or curls", () => {
    const all = docFiles.flatMap(steps);
    expect(all.length).toBeGreaterThan(20);
    const bad = all.filter((s) => {
      const k = kind(s.command);
      return !k || ("make" in k && !targets.has(k.make));
    });
    expect(bad.map((s) => `${s.file}:${s.line}: ${s.command}`)).toEqual([]);
  });

  // The replay: one file at a time, in a fresh folder (so `jar` starts empty). `make` resolves to a wrapper
  // that runs this Makefile and gives `make up` the test's port; 127.0.0.1:8080 in a curl becomes that port.
  const docker = dockerAvailable();
  const requireDocker = process.env.REQUIRE_DOCKER === "1";
  const work = mkdtempSync(join(tmpdir(), "docs-replay-"));
  const runDir = join(work, "run");
  const bin = join(work, "bin");
  mkdirSync(bin);
  const realMake = execFileSync("bash", ["-c", "command -v make"], { encoding: "utf8" }).trim();
  writeFileSync(
    join(bin, "make"),
    `#!/bin/sh\nif [ "$1" = up ]; then set -- "$@" "PORT=$DOCS_TEST_PORT"; fi\nexec "${realMake}" -C ` +
      `"${root}" --no-print-directory "$@"\n`,
  );
  chmodSync(join(bin, "make"), 0o755);
  const { MAKEFLAGS: _f, MAKELEVEL: _l, MFLAGS: _m, ...parentEnv } = process.env;
  let port = 0;
  let up = false;
  let cluster: "local" | "compose" | "swarm" = "local";

  const sh = (command: string, cwd: string, clusterKind = cluster) =>
    new Promise<string>((done) => {
      const env = {
        ...parentEnv,
        PATH: `${bin}:${process.env.PATH}`,
        CLUSTER: clusterKind,
        CLUSTER_RUN_DIR: runDir,
        DOCS_TEST_PORT: String(port),
        // Its own project name, so it never touches a cluster the developer has up.
        COMPOSE_PROJECT_NAME: `esc-docs-${randomBytes(3).toString("hex")}`,
      };
      execFile(
        "bash",
        ["-c", `{ ${command}\n} 2>&1`],
        { cwd, env, timeout: 600_000, maxBuffer: 16 << 20 },
        (_err, stdout) => done(String(stdout)),
      );
    });
  const down = async () => {
    if (up) await sh("make down", work);
    up = false;
  };
  afterAll(async () => {
    await down().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }, 180_000);

  for (const file of docFiles) {
    const shownSteps = steps(file).filter((s) => {
      const k = kind(s.command);
      return k && ("curl" in k || REPLAYED.has(k.make));
    });
    if (!shownSteps.length) continue;
    it(`${file}: every command prints what it shows`, async () => {
      port ||= await freePort();
      const cwd = mkdtempSync(join(work, "cwd-"));
      const values = new Map<string, string>();
      let skipping = false;
      try {
        for (const step of shownSteps) {
          const k = kind(step.command)!;
          const target = "make" in k ? k.make : undefined;
          const where = `${step.file}:${step.line}: $ ${step.command}`;
          if (skipping) {
            if (target === "down") skipping = false;
            continue;
          }
          if (target === "up") {
            await down();
            const shownKind = (re: RegExp) => step.shown.some((l) => re.test(l));
            cluster = shownKind(/\(compose\)|Docker Compose/) ? "compose" : shownKind(/\(swarm\)/) ? "swarm" : "local";
            if (cluster !== "local" && !docker) {
              expect(requireDocker, `${where}: REQUIRE_DOCKER=1 and no Docker engine answers`).toBe(false);
              console.log(`skipped: no Docker engine (${step.file}:${step.line}, up to its make down)`);
              skipping = true;
              cluster = "local";
              continue;
            }
          } else if (!up && (!("make" in k) || NEEDS_CLUSTER.has(target!))) {
            cluster = "local";
            const started = await sh("make up", work);
            up = started.includes("cluster up");
            expect(started, `starting a cluster for ${where}`).toContain("cluster up (local)");
          }
          if ("curl" in k) {
            for (const url of step.command.match(/https?:\/\/127\.0\.0\.1:\d+/g) ?? []) {
              expect(
                url.endsWith(LB) || values.has(url),
                `${where}: ${url} is neither the load balancer nor a replica URL shown above`,
              ).toBe(true);
            }
          }
          let command = step.command.replaceAll(LB, `127.0.0.1:${port}`);
          for (const [from, to] of [...values].sort((a, b) => b[0].length - a[0].length))
            command = command.replaceAll(from, to);

          // make ps, make logs and /metrics only read: they may lag a moment (logs are flushed every 100 ms).
          const readOnly = target === "ps" || target === "logs" || command.includes("/metrics");
          let output = "";
          let result: ReturnType<typeof match> = { ok: false, values: new Map() };
          for (let attempt = 0; attempt < (readOnly ? 10 : 1) && !result.ok; attempt++) {
            if (attempt) await sleep(300);
            output = await sh(command, cwd);
            if (target === "up") up ||= output.includes("cluster up");
            result = match(
              step.shown,
              output.split("\n").map((l) => l.replace(/\r$/, "").trimEnd()),
            );
          }
          expect(
            result.ok,
            `${where}\nthis line is not in the output, in order: ${result.missing}\noutput:\n${output}`,
          ).toBe(true);
          for (const [from, to] of result.values) values.set(from, to);

          // Round-robin: answers the docs show from several replicas come from several replicas here too.
          const shownFrom = replicas(step.shown);
          if (new Set(shownFrom).size > 1 && shownFrom.length >= 3) {
            expect(
              new Set(replicas(output.split("\n"))).size,
              `${where}: every answer came from one replica\n${output}`,
            ).toBeGreaterThan(1);
          }
          if (target === "down") up = false;
        }
      } finally {
        await down();
      }
    }, 1_200_000);
  }
});
