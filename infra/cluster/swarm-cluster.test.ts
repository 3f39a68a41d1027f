// What only an orchestrator does, on a Docker Swarm stack (SwarmCluster): replace a SIGKILLed
// task by itself, roll every task under load, with nginx following alone; and its published
// port kept to loopback. SWARM_TEST=full adds the shared cluster scenarios, SWARM_TEST=0 skips.
// Without a Docker engine it skips, unless REQUIRE_DOCKER=1 (CI). A swarm this file had to
// create is left again by the last cluster's stop(), so the engine ends as it started.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterScenarios } from "../../test/cluster-scenarios.ts";
import { LOAD_APP_ENV } from "../../loadtest/client/load-env.ts";
import { TransportError, Visitor } from "../../loadtest/client/visitor.ts";
import { classify } from "../../loadtest/harness/history.ts";
import { composeCommand, docker, dockerAvailable } from "./docker.ts";
import { SwarmCluster, swarmState } from "./swarm-cluster.ts";

const missing = !dockerAvailable()
  ? "no Docker engine"
  : !composeCommand()
    ? "no docker compose or docker-compose"
    : undefined;

/**
 * A keyed increment, sent again with the same key while its outcome is unknown (what the API
 * tells a client to do, and what `make verify`'s users do, by history.ts's classify): a reset
 * connection (each nginx reload, the 1.22 watcher's way to follow the tasks, closes idle client
 * keep-alive connections, and a request racing that close is reset unanswered), or a 503
 * store_timeout (a Redis command slower than the app's timeout on a loaded host). Each resend
 * is counted and printed.
 */
async function incrementOnce(v: Visitor): Promise<Awaited<ReturnType<Visitor["increment"]>>> {
  const key = randomUUID();
  for (let attempt = 1; ; attempt++) {
    let reason: string;
    try {
      const r = await v.increment(key);
      const c = classify(r.status, typeof r.json?.error === "string" ? r.json.error : undefined);
      if (c.outcome !== "indeterminate" || attempt >= 5) return r;
      reason = c.reason;
    } catch (err) {
      if (!(err instanceof TransportError) || attempt >= 5) throw err;
      reason = err.code;
    }
    resent.set(reason, (resent.get(reason) ?? 0) + 1);
    await sleep(100 * attempt);
  }
}
const resent = new Map<string, number>();

const canMakeNetns = process.getuid?.() === 0 && spawnSync("ip", ["netns", "list"]).status === 0;

const make = (opts: Parameters<typeof SwarmCluster.create>[0] extends infer O ? Omit<O, "dir"> : never) =>
  SwarmCluster.create({
    ...opts,
    dir: mkdtempSync(join(tmpdir(), "swarm-cluster-")),
    stack: `esc-test-${randomBytes(4).toString("hex")}`,
  });

