// The page at / in headless Chromium (Debian's package, driven by playwright-core; no browser
// download) against a real local cluster: clicks, round-robin, a replica killed mid-session.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
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
