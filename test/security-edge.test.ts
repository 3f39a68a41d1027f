// The request edge, through nginx against real redis-server, nginx and Node replicas
// (LocalCluster): operator endpoints off the public path, cross-site state changes refused,
// one reading of the Cookie header on both session paths, and the JSON body schemas.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";
import { appLogLines } from "./app-logs.ts";
import { waitFor } from "../infra/cluster/wait.ts";
import { Visitor, type Reply, type RequestOptions } from "../loadtest/client/visitor.ts";
import { sessionLabel } from "../services/app/src/session.ts";
import { sessionIdOf } from "./session-cookie.ts";

describe("the request edge, through nginx (local processes, 2 replicas)", () => {
  let cluster: LocalCluster;
  let base: string;
  beforeAll(async () => {
    cluster = LocalCluster.create({ dir: mkdtempSync(join(tmpdir(), "security-edge-")), replicas: 2 });
    await cluster.start();
    base = cluster.baseUrl();
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 120_000);

  /** A visitor with a session at count `n`, and a way to read its count without counting. */
  async function visitorAt(n: number): Promise<Visitor & { count(): Promise<unknown> }> {
    const v = new Visitor(base) as Visitor & { count(): Promise<unknown> };
    for (let i = 0; i < n; i++) expect((await v.increment()).status).toBe(200);
    v.count = async () => (await v.get("/api/session")).json?.count;
    return v;
  }

  describe("operator endpoints", () => {
    it("answers 404 via nginx for /healthz, /readyz and /metrics in any spelling, with no replica data", async () => {
      const v = new Visitor(base);
      for (const path of [
        "/metrics",
        "/metrics/",
        "/METRICS",
        "/Metrics",
        "/metrics?x=1",
        "/readyz",
        "/readyz/",
        "/READYZ",
        "/healthz",
        "/healthz/",
        "/HEALTHZ",
      ]) {
        const r = await v.get(path);
        expect({ path, status: r.status, error: r.json?.error }).toEqual({ path, status: 404, error: "not_found" });
        expect(r.text).not.toMatch(/http_requests_total|process_cpu|"status"/);
      }
    });

    it("serves them on each replica's operator listener; readiness has no error text when Redis is down", async () => {
      for (const r of await cluster.replicas()) {
        expect((await fetch(`${r.opsUrl}/healthz`)).status).toBe(200);
        expect((await fetch(`${r.opsUrl}/metrics`)).status).toBe(200);
        const post = await fetch(`${r.opsUrl}/healthz`, { method: "POST" });
        expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);
        expect((await fetch(`${r.url}/metrics/`)).status).toBe(404);
      }
      await cluster.stopRedis("SIGTERM");
      try {
        for (const r of await cluster.replicas()) {
          let res: Response | undefined;
          await waitFor(
            `${r.name} not ready`,
            async () => (res = await fetch(`${r.opsUrl}/readyz`)).status === 503,
            10_000,
          );
          expect(await res!.json()).toEqual({ status: "redis_unavailable", replica: r.name });
          // Liveness does not depend on Redis.
          expect((await fetch(`${r.opsUrl}/healthz`)).status).toBe(200);
        }
        // What failed goes to the log instead, once per change of state.
        await waitFor(
          "a not_ready log line",
          () =>
            appLogLines(cluster).some(
              (l) => l.event === "not_ready" && l.status === "redis_unavailable" && typeof l.err === "string",
            ),
          5000,
        );
      } finally {
        await cluster.startRedis();
      }
    }, 60_000);
  });

  describe("cross-site state changes", () => {
    const crossSite = { "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate" };

    it("refuses a cross-site navigation to GET /counter or /session-destroy with a 403, changing nothing", async () => {
      const v = await visitorAt(2);
      for (const headers of [crossSite, { "Sec-Fetch-Site": "same-site" }]) {
        for (const path of ["/counter", "/session-destroy"]) {
          const r = await v.get(path, { headers });
          expect({ path, status: r.status, error: r.json?.error }).toEqual({
            path,
            status: 403,
            error: "cross_site_request",
          });
          expect(r.headers.getSetCookie()).toEqual([]);
        }
      }
      expect(await v.count()).toBe(2);
    });

    it("refuses a cross-site POST without a body (no preflight needed) to the counter and to logout", async () => {
      const v = await visitorAt(1);
      expect((await v.post("/api/login", { body: JSON.stringify({ name: "ada" }) })).status).toBe(200);
      const origin = { Origin: "https://evil.example" };
      for (const headers of [
        { ...origin, "Sec-Fetch-Site": "cross-site" },
        origin,
        { Origin: "null" },
        { Origin: `${base}.evil.example` },
      ]) {
        for (const path of ["/api/counter", "/api/logout", "/api/session", "/api/login"]) {
          const r = await v.post(path, { headers });
          expect({ path, headers, status: r.status, error: r.json?.error }).toEqual({
            path,
            headers,
            status: 403,
            error: "cross_site_request",
          });
        }
        expect((await v.request("/api/session", { method: "DELETE", headers })).status).toBe(403);
      }
      expect(await v.count()).toBe(1);
      expect((await v.get("/api/me")).json?.user).toMatchObject({ name: "ada" });
    });

    it("still serves same-origin pages, typed URLs and clients without Origin or Fetch Metadata (curl)", async () => {
      const v = await visitorAt(0);
      expect((await v.get("/counter")).text).toBe("count is 1");
      expect(
        (await v.get("/counter", { headers: { "Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate" } })).text,
      ).toBe("count is 2");
      expect((await v.get("/counter", { headers: { "Sec-Fetch-Site": "same-origin" } })).text).toBe("count is 3");
      // A browser without Fetch Metadata sends Origin on a POST; compared with the site's own.
      expect((await v.post("/api/counter", { headers: { Origin: base } })).json?.count).toBe(4);
      expect(
        (await v.post("/api/counter", { headers: { Origin: base, "Sec-Fetch-Site": "same-origin" } })).json?.count,
      ).toBe(5);
      expect((await v.get("/session-destroy", { headers: { "Sec-Fetch-Site": "same-origin" } })).text).toBe(
        "session destroyed",
      );
      expect(await v.count()).toBe(0);
    });

    it("refuses other spellings of the state-changing routes, and the tutorial's aliases, cross-site", async () => {
      const v = await visitorAt(1);
      for (const path of [
        "/COUNTER",
        "/counter/",
        "/Counter",
        "/session-destroy/",
        "/SESSION-DESTROY",
        "/memory-store-counter",
        "/redis-store-counter",
        "/radis-store-counter",
      ]) {
        const r = await v.get(path, { headers: crossSite });
        expect({ path, status: r.status }).toEqual({ path, status: 403 });
      }
      for (const path of ["/API/COUNTER", "/api/counter/", "/api/Counter", "/api/logout/"]) {
        const r = await v.post(path, { headers: { Origin: "https://evil.example" } });
        expect({ path, status: r.status }).toEqual({ path, status: 403 });
      }
      // Same-origin, those spellings are simply not routes: routing is strict and case-sensitive.
      for (const path of ["/COUNTER", "/counter/", "/api/counter/"]) {
        const r = await v.request(path, { method: path.startsWith("/api") ? "POST" : "GET" });
        expect({ path, status: r.status, error: r.json?.error }).toEqual({ path, status: 404, error: "not_found" });
      }
      expect(await v.count()).toBe(1);
    });

    it("answers HEAD and OPTIONS on the state-changing GET routes with 405 (Allow: GET), running nothing", async () => {
      const v = await visitorAt(3);
      for (const method of ["HEAD", "OPTIONS"]) {
        for (const path of ["/counter", "/session-destroy", "/redis-store-counter"]) {
          const r = await v.request(path, { method });
          expect({ method, path, status: r.status, allow: r.headers.get("allow") }).toEqual({
            method,
            path,
            status: 405,
            allow: "GET",
          });
          expect(r.headers.getSetCookie()).toEqual([]);
        }
      }
      // HEAD on the read-only routes is still a GET without a body, and changes nothing either.
      for (const path of ["/", "/api/session", "/api/me"])
        expect((await v.request(path, { method: "HEAD" })).status).toBeLessThan(500);
      expect(await v.count()).toBe(3);
    });
  });

  describe("in a real browser (headless Chromium): another site's page", () => {
    const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
    let browser: BrowserContext;
    let profile: string;
    let evil: Server;
    let evilPort: number;
    beforeAll(async () => {
      if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}; set CHROMIUM_PATH`);
      // Another site's page: a link to /counter, and a script that POSTs to /api/counter
      // without a body, which needs no CORS preflight.
      evil = createServer((_req, res) => {
        res.setHeader("Content-Type", "text/html");
        res.end(
          `<a id="go" href="${base}/counter">free stuff</a><a id="destroy" href="${base}/session-destroy">more</a>
<script>window.post = () => fetch("${base}/api/counter", ` +
            `{ method: "POST", mode: "no-cors", credentials: "include" }).then(() => "sent");</script>`,
        );
      });
      await new Promise<void>((resolve) => evil.listen(0, "127.0.0.1", resolve));
      evilPort = (evil.address() as AddressInfo).port;
      profile = mkdtempSync(join(tmpdir(), "security-edge-chromium-"));
      browser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
        ],
        timeout: 60_000,
      });
    }, 120_000);
    afterAll(async () => {
      try {
        await browser?.close();
        evil?.close();
      } finally {
        if (profile) rmSync(profile, { recursive: true, force: true });
      }
    });

    // localhost is another site than 127.0.0.1 (SameSite=Lax cookies ride top-level GETs
    // only); 127.0.0.1 on another port is the same site, where the cookie rides every request.
    it.each(["localhost", "127.0.0.1"])(
      "on %s can neither count, nor destroy the session, nor POST to the API with the visitor's cookie",
      async (host) => {
        await browser.clearCookies();
        const page = await browser.newPage();
        try {
          expect(await (await page.goto(`${base}/counter`))!.text()).toBe("count is 1");
          await page.goto(`http://${host}:${evilPort}/`);
          for (const link of ["#go", "#destroy"]) {
            const [res] = await Promise.all([page.waitForResponse((r) => r.url().startsWith(base)), page.click(link)]);
            expect({ link, status: res.status() }).toEqual({ link, status: 403 });
            await page.goBack();
          }
          expect(await page.evaluate("window.post()")).toBe("sent");
          const session = await page.goto(`${base}/api/session`);
          expect((await session!.json()) as unknown).toMatchObject({ count: 1 });
        } finally {
          await page.close();
        }
      },
      60_000,
    );
  });

  describe("one Cookie header, one session, on the one-round-trip path and in express-session", () => {
    /** The session each path picks for `cookie`: the fast path's increment and express-session's read. */
    async function picks(cookie: string): Promise<{ fast: unknown; session: unknown }> {
      const stranger = new Visitor(base);
      const fast: Reply = await stranger.post("/api/counter", { headers: { cookie } });
      expect(fast.status, cookie).toBe(200);
      const read: Reply = await new Visitor(base).get("/api/session", { headers: { cookie } });
      expect(read.status, cookie).toBe(200);
      return { fast: fast.json?.session, session: read.json?.session };
    }

    it("agrees on odd whitespace, duplicate names, quoted values and percent-encoding", async () => {
      const a = (await visitorAt(1)).cookie!;
      const b = (await visitorAt(1)).cookie!;
      const [labelA, labelB] = [a, b].map((c) => sessionLabel(sessionIdOf(c)));
      const valueA = a.slice(a.indexOf("=") + 1);
      const rawA = decodeURIComponent(valueA);
      const allEncoded = [...rawA]
        .map((ch) => `%${ch.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`)
        .join("");
      const headers = [
        `${a}\u00a0`, // a trailing no-break space (byte 0xA0): String.trim() strips it, the cookie package does not
        `sid=\u00a0${valueA}`,
        `\u00a0${a}`,
        `${a}\t`,
        ` sid = ${valueA} ;`,
        `${a}; ${b}`,
        `${b}; ${a}`,
        `sid=; ${a}`,
        `sid; ${a}`,
        `other=1;${a}`,
        `sid="${valueA}"`,
        `sid="${valueA}`,
        `sid=${rawA}`,
        `sid=${allEncoded}`,
        `sid=${valueA}%`,
        `SID=${valueA}`,
      ];
      for (const cookie of headers) {
        const { fast, session } = await picks(cookie);
        // express-session's pick (null: no session) is the reference; the fast path must match it.
        if (session === null) expect([labelA, labelB], `fast path for ${JSON.stringify(cookie)}`).not.toContain(fast);
        else expect({ cookie, fast }).toEqual({ cookie, fast: session });
      }
      // The well-formed variants did reach A (the test would prove nothing if every header failed).
      expect((await picks(` sid = ${valueA} ;`)).session).toBe(labelA);
      expect((await picks(`${b}; ${a}`)).session).toBe(labelB);
    });
  });

  describe("JSON bodies", () => {
    const post = (v: Visitor, path: string, body: string): Promise<Reply> =>
      v.post(path, { body } satisfies RequestOptions);

    it("counts by an integer from 1 to 1000 and refuses anything else with a 400 that says what to send", async () => {
      const v = await visitorAt(0);
      expect((await post(v, "/api/counter", '{"by":5}')).json?.count).toBe(5);
      expect((await post(v, "/api/counter", "{}")).json?.count).toBe(6);
      for (const [body, message] of [
        ['{"by":1.5}', '"by" must be an integer from 1 to 1000.'],
        ['{"by":1,"x":2}', 'Unknown field(s): x. Only "by" is accepted.'],
        ["[1]", 'The body must be a JSON object such as {"by": 1}, or empty.'],
      ] as const) {
        expect((await post(v, "/api/counter", body)).json).toEqual({ error: "invalid_body", message });
      }
      expect(await v.count()).toBe(6);
    });

    it("logs in with a trimmed name and refuses a body without one", async () => {
      const v = await visitorAt(0);
      expect((await post(v, "/api/login", "{}")).json).toEqual({
        error: "invalid_body",
        message: '"name" is required: a string of 1 to 64 characters.',
      });
      expect((await post(v, "/api/login", '{"name":"  grace  "}')).json?.user).toEqual({ name: "grace" });
    });
  });
});
