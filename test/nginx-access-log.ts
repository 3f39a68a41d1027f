// nginx's JSON access log (nginx/proxy.conf's log_format) of a local cluster, read by request id:
// which replicas nginx sent one request to, in order, and what each answered.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { LocalCluster } from "../infra/cluster/local-cluster.ts";

export type Attempts = { addrs: string[]; statuses: string[] };

/** The access log line of request `requestId`, parsed (waits up to 5 s for it). */
export async function accessLogLine(
  cluster: LocalCluster,
  requestId: string | undefined | null,
): Promise<Record<string, unknown>> {
  if (!requestId) throw new Error("the reply carries no X-Request-ID");
  const file = join(cluster.dir, "logs", "nginx-access.log");
  for (let i = 0; i < 50; i++) {
    const line = readFileSync(file, "utf8")
      .split("\n")
      .find((l) => l.includes(`"request_id":"${requestId}"`));
    if (line) return JSON.parse(line) as Record<string, unknown>;
    await sleep(100);
  }
  throw new Error(`no access log line for request ${requestId}`);
}

/** The upstream attempts of request `requestId`, from its access log line (waits up to 5 s for it). */
export async function attemptsOf(cluster: LocalCluster, requestId: string | undefined): Promise<Attempts> {
  const line = (await accessLogLine(cluster, requestId)) as { upstream_addr: string; upstream_status: string };
  return { addrs: line.upstream_addr.split(", "), statuses: line.upstream_status.split(", ") };
}

/** The replicas nginx sent request `requestId` to, in order. */
export async function upstreamsOf(cluster: LocalCluster, requestId: string | undefined): Promise<string[]> {
  return (await attemptsOf(cluster, requestId)).addrs;
}
