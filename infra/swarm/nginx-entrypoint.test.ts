// nginx-entrypoint.sh, nginx's command in the Swarm stack, run here with a stand-in `nginx` and
// `getent` (the real ones need a Swarm task): which upstream it writes for which nginx version,
// that nginx accepts that config, and that its watcher reloads nginx only when the set of
// task addresses changes. What it cannot check: nginx >= 1.27.3 itself (Debian's is 1.22), so
// the `resolve` parameter is checked as text and the rest of that config with nginx 1.22.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

const here = import.meta.dirname;
const repoRoot = resolve(here, "../..");
const entrypoint = join(here, "nginx-entrypoint.sh");

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nginx-entrypoint-"));
  // nginx: -v prints the version asked for; -s reload is logged; -g (the foreground start) waits.
  writeFileSync(
    join(dir, "nginx"),
    [
      "#!/bin/sh",
      'case "$1" in',
      '  -v) echo "nginx version: nginx/$FAKE_NGINX_VERSION" >&2 ;;',
      '  -s) echo "$2" >> "$FAKE_DIR/signals" ;;',
      "  -g) exec sleep 60 ;;",
      "esac",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  // getent ahostsv4 tasks.app: one line per address in the addresses file (the healthy tasks).
  writeFileSync(
    join(dir, "getent"),
    '#!/bin/sh\nwhile read -r a; do echo "$a STREAM $2"; echo "$a DGRAM"; done < "$FAKE_DIR/addresses"\n',
    { mode: 0o755 },
  );
  writeFileSync(join(dir, "addresses"), "10.0.1.2\n10.0.1.3\n");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function env(version: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `${dir}:${process.env.PATH ?? ""}`,
    FAKE_NGINX_VERSION: version,
    FAKE_DIR: dir,
    UPSTREAM_CONF: join(dir, "upstream.conf"),
  };
}

/** Starts the entrypoint (dash, as in the stand-in image) in a process group of its own. */
function start(version: string) {
  const child = spawn("sh", [entrypoint], { env: env(version), detached: true, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  return {
    stderr: () => stderr,
    // The watcher is a background subshell: stop the whole group, with kill(2) on -pid itself.
    // Never `kill -KILL -<pgid>` through procps' kill(1): version 4.0.2 reads "-12345" as the
    // options 1, 2, ... and signals pid -1, which is every process on the machine.
    stop: () => {
      if (!child.pid || child.pid <= 1) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Gone already.
      }
    },
  };
}

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (ok()) return;
  throw new Error(`timed out waiting for ${what}`);
}

const upstream = () => readFileSync(join(dir, "upstream.conf"), "utf8");
const reloads = () =>
  existsSync(join(dir, "signals")) ? readFileSync(join(dir, "signals"), "utf8").split("\n").filter(Boolean) : [];

describe("Swarm nginx entrypoint (infra/swarm/nginx-entrypoint.sh)", () => {
  it.each([
    ["1.22.1", "watch"],
    ["1.27.2", "watch"],
    ["1.27.3", "resolve"],
    ["1.28.0", "resolve"],
  ])("on nginx %s follows the tasks by %s", async (version, mode) => {
    const e = start(version);
    try {
      await until("the upstream file", () => existsSync(join(dir, "upstream.conf")) && /}/.test(upstream()));
      await until("nginx to start", () => e.stderr().includes("upstream mode"));
      expect(e.stderr()).toContain(`nginx ${version}, upstream mode ${mode}`);
      const conf = upstream();
      // Both: the name of the app's tasks, Docker's DNS re-asked every second, one shared zone,
      // the keep-alive pool and the retry rules of nginx/nginx.conf.
      expect(conf).toContain("resolver 127.0.0.11 valid=1s ipv6=off;");
      expect(conf).toMatch(/upstream app \{\n\s+zone app 64k;/);
      expect(conf).toMatch(/keepalive 64;\n\s+keepalive_timeout 60s;\n\s+keepalive_requests 10000;/);
      const server = /^\s*server (.*);$/m.exec(conf)?.[1];
      expect(server).toBe(
        mode === "resolve"
          ? "tasks.app:3000 resolve max_fails=1 fail_timeout=2s"
          : "tasks.app:3000 max_fails=1 fail_timeout=2s",
      );
    } finally {
      e.stop();
    }
  });

  it("reloads nginx when a task's address comes or goes, not when DNS only reorders them or has none", async () => {
    const e = start("1.22.1");
    try {
      await until("nginx to start", () => e.stderr().includes("upstream mode watch"));
      writeFileSync(join(dir, "addresses"), "10.0.1.3\n10.0.1.2\n");
      // A replaced task: one address goes, a new one comes.
      await sleep(2500);
      expect(reloads()).toEqual([]);
      writeFileSync(join(dir, "addresses"), "10.0.1.3\n10.0.1.9\n");
      await until("a reload", () => reloads().length === 1);
      expect(e.stderr()).toContain("tasks.app is now 10.0.1.3 10.0.1.9 (was 10.0.1.2 10.0.1.3); reloading nginx");
      // No task in DNS (all restarting): nginx keeps the config it has rather than one with no server.
      writeFileSync(join(dir, "addresses"), "");
      await sleep(2500);
      expect(reloads()).toEqual(["reload"]);
    } finally {
      e.stop();
    }
  });

  it("writes an upstream nginx accepts with the Swarm nginx.conf (nginx -t; `resolve` dropped on 1.22)", async () => {
    const nginx = ["/usr/sbin/nginx", ...(process.env.PATH ?? "").split(":").map((d) => join(d, "nginx"))].find(
      (p) => existsSync(p) && !p.startsWith(dir),
    );
    expect(nginx, "nginx is installed (make test installs it)").toBeDefined();
    const e = start("1.28.0");
    try {
      await until("the upstream file", () => existsSync(join(dir, "upstream.conf")) && /}/.test(upstream()));
    } finally {
      e.stop();
    }
    const conf = join(dir, "conf");
    mkdirSync(conf);
    const local = (text: string) =>
      text
        // One pass: the folder is under /tmp itself.
        .replace(/\/(tmp|etc\/nginx)\//g, `${conf}/`)
        // Node gives a child sockets, not pipes, for its stdio: /dev/stderr cannot be opened.
        .replaceAll("/dev/stderr", `${conf}/error.log`)
        .replaceAll("/dev/stdout", `${conf}/access.log`);
    writeFileSync(join(conf, "nginx.conf"), local(readFileSync(join(here, "nginx.conf"), "utf8")));
    for (const f of ["proxy.conf", "locations.conf", "client-limits.conf"])
      writeFileSync(join(conf, f), local(readFileSync(join(repoRoot, "nginx", f), "utf8")));
    // Here, not in a task: an address for the tasks' name, a local resolver, and nginx 1.22 has
    // no `resolve` (1.27.3): that one word is dropped, everything else is checked as nginx loads it.
    const written = upstream();
    expect(written).toContain("server tasks.app:3000 resolve ");
    writeFileSync(
      join(conf, "upstream.conf"),
      written
        .replace("tasks.app:3000 resolve ", "127.0.0.1:3000 ")
        .replace("resolver 127.0.0.11 ", "resolver 127.0.0.1 "),
    );
    const r = spawnSync(
      nginx!,
      ["-t", "-q", "-p", conf, "-c", join(conf, "nginx.conf"), "-e", join(conf, "error.log")],
      {
        encoding: "utf8",
      },
    );
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});
