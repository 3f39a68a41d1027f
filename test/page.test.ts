// The page at / in headless Chromium (Debian's package, driven by playwright-core; no browser
// download) against a real local cluster: clicks, round-robin, a replica killed mid-session.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { LocalCluster } from "../infra/cluster/local-cluster.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// The README shows docs/screenshot.png; a run refreshes it only when asked, so that a test run
// leaves the work tree clean. Otherwise the picture goes with the other reports.
const SCREENSHOT =
  process.env.UPDATE_SCREENSHOT === "1"
    ? resolve(import.meta.dirname, "../docs/screenshot.png")
    : resolve(import.meta.dirname, "../loadtest/reports/page-screenshot.png");

let cluster: LocalCluster;
let browser: BrowserContext;
let profile: string;
let page: Page;
/** Problems the page reported: uncaught errors and CSP violations. */
let pageProblems: string[];
let requestedUrls: string[];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `no Chromium at ${CHROMIUM}; \`make test\` installs Debian's package (infra/ensure-system-deps.sh ` +
        `chromium), or set CHROMIUM_PATH`,
    );
  cluster = LocalCluster.create({ dir: mkdtempSync(join(tmpdir(), "page-")), replicas: 3, port: 0 });
  await cluster.start();
  profile = mkdtempSync(join(tmpdir(), "chromium-profile-"));
  // A persistent context is how playwright takes a --user-data-dir of our choosing.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1200, height: 700 },
    timeout: 60_000,
  });
}, 180_000);

afterAll(async () => {
  try {
    await browser?.close();
  } finally {
    if (profile) rmSync(profile, { recursive: true, force: true });
    await cluster?.stop();
  }
}, 120_000);

