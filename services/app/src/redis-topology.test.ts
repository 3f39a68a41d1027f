// The startup checks that turn a wrong Redis topology into exit 78 (server.ts), each against a
// real redis-server process started here in milliseconds: a Sentinel address where nothing
// listens, a Sentinel that monitors no master of that name, a plain Redis given as a Sentinel,
// and a Redis Cluster with hash slots no primary serves. test/redis-sentinel.test.ts and
// test/redis-cluster.test.ts check the exit code itself on whole clusters.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../../infra/cluster/ports.ts";
import { waitFor } from "../../../infra/cluster/wait.ts";
import { loadConfig } from "./config.ts";
import { checkSentinels } from "./redis.ts";
import { clusterTopologyProblems, uncoveredRanges } from "./redis-topology.ts";

const dir = mkdtempSync(join(tmpdir(), "redis-topology-"));
const procs: ChildProcess[] = [];

/** A redis-server on a free port with `conf` (no password: the default user, as redis-server starts). */
async function redisServer(name: string, conf: string[], sentinel = false): Promise<number> {
  const port = await freePort();
  const file = join(dir, `${name}.conf`);
  writeFileSync(file, [`port ${port}`, "bind 127.0.0.1", `dir "${dir}"`, 'save ""', ...conf, ""].join("\n"));
  const p = spawn("redis-server", sentinel ? [file, "--sentinel"] : [file], { stdio: "ignore" });
  procs.push(p);
  await waitFor(`${name} on ${port}`, async () => {
    const r = new Redis({ port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    r.on("error", () => {});
    try {
      await r.connect();
      return (await r.ping()) === "PONG";
    } finally {
      r.disconnect();
    }
  });
  return port;
}

const sentinelConfig = (sentinels: string, name = "sessions") =>
  loadConfig({
    NODE_ENV: "test",
    REDIS_SENTINELS: sentinels,
    REDIS_SENTINEL_NAME: name,
    REDIS_CONNECT_TIMEOUT_MS: "300",
  });

let plain: number;
let sentinel: number;
beforeAll(async () => {
  plain = await redisServer("plain", []);
  // A Sentinel that monitors `sessions` at the plain server (never reached: only its name counts here).
  sentinel = await redisServer("sentinel", [`sentinel monitor sessions 127.0.0.1 ${plain} 1`], true);
});
afterAll(() => {
  for (const p of procs) p.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

describe("checkSentinels (REDIS_SENTINELS at startup)", () => {
  it("names a Sentinel address where nothing answers", async () => {
    const port = await freePort();
    const r = await checkSentinels(sentinelConfig(`127.0.0.1:${port}`));
    expect(r.problems).toEqual([expect.stringContaining(`REDIS_SENTINELS: Sentinel 127.0.0.1:${port} did not answer`)]);
  });

  it("names a master name the Sentinel does not monitor", async () => {
    const r = await checkSentinels(sentinelConfig(`127.0.0.1:${sentinel}`, "nope"));
    expect(r.problems).toEqual([`REDIS_SENTINEL_NAME: Sentinel 127.0.0.1:${sentinel} monitors no master named "nope"`]);
  });

  it("says when the address is a Redis server, not a Sentinel", async () => {
    const r = await checkSentinels(sentinelConfig(`127.0.0.1:${plain}`));
    expect(r.problems).toEqual([expect.stringContaining(`REDIS_SENTINELS: 127.0.0.1:${plain} is not a Sentinel`)]);
  });

  it("accepts the topology when one Sentinel knows the master, and warns about one that is down", async () => {
    const down = await freePort();
    const r = await checkSentinels(sentinelConfig(`127.0.0.1:${sentinel},127.0.0.1:${down}`));
    expect(r.problems).toEqual([]);
    expect(r.warnings).toEqual([expect.stringContaining(`Sentinel 127.0.0.1:${down} did not answer`)]);
  });
});

describe("clusterTopologyProblems (REDIS_CLUSTER_NODES at startup)", () => {
  it("lists the slot ranges no node serves", () => {
    expect(uncoveredRanges([])).toEqual(["0-16383"]);
    expect(
      uncoveredRanges([
        [0, 100, ["h", 1]],
        [102, 16383, ["h", 2]],
      ]),
    ).toEqual(["101"]);
    expect(uncoveredRanges([[0, 16383, ["h", 1]]])).toEqual([]);
  });

  it("names the hash slots no primary serves on a real cluster node", async () => {
    const port = await redisServer("cluster", [
      "cluster-enabled yes",
      `cluster-port ${await freePort()}`,
      `cluster-config-file "${join(dir, "nodes.conf")}"`,
    ]);
    const admin = new Redis({ port });
    await admin.call("CLUSTER", "ADDSLOTSRANGE", "0", "8191");
    admin.disconnect();
    const config = loadConfig({ NODE_ENV: "test", REDIS_CLUSTER_NODES: `127.0.0.1:${port}` });
    const problems = await clusterTopologyProblems(config, 0);
    expect(problems.join("\n")).toContain("hash slots 8192-16383 have no primary");
  });
});
