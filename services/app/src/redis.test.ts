// createRedis against a real redis-server: the client settings that shape every request's Redis traffic.
import type { Redis } from "ioredis";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { waitFor } from "../../../infra/cluster/wait.ts";
import { startTestRedis } from "../../../test/redis-server.ts";
import { loadConfig } from "./config.ts";
import { createRedis } from "./redis.ts";

describe("createRedis, one Redis", { timeout: 60_000 }, () => {
  it("sends the commands of one event-loop turn as one batch, each answered in order with its own reply", async () => {
    await using server = await startTestRedis({ kind: "process" });
    const config = loadConfig({ REDIS_URL: server.url, REDIS_PASSWORD: server.password, REPLICA_ID: "redis-test" });
    const client = createRedis(config, pino({ level: "silent" })) as Redis;
    try {
      await waitFor("the client to be ready", () => client.status === "ready", 10_000);
      const replies = Promise.all(Array.from({ length: 20 }, (_, i) => client.incrby("batched", i)));
      // Queued for one write at the end of this turn (auto-pipelining), not written one by one.
      expect(client.autoPipelineQueueSize).toBe(20);
      expect(await replies).toEqual(Array.from({ length: 20 }, (_, i) => (i * (i + 1)) / 2));
    } finally {
      client.disconnect();
    }
  });
});
