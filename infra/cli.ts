// The command line behind `make up`, `make kill` and friends. It drives clusters only
// through the Cluster interface, so every command works the same locally and in Compose.
import { parseArgs } from "node:util";
import { parseRedisTopology, type Cluster, type Signal } from "./cluster/cluster.ts";
import type { LocalReplicaInfo } from "./cluster/local-cluster.ts";
import { buildAppImage, resolveBaseImages } from "./images/images.ts";
import { attachCluster, chooseKind, createCluster } from "./cluster/open.ts";
import { waitFor } from "./cluster/wait.ts";

const usage = `usage: node infra/cli.ts <command> [options]
  up [--replicas N] [--port P] [--redis single|sentinel|cluster]
                                   start the cluster (CLUSTER=auto|local|compose|swarm)
  down                             stop it and remove its data
  ps                               list replicas
  logs [--lines N]                 recent log lines of every component
  kill --replica N [--signal KILL|TERM]
  start --replica N
  scale --replicas N
  restart-redis [--signal KILL|TERM]
  failover-redis [--signal KILL|TERM]  stop the Redis primary; resolves once another serves writes
  url                              print the load balancer's URL
  images                           pull or build the base images, build the app image (Compose)`;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    replicas: { type: "string" },
    replica: { type: "string" },
    "deprecated-n": { type: "string" },
    port: { type: "string" },
    signal: { type: "string", default: "TERM" },
    lines: { type: "string", default: "40" },
    redis: { type: "string", default: process.env.REDIS || "single" },
    name: { type: "string" },
  },
});

