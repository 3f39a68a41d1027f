// The cross-site rule in-process (createApp on port 0, memory store): which requests may change state.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../app.ts";
import { loadConfig } from "../config.ts";
import { Lifecycle } from "../lifecycle.ts";
import { createLogger } from "../logger.ts";

async function listen(env: Record<string, string>): Promise<{ server: Server; url: string }> {
  const config = loadConfig({ STORE: "memory", LOG_LEVEL: "silent", ...env });
  const app = createApp({
    config,
    logger: createLogger({ level: "silent", replicaId: "t", flushMs: 0 }),
    redis: undefined,
    lifecycle: new Lifecycle(),
  });
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const status = async (url: string, init: RequestInit = {}) =>
  (await fetch(url, { ...init, redirect: "manual" })).status;

describe("refuseCrossSite, with no PUBLIC_ORIGINS", () => {
  let s: { server: Server; url: string };
  beforeAll(async () => (s = await listen({})));
  afterAll(() => s.server.close());

  it("trusts Sec-Fetch-Site over Origin; compares Origin with the request's own (X-Forwarded-* trusted)", async () => {
    expect(
      await status(`${s.url}/counter`, {
        headers: { "Sec-Fetch-Site": "same-origin", Origin: "https://evil.example" },
      }),
    ).toBe(200);
    expect(await status(`${s.url}/counter`, { headers: { "Sec-Fetch-Site": "cross-site", Origin: s.url } })).toBe(403);
    expect(await status(`${s.url}/api/counter`, { method: "POST", headers: { Origin: s.url } })).toBe(200);
    expect(
      await status(`${s.url}/api/counter`, {
        method: "POST",
        headers: {
          Origin: "https://counter.example",
          "X-Forwarded-Proto": "https",
          "X-Forwarded-Host": "counter.example",
        },
      }),
    ).toBe(200);
    expect(
      await status(`${s.url}/api/counter`, {
        method: "POST",
        headers: {
          Origin: "http://counter.example",
          "X-Forwarded-Proto": "https",
          "X-Forwarded-Host": "counter.example",
        },
      }),
    ).toBe(403);
  });

  it("quotes at most the first 40 characters of a refused Sec-Fetch-Site, and 200 of an Origin", async () => {
    const refused = async (headers: Record<string, string>) => {
      const r = await fetch(`${s.url}/api/counter`, { method: "POST", headers });
      expect(r.status).toBe(403);
      return ((await r.json()) as { message: string }).message;
    };
    const site = await refused({ "Sec-Fetch-Site": `x${"s".repeat(6000)}` });
    expect(site).toContain(`"x${"s".repeat(39)}"`);
    expect(site.length).toBeLessThan(300);
    expect((await refused({ Origin: `https://${"o".repeat(6000)}` })).length).toBeLessThan(400);
  });

  it("leaves reads alone, whatever site they come from", async () => {
    for (const path of ["/", "/api/session"])
      expect(
        await status(s.url + path, { headers: { "Sec-Fetch-Site": "cross-site", Origin: "https://evil.example" } }),
      ).toBe(200);
  });
});

describe("refuseCrossSite, with PUBLIC_ORIGINS", () => {
  let s: { server: Server; url: string };
  beforeAll(async () => (s = await listen({ PUBLIC_ORIGINS: "https://counter.example" })));
  afterAll(() => s.server.close());

  it("accepts an Origin on the list only, even the request's own when it is not listed", async () => {
    expect(
      await status(`${s.url}/api/counter`, { method: "POST", headers: { Origin: "https://counter.example" } }),
    ).toBe(200);
    expect(await status(`${s.url}/api/counter`, { method: "POST", headers: { Origin: s.url } })).toBe(403);
    expect(await status(`${s.url}/api/counter`, { method: "POST" })).toBe(200);
  });
});