if (process.env.SWARM_TEST === "0") {
  // Runs whenever a Docker engine answers: two runs in a row passed in 100 s and 87 s (load 18
  // to 2); at load 26-30 a run took 5-5.6 min, within its 600 s timeouts. SWARM_TEST=0 skips it.
  console.log("skipped: SWARM_TEST=0 (SWARM_TEST=full adds the shared scenarios)");
  describe.skip("Docker Swarm", () => it("runs unless SWARM_TEST=0", () => {}));
} else if (missing) {
  if (process.env.REQUIRE_DOCKER === "1")
    throw new Error(`REQUIRE_DOCKER=1 but there is ${missing}: the Swarm tier cannot run`);
  console.log(`skipped: ${missing} (the Docker Swarm tier needs one; REQUIRE_DOCKER=1 turns this into a failure)`);
  describe.skip("Docker Swarm", () => it("needs a Docker engine", () => {}));
} else {
  // The shared scenarios (test/cluster-scenarios.ts) take a second cluster and many minutes on
  // Swarm; `make test` runs only what Swarm adds, SWARM_TEST=full runs both.
  if (process.env.SWARM_TEST === "full") clusterScenarios("Docker Swarm", (opts) => make(opts), { start: 600_000 });

  describe("Docker Swarm: what the orchestrator does by itself", () => {
    let cluster: SwarmCluster;
    let swarmBefore: string;
    beforeAll(async () => {
      swarmBefore = await swarmState();
      // Thousands of keyed increments from one address and a few sessions: no per-client limit,
      // no key cap (as the shared scenarios run).
      cluster = make({ replicas: 3, port: 0, clientLimits: false, appEnv: { ...LOAD_APP_ENV } });
      await cluster.start();
    }, 600_000);
    afterAll(async () => {
      await cluster?.stop();
      // Other projects share this engine: a swarm this file created is gone, one it found stays.
      // (Another stack on a swarm it created keeps that swarm, and says so.)
      if ((await docker(["stack", "ls", "-q"]).catch(() => "")).trim() === "")
        expect(await swarmState()).toBe(swarmBefore);
    }, 600_000);

    // Another host, as the kernel sees it: a network namespace behind a veth pair whose host end
    // is an address of this host. Its connects to the port are DNATed to nginx like a remote
    // client's; loopback is the only way in. Needs root and ip(8), as the port guard does.
    it.skipIf(!canMakeNetns)(
      "publishes nginx to loopback only: a connect from another network gets no answer",
      () => {
        const port = new URL(cluster.baseUrl()).port;
        const ns = `escsw${randomBytes(3).toString("hex")}`;
        const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
        const node = (netns: boolean) =>
          execFileSync(
            netns ? "ip" : process.execPath,
            [
              ...(netns ? ["netns", "exec", ns, process.execPath] : []),
              "-e",
              `fetch('http://${netns ? "10.199.7.1" : "127.0.0.1"}:${port}/nginx-health',` +
                "{signal:AbortSignal.timeout(3000)}).then(r=>console.log(r.status),e=>console.log(e.name))",
            ],
            { encoding: "utf8", timeout: 30_000 },
          ).trim();
        try {
          ip("netns", "add", ns);
          ip("link", "add", `${ns}h`, "type", "veth", "peer", "name", `${ns}n`);
          ip("link", "set", `${ns}n`, "netns", ns);
          ip("addr", "add", "10.199.7.1/30", "dev", `${ns}h`);
          ip("link", "set", `${ns}h`, "up");
          ip("netns", "exec", ns, "ip", "addr", "add", "10.199.7.2/30", "dev", `${ns}n`);
          ip("netns", "exec", ns, "ip", "link", "set", `${ns}n`, "up");
          expect(node(false)).toBe("200");
          expect(node(true)).toBe("TimeoutError");
        } finally {
          // Either may be gone already (deleting the namespace deletes the veth pair): no throw.
          spawnSync("ip", ["netns", "del", ns]);
          spawnSync("ip", ["link", "del", `${ns}h`]);
        }
      },
      60_000,
    );

    it("replaces a SIGKILLed task by itself; nginx routes to the new one while the count goes on", async () => {
      const v = new Visitor(cluster.baseUrl());
      let count = 0;
      const next = async () => {
        const r = await incrementOnce(v);
        expect(r.status).toBe(200);
        expect(r.json?.count).toBe(++count);
        return r.replica;
      };
      for (let i = 0; i < 3; i++) await next();
      await cluster.killReplica(2, "SIGKILL");
      let back = false;
      const until = Date.now() + 120_000;
      for (let i = 0; i < 5000 && !back && Date.now() < until; i++) back = (await next()) === "app-2";
      expect(back).toBe(true);
    }, 300_000);

    it("loses and doubles no keyed increment through `docker service update --force` under load", async () => {
      const visitors = Array.from({ length: 4 }, () => new Visitor(cluster.baseUrl()));
      const counts: number[][] = visitors.map(() => []);
      const statuses: number[] = [];
      let stop = false;
      const load = Promise.all(
        visitors.map(async (v, i) => {
          for (let n = 0; !stop && n < 20_000; n++) {
            const r = await incrementOnce(v);
            statuses.push(r.status);
            if (r.status === 200) counts[i]!.push(r.json?.count as number);
          }
        }),
      );
      try {
        await cluster.rollingUpdate();
      } finally {
        stop = true;
        await load;
      }
      console.log(
        `rolling update: ${statuses.length} keyed increments; resent with their key:`,
        Object.fromEntries(resent),
      );
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      for (const c of counts) expect(c).toEqual(Array.from({ length: c.length }, (_, k) => k + 1));
    }, 600_000);
  });
}