function intOption(name: string, value: string | undefined, fallback?: number): number {
  if (value === undefined || value === "") {
    if (fallback !== undefined) return fallback;
    throw new Error(`--${name} is required (a whole number)`);
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, not "${value}"`);
  return n;
}

function signalOption(value: string | undefined): Signal {
  const v = (value ?? "TERM").toUpperCase().replace(/^SIG/, "");
  if (v !== "TERM" && v !== "KILL") throw new Error(`--signal must be TERM or KILL, not "${value}"`);
  return `SIG${v}`;
}

async function printRedisNodes(c: Cluster): Promise<void> {
  console.log("");
  const line = (cells: string[]) => console.log(cells.map((cell, i) => cell.padEnd([14, 10, 10, 0][i]!)).join(" "));
  line(["REDIS NODE", "ROLE", "STATE", "ADDRESS"]);
  for (const n of await c.redisNodes())
    line([n.name, n.running ? n.role : "-", n.running ? "running" : "stopped", n.address]);
}

async function running(): Promise<Cluster> {
  const c = await attachCluster();
  if (!c) throw new Error("no cluster is up; run `make up` first");
  return c;
}

async function printReplicas(c: Cluster): Promise<void> {
  const rows = await c.replicas();
  const line = (cells: string[]) =>
    console.log(cells.map((cell, i) => cell.padEnd([8, 8, 8, 14, 24, 0][i]!)).join(" "));
  if (c.kind !== "local") {
    line(["REPLICA", "NAME", "STATE", "X-REPLICA", c.kind === "swarm" ? "TASK" : "CONTAINER"]);
    for (const r of rows) line([String(r.index), r.name, r.running ? "running" : "stopped", r.replicaId, r.detail]);
    return;
  }
  // Local replicas: the public URL, then the operator one (/healthz, /readyz, /metrics).
  line(["REPLICA", "NAME", "STATE", "X-REPLICA", "URL", "OPS URL"]);
  for (const r of rows as LocalReplicaInfo[])
    line([String(r.index), r.name, r.running ? "running" : "stopped", r.replicaId, r.url, r.opsUrl]);
}

async function main(): Promise<void> {
  const [command] = positionals;
  switch (command) {
    case "up": {
      if (await attachCluster()) throw new Error("a cluster is already up; `make down` first, or `make ps` to see it");
      // Redis Cluster runs as local processes only; CLUSTER=auto picks them for it.
      const localOnly = values.redis === "cluster";
      const kind = localOnly && (process.env.CLUSTER ?? "auto") === "auto" ? "local" : chooseKind();
      const common = {
        replicas: intOption("replicas", values.replicas, 3),
        port: intOption("port", values.port, 8080),
        redis: parseRedisTopology(values.redis),
      };
      // Compose reports its image pulls and builds, which can take minutes.
      const log = (line: string) => console.log(`  ${line}`);
      const cluster =
        kind === "local"
          ? createCluster(kind, common)
          : kind === "swarm"
            ? createCluster(kind, { ...common, log })
            : createCluster(kind, { ...common, log });
      const why = kind === "local" && (process.env.CLUSTER ?? "auto") === "auto" ? " (no Docker engine answered)" : "";
      const engine = { local: "local processes", compose: "Docker Compose", swarm: "Docker Swarm" }[kind];
      console.log(`starting ${engine}${why}...`);
      await cluster.start();
      // In Compose a replica reports its container's hostname, not its name: show both.
      const names = (await cluster.replicas()).map((r) =>
        r.replicaId === r.name ? r.name : `${r.name} (${r.detail}, X-Replica ${r.replicaId})`,
      );
      console.log(`cluster up (${kind}): ${cluster.baseUrl()}`);
      console.log(`replicas: ${names.join(", ")}`);
      if (common.redis !== "single") await printRedisNodes(cluster);
      console.log(`try: curl -c jar -b jar ${cluster.baseUrl()}/counter`);
      return;
    }
    case "down": {
      const c = await attachCluster();
      if (!c) return console.log("no cluster is up");
      await c.stop();
      return console.log(`cluster down (${c.kind})`);
    }
    case "ps": {
      const c = await running();
      await printReplicas(c);
      return printRedisNodes(c);
    }
    case "failover-redis": {
      const c = await running();
      const signal = signalOption(values.signal);
      const primary = await c.waitForPrimary({ timeoutMs: 10_000 });
      const t0 = performance.now();
      await c.killRedisNode(primary, signal);
      const next = await c.waitForPrimary({ exclude: primary, timeoutMs: 60_000 });
      // Every running replica has followed the switch (its /readyz pings Redis) before this returns.
      const up = (await c.replicas()).filter((r) => r.running);
      await waitFor(
        "every replica to reach the new primary",
        async () => (await Promise.all(up.map((r) => c.probeReplica(r.index, "/readyz")))).every((x) => x === 200),
        30_000,
        200,
      );
      const s = ((performance.now() - t0) / 1000).toFixed(1);
      console.log(`${primary} stopped with ${signal}; ${next} is the primary (${s} s)`);
      console.log(`start it again as a replica: make start-redis-node NODE=${primary}`);
      return;
    }
    case "start-redis-node": {
      const c = await running();
      if (!values.name) throw new Error("NODE= is required: a Redis node's name from make ps");
      await c.startRedisNode(values.name);
      return console.log(`${values.name} started`);
    }
    case "logs":
      return console.log(await (await running()).logs(intOption("lines", values.lines, 40)));
    case "kill": {
      const c = await running();
      const n = intOption("replica", values.replica);
      const signal = signalOption(values.signal);
      await c.killReplica(n, signal);
      return console.log(`replica ${n} stopped with ${signal}`);
    }
    case "start": {
      const c = await running();
      const n = intOption("replica", values.replica);
      await c.startReplica(n);
      return console.log(`replica ${n} started and ready`);
    }
    case "scale": {
      // `make scale N=5` came before REPLICAS; it still works, with a warning.
      const old = values["deprecated-n"];
      if (old) console.error(`make scale: N= is deprecated, use REPLICAS=${old}`);
      if (!old && !values.replicas) throw new Error("say how many replicas, e.g. make scale REPLICAS=5");
      const n = old ? intOption("replicas", old) : intOption("replicas", values.replicas);
      const c = await running();
      await c.scale(n);
      return printReplicas(c);
    }
    case "restart-redis": {
      const c = await running();
      const signal = signalOption(values.signal);
      await c.stopRedis(signal);
      await c.startRedis();
      return console.log(`redis restarted (stopped with ${signal}); replicas reconnected`);
    }
    case "url":
      return console.log((await running()).baseUrl());
    case "images": {
      const log = (line: string) => console.log(`  ${line}`);
      const images = await resolveBaseImages(log);
      for (const [k, v] of Object.entries(images)) console.log(`${k}=${v}`);
      return buildAppImage(images.NODE_IMAGE, undefined, log);
    }
    default:
      console.error(usage);
      process.exitCode = 2;
  }
}

main().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exitCode = 1;
});
