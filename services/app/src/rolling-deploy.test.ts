// Review finding: a session value whose count is not its last field (what a replica on the release
// before this one writes back, reading {"c":..,"n":..} as unknown fields) loses its count on the
// next increment: split() sees no count, and join() appends a second "n" that JSON.parse prefers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import { keys } from "./session.ts";

let app: TestApp;
beforeAll(async () => {
  app = await startApp();
});
afterAll(() => app?.close());

function sidOf(cookie: string | undefined): string {
  if (!cookie) throw new Error("the visitor has no session cookie");
  const value = decodeURIComponent(cookie.slice(cookie.indexOf("=") + 1));
  return value.slice(2, value.lastIndexOf("."));
}

describe("a rolling deploy from the release before", () => {
  it("keeps the count when a replica on the release before writes the session back", async () => {
    const v = app.visitor();
    for (let i = 0; i < 5; i++) expect((await v.increment()).status).toBe(200);
    const sid = sidOf(v.cookie);
    const admin = app.redis!.admin;
    const stored = (await admin.get(keys.session(sid)))!;
    expect(stored).toMatch(/"n":5\}$/);
    // The release before (4afcc4c) parses {"c":..,"n":5} as a session without createdAt, so its
    // counter takes the new-session path: it sets createdAt, saves the session with its own
    // serializer (the unknown fields kept, createdAt appended) and INCRs {sess:<id>}:count.
    const old = { ...(JSON.parse(stored) as object), createdAt: Date.now() };
    await admin.set(keys.session(sid), JSON.stringify(old), "KEEPTTL");
    await admin.incr(keys.separateCounter(sid));
    expect((await v.get("/api/session")).json?.count).toBe(6); // read() still sees both
    // The next increment on this release: 5 + 1 + 1.
    expect((await v.increment()).json?.count).toBe(7);
    expect((await v.get("/api/session")).json?.count).toBe(7);
  });
});
