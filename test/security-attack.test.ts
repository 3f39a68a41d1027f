// Hostile requests a second review found, through nginx against real redis-server, nginx and
// Node replicas (LocalCluster): each one once cost a replica far more than the client, or got
// an answer that was not the API's JSON error.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { AddressClient } from "./address-client.ts";
import { Visitor } from "../loadtest/client/visitor.ts";

describe("hostile requests through nginx (local processes, 2 replicas)", () => {
  let cluster: LocalCluster;
  let base: string;
  beforeAll(async () => {
    cluster = LocalCluster.create({ dir: mkdtempSync(join(tmpdir(), "security-attack-")), replicas: 2 });
    await cluster.start();
    base = cluster.baseUrl();
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 120_000);

  it("answers 60 requests for an 8 KB path of slashes cheaply: a bystander's keyed increments all succeed meanwhile", async () => {
    // A path of ~8 KB of "/" and one letter (the longest request line nginx takes) once cost a
    // replica ~0.45 s of CPU in a trailing-slash regex that backtracks quadratically; 60 of them
    // from one address held both replicas for seconds, and other clients' requests timed out.
    const flooder = new AddressClient(base, "127.0.0.2", { maxSockets: 60 });
    const bystander = new AddressClient(base, "127.0.0.3");
    try {
      expect((await bystander.request("/api/session", { method: "POST" })).status).toBe(201);
      const path = `${"/".repeat(8000)}a`;
      const flood = Promise.all(Array.from({ length: 60 }, () => flooder.request(path)));
      const answers: number[] = [];
      for (let i = 0; i < 5; i++) answers.push((await bystander.increment(`bystander-${i}`)).status);
      const floodStatuses = (await flood).map((a) => a.status);
      expect(new Set(floodStatuses)).toEqual(new Set([404]));
      expect(answers).toEqual([200, 200, 200, 200, 200]);
    } finally {
      flooder.close();
      bystander.close();
    }
  });
  it("answers an unsatisfiable Range or a failed precondition on an asset with its 4xx in JSON, not a 500", async () => {
    const v = new Visitor(base);
    for (const [headers, status, error] of [
      [{ range: "bytes=999999-" }, 416, "range_not_satisfiable"],
      [{ "if-match": '"nope"' }, 412, "precondition_failed"],
      [{ "if-unmodified-since": "Mon, 01 Jan 1990 00:00:00 GMT" }, 412, "precondition_failed"],
    ] as const) {
      const r = await v.get("/assets/favicon.svg", { headers });
      expect({ status: r.status, type: r.headers.get("content-type"), error: r.json?.error }).toEqual({
        status,
        type: "application/json; charset=utf-8",
        error,
      });
    }
    expect((await v.get("/assets/favicon.svg", { headers: { range: "bytes=0-3" } })).status).toBe(206);
  });
});