beforeEach(async () => {
  await browser.clearCookies();
  for (const p of browser.pages()) await p.close();
  page = await browser.newPage();
  pageProblems = [];
  requestedUrls = [];
  page.on("pageerror", (err) => pageProblems.push(`uncaught: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) pageProblems.push(msg.text());
  });
  page.on("request", (req) => requestedUrls.push(req.url()));
});

const servedBy = () => page.locator("#served-by").textContent();

async function waitForCount(n: number): Promise<void> {
  await page.waitForFunction((want) => document.getElementById("count")?.textContent === want, String(n), {
    timeout: 10_000,
  });
}

/** Clicks Increment and waits until the page shows `expected`. */
async function increment(expected: number): Promise<string> {
  await page.getByRole("button", { name: "Increment" }).click();
  await waitForCount(expected);
  return (await servedBy())!;
}

async function openPage(): Promise<void> {
  const res = await page.goto(cluster.baseUrl());
  expect(res?.status()).toBe(200);
  expect(res?.headers()["content-security-policy"]).toContain("script-src 'self'");
  await waitForCount(0);
}

describe("the page at /", () => {
  it("counts up as replicas take turns, and on when the replica that served the last click is SIGKILLed", async () => {
    await openPage();
    const served: string[] = [];
    for (let n = 1; n <= 6; n++) served.push(await increment(n));
    expect(new Set(served).size).toBeGreaterThanOrEqual(2);
    const stripNames = await page
      .locator("#strip li")
      .evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.replica));
    expect(new Set(stripNames.filter(Boolean)).size).toBeGreaterThanOrEqual(2);

    const victim = (await cluster.replicas()).find((r) => r.replicaId === served.at(-1))!;
    await cluster.killReplica(victim.index, "SIGKILL");
    for (let n = 7; n <= 12; n++) expect(await increment(n)).not.toBe(victim.replicaId);
    expect(await page.locator("#error").textContent()).toBe("");
    // nginx moved each click to a live replica itself; the page never saw a failure.
    expect(await page.locator("#strip li.failed").count()).toBe(0);

    mkdirSync(resolve(SCREENSHOT, ".."), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true, animations: "disabled" });
    await cluster.startReplica(victim.index);

    expect(pageProblems).toEqual([]);
    const origin = new URL(cluster.baseUrl()).origin;
    expect(requestedUrls.filter((u) => new URL(u).origin !== origin)).toEqual([]);
  });

  it("works from the keyboard: Tab reaches Increment, Enter and Space press it", async () => {
    await openPage();
    await page.keyboard.press("Tab"); // the skip link comes first
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Skip to the counter");
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("increment");
    await page.keyboard.press("Enter");
    await waitForCount(1);
    await page.keyboard.press("Space");
    await waitForCount(2);
    // Screen readers hear the new count without moving focus.
    expect(await page.locator("#count").getAttribute("aria-live")).toBe("polite");
    expect(await page.getByRole("status", { name: "Count", exact: true }).textContent()).toBe("2");
  });

  it("destroys the session: the count goes back to 0 and starts again at 1", async () => {
    await openPage();
    await increment(1);
    await increment(2);
    const before = await page.locator("#session").textContent();
    await page.getByRole("button", { name: "Destroy session" }).click();
    await waitForCount(0);
    await page.waitForFunction(() => document.getElementById("status")?.textContent?.startsWith("Session destroyed"));
    await increment(1);
    expect(await page.locator("#session").textContent()).not.toBe(before);
    // The page reloaded from the server agrees.
    await page.reload();
    await waitForCount(1);
  });

  it("offers log in and out when the server has them, and explains their absence otherwise", async () => {
    await openPage();
    await page.locator("#account-checking").waitFor({ state: "hidden" });
    const me = await fetch(`${cluster.baseUrl()}/api/me`);
    if (me.status === 404) {
      expect(await page.locator("#account-unavailable").isVisible()).toBe(true);
      expect(await page.locator("#login-form").isVisible()).toBe(false);
      expect(await page.getByRole("button", { name: "Log in" }).count()).toBe(0);
      return;
    }
    await page.getByLabel("Name").fill("ada");
    await page.getByRole("button", { name: "Log in" }).click();
    await page.locator("#logged-in").waitFor({ state: "visible" });
    expect(await page.locator("#user-name").textContent()).toBe("ada");
    await page.getByRole("button", { name: "Log out" }).click();
    await page.locator("#login-form").waitFor({ state: "visible" });
    expect(await page.locator("#error").textContent()).toBe("");
  });
});

// A login whose answer is lost (Redis applied it after the app answered 503) is replayed only to the
// old cookie with the same Idempotency-Key (docs/security.md, "A login whose answer was lost").
// CLIENT PAUSE WRITE holds writes as a failover does; reads pass, so each attempt's rotation waits.
describe("the page's increment across a Redis write pause", () => {
  afterEach(async () => {
    await cluster.redisCommand("CLIENT", "UNPAUSE");
  });

  it("sends an increment whose answer never came again with its key on the next click: counted once", async () => {
    await openPage();
    for (let n = 1; n <= 3; n++) await increment(n);
    // Longer than the page retries an increment (about 4 s with the command timeouts): it gives up;
    // then Redis, unpaused, applies it.
    await cluster.redisCommand("CLIENT", "PAUSE", "8000", "WRITE");
    await page.getByRole("button", { name: "Increment" }).click();
    await page.waitForFunction(() => (document.getElementById("error")?.textContent ?? "") !== "", undefined, {
      timeout: 15_000,
    });
    expect(await page.locator("#error").textContent()).toContain("with the same key");
    await cluster.redisCommand("CLIENT", "UNPAUSE");
    await increment(4);
    expect(await page.locator("#status").textContent()).toContain("counted once");
  });
});

describe("the page's login across a Redis write pause", () => {
  afterEach(async () => {
    await cluster.redisCommand("CLIENT", "UNPAUSE");
  });
  const loginText = () => page.locator("#error").textContent();
  async function countTo3ThenFillName(name: string): Promise<void> {
    await openPage();
    for (let n = 1; n <= 3; n++) await increment(n);
    await page.locator("#login-form").waitFor({ state: "visible" });
    await page.getByLabel("Name").fill(name);
  }
  async function expectLoggedInWithCount3(name: string): Promise<void> {
    const outcome = await page
      .locator("#logged-in")
      .waitFor({ state: "visible", timeout: 20_000 })
      .then(
        () => "logged in",
        async () => `not logged in: ${await loginText()}`,
      );
    expect(outcome).toBe("logged in");
    expect(await page.locator("#user-name").textContent()).toBe(name);
    await page.getByRole("button", { name: "Refresh" }).click();
    await waitForCount(3);
  }
  async function logInUntilAnError(): Promise<string> {
    await page.getByRole("button", { name: "Log in" }).click();
    await page.waitForFunction(() => (document.getElementById("error")?.textContent ?? "") !== "", undefined, {
      timeout: 30_000,
    });
    return (await loginText())!;
  }
  /** Waits until Redis takes writes again (the paused rotation then runs): a write blocks until then. */
  async function waitForWrites(): Promise<void> {
    for (let i = 0; i < 6; i++) {
      const answer = await cluster.redisCommand("SET", "page-test:pause-probe", "1", "PX", "1000").catch(() => "");
      if (answer === "OK") return;
    }
    throw new Error("Redis still holds writes after 30 s");
  }

  it("logs in through a 6 s pause by retrying with the same key, and keeps the count", async () => {
    await countTo3ThenFillName("ada");
    await cluster.redisCommand("CLIENT", "PAUSE", "6000", "WRITE");
    await page.getByRole("button", { name: "Log in" }).click();
    await expectLoggedInWithCount3("ada");
  });

  it("replays a login Redis applied after the page stopped retrying when Log in is clicked again", async () => {
    await countTo3ThenFillName("ada");
    // Longer than the page retries a login (about 11 s): it gives up, then Redis applies the login.
    await cluster.redisCommand("CLIENT", "PAUSE", "20000", "WRITE");
    const gaveUp = await logInUntilAnError();
    await waitForWrites();
    await page.getByRole("button", { name: "Log in" }).click();
    await expectLoggedInWithCount3("ada");
    expect(gaveUp).toContain("log in again with the same name");
  });

  it("replays it after a reload too: the key is kept in the tab's sessionStorage", async () => {
    await countTo3ThenFillName("grace");
    await cluster.redisCommand("CLIENT", "PAUSE", "20000", "WRITE");
    await logInUntilAnError();
    await waitForWrites();
    await page.reload();
    await page.locator("#login-form").waitFor({ state: "visible" });
    await page.getByLabel("Name").fill("grace");
    await page.getByRole("button", { name: "Log in" }).click();
    await expectLoggedInWithCount3("grace");
  });

  it("explains a login refused because an earlier login from this browser replaced the session", async () => {
    await countTo3ThenFillName("ada");
    // Another login with this browser's cookie whose answer the browser never saw.
    const cookie = (await browser.cookies()).find((c) => c.httpOnly)!;
    const elsewhere = await fetch(`${cluster.baseUrl()}/api/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Cookie: `${cookie.name}=${cookie.value}` },
      body: JSON.stringify({ name: "ada" }),
    });
    expect(elsewhere.status).toBe(200);
    await logInUntilAnError();
    expect(await loginText()).toContain("An earlier login from this browser");
    expect(await page.locator("#login-form").isVisible()).toBe(true);
  });
});
