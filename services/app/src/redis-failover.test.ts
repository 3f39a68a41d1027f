// createRedis in Sentinel mode against a real redis-server and a stand-in Sentinel that the test
// drives: it can hold the client's "where is the primary?" question and announce +switch-master
// at a moment of the test's choosing, which a real failover only hits by chance.
import { createServer, type Server, type Socket } from "node:net";
import { pino } from "pino";
// The RESP parser ioredis itself uses; a request is a RESP array like any reply.
import RedisParser from "redis-parser";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startTestRedis, type TestRedis } from "../../../test/redis-server.ts";
import { waitFor } from "../../../infra/cluster/wait.ts";
import { loadConfig } from "./config.ts";
import { createRedis } from "./redis.ts";

const NAME = "sessions";

const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
const array = (items: string[]) => `*${items.length}\r\n${items.map(bulk).join("")}`;

/** Answers what ioredis asks a Sentinel: the primary's address, its Sentinels, +switch-master. */
class StandInSentinel implements AsyncDisposable {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #subscribers = new Set<Socket>();
  #held: (() => void)[] = [];
  /** While set, questions for the primary's address wait for release(). */
  hold = false;
  asked = 0;

  readonly primary: { host: string; port: number };

  constructor(primary: { host: string; port: number }) {
    this.primary = primary;
    this.#server = createServer((sock) => {
      this.#sockets.add(sock);
      sock.on("close", () => {
        this.#sockets.delete(sock);
        this.#subscribers.delete(sock);
      });
      sock.on("error", () => {});
      const parser = new RedisParser({
        returnReply: (args: string[]) => this.#answer(sock, args),
        returnError: () => sock.destroy(),
      });
      sock.on("data", (d) => parser.execute(d));
    });
  }

  #answer(sock: Socket, args: string[]): void {
    const [cmd, sub] = args.map((a) => a.toLowerCase());
    if (cmd === "sentinel" && sub === "get-master-addr-by-name") {
      this.asked++;
      const reply = () => sock.write(array([this.primary.host, String(this.primary.port)]));
      if (this.hold) this.#held.push(reply);
      else reply();
    } else if (cmd === "sentinel") sock.write("*0\r\n");
    else if (cmd === "subscribe") {
      this.#subscribers.add(sock);
      sock.write(`*3\r\n${bulk("subscribe")}${bulk(args[1]!)}:1\r\n`);
    } else sock.write("+OK\r\n"); // CLIENT SETNAME and the like
  }

  get held(): number {
    return this.#held.length;
  }

  release(): void {
    this.hold = false;
    for (const reply of this.#held.splice(0)) reply();
  }

  switchMaster(from: number, to: number): void {
    const msg = `${NAME} 127.0.0.1 ${from} 127.0.0.1 ${to}`;
    for (const s of this.#subscribers) s.write(array(["message", "+switch-master", msg]));
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return (this.#server.address() as { port: number }).port;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

describe("the Redis client in Sentinel mode", () => {
  let server: TestRedis;
  let sentinel: StandInSentinel;
  let redis: Redis | undefined;

  beforeAll(async () => {
    server = await startTestRedis({ kind: "process" });
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    redis?.disconnect();
    redis = undefined;
    await sentinel?.[Symbol.asyncDispose]();
  });

  async function connect(): Promise<Redis> {
    sentinel = new StandInSentinel({ host: "127.0.0.1", port: server.port });
    const port = await sentinel.listen();
    const config = loadConfig({
      REDIS_SENTINELS: `127.0.0.1:${port}`,
      REDIS_SENTINEL_NAME: NAME,
      REDIS_PASSWORD: server.password,
      REPLICA_ID: "failover-test",
    });
    // Sentinel mode always builds a single-server client, never a Cluster.
    const client = createRedis(config, pino({ level: "silent" })) as Redis;
    await waitFor("the client to be ready", () => client.status === "ready", 10_000);
    await waitFor("the +switch-master subscription", () => sentinel.subscribers > 0, 10_000);
    return client;
  }

  /** Drops the client's connection from the server side, as a dying primary does. */
  async function dropConnection(client: Redis): Promise<void> {
    const id = String(await client.client("ID"));
    await server.admin.client("KILL", "ID", id);
  }

  it("still reconnects when +switch-master arrives while it is asking the Sentinels for the primary", async () => {
    redis = await connect();
    sentinel.hold = true;
    await dropConnection(redis);
    await waitFor("the client to ask for the primary", () => sentinel.held > 0, 10_000);
    // A failover announced in the middle of that question (ioredis's own failoverDetector
    // aborted the connect here, and the client then failed every command until restarted).
    sentinel.switchMaster(1, server.port);
    sentinel.release();
    const client = redis;
    await waitFor("the client to be ready again", () => client.status === "ready", 10_000);
    expect(await client.ping()).toBe("PONG");
  });

  it("leaves the server the primary switched away from, and ignores the news once on the new one", async () => {
    redis = await connect();
    let reconnects = 0;
    redis.on("reconnecting", () => reconnects++);
    // Already on the announced primary: nothing to do. Then the switch away from it.
    sentinel.switchMaster(1, server.port);
    sentinel.switchMaster(server.port, 2);
    const client = redis;
    await waitFor("the client to reconnect", () => reconnects > 0, 10_000);
    await waitFor("the client to be ready again", () => client.status === "ready", 10_000);
    expect(reconnects).toBe(1);
    expect(await client.ping()).toBe("PONG");
  });
});
