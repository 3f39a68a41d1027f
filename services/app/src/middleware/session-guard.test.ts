// Unit tests for telling apart the session cookies express-session does not honour.
import { createHmac } from "node:crypto";
import type { Request } from "express";
import { describe, expect, it } from "vitest";
import { sessionLabel } from "../session.ts";
import { cookieRejection, readCookie, unsignSessionId, VerifiedCookies } from "./session-guard.ts";

const sign = (id: string, secret: string) =>
  `s:${id}.${createHmac("sha256", secret).update(id).digest("base64").replace(/=+$/, "")}`;
const req = (cookie: string | undefined, sessionID: string) =>
  ({ headers: { cookie }, sessionID }) as unknown as Request;
const id = "abcdefghijklmnopqrstuvwxyz012345";

describe("readCookie", () => {
  it("reads the first cookie of that name, URL-decoded, and ignores look-alikes", () => {
    expect(readCookie(`xsid=1; sid=${encodeURIComponent("s:a.b/c")}; sid=2`, "sid")).toBe("s:a.b/c");
    expect(readCookie("other=1", "sid")).toBeUndefined();
    expect(readCookie(undefined, "sid")).toBeUndefined();
    expect(readCookie("sid=%E0%A4%A", "sid")).toBe("%E0%A4%A");
  });
});

describe("cookieRejection", () => {
  const cookie = (value: string) => `sid=${encodeURIComponent(value)}`;

  it("accepts a cookie whose id express-session loaded", () => {
    expect(cookieRejection(req(cookie(sign(id, "new")), id), "sid", ["new"])).toBeUndefined();
    expect(cookieRejection(req(undefined, "generated"), "sid", ["new"])).toBeUndefined();
  });

  it("names an unsigned cookie, a bad signature and an unknown id, with a hash and never the id", () => {
    expect(cookieRejection(req(cookie(id), "generated"), "sid", ["new"])).toEqual({
      reason: "unsigned",
      label: sessionLabel(id),
    });
    expect(cookieRejection(req(cookie(sign(id, "stolen")), "generated"), "sid", ["new"])).toEqual({
      reason: "bad_signature",
      label: sessionLabel(id),
    });
    expect(cookieRejection(req(cookie(`${sign(id, "new").slice(0, -1)}x`), "generated"), "sid", ["new"])).toMatchObject(
      { reason: "bad_signature" },
    );
    expect(cookieRejection(req(cookie(sign(id, "new")), "generated"), "sid", ["new"])).toEqual({
      reason: "unknown",
      label: sessionLabel(id),
    });
  });

  it("checks every listed secret, so a cookie signed with the old one is 'unknown', not tampered", () => {
    expect(cookieRejection(req(cookie(sign(id, "old")), "generated"), "sid", ["new", "old"])).toMatchObject({
      reason: "unknown",
    });
    expect(cookieRejection(req(cookie(sign(id, "old")), "generated"), "sid", ["new"])).toMatchObject({
      reason: "bad_signature",
    });
  });
});

describe("unsignSessionId", () => {
  it("returns the id of a cookie signed with any listed secret, as express-session reads it", () => {
    expect(unsignSessionId(sign(id, "new"), ["new"])).toBe(id);
    expect(unsignSessionId(sign(id, "old"), ["new", "old"])).toBe(id);
    // An id may itself contain dots: the signature is what follows the last one.
    expect(unsignSessionId(sign("a.b", "new"), ["new"])).toBe("a.b");
  });

  it("refuses an unsigned, truncated, re-signed or tampered value", () => {
    expect(unsignSessionId(id, ["new"])).toBeUndefined();
    expect(unsignSessionId(`s:${id}`, ["new"])).toBeUndefined();
    expect(unsignSessionId("s:.sig", ["new"])).toBeUndefined();
    expect(unsignSessionId(sign(id, "stolen"), ["new"])).toBeUndefined();
    expect(unsignSessionId(`${sign(id, "new").slice(0, -1)}x`, ["new"])).toBeUndefined();
    expect(unsignSessionId(sign(id, "new").replace(id, id.toUpperCase()), ["new"])).toBeUndefined();
    expect(unsignSessionId(sign(id, "old"), [])).toBeUndefined();
  });
});

describe("readCookie agrees with express-session's parser", () => {
  it("keeps bytes the cookie package keeps (a trailing no-break space), so their signature fails as there", () => {
    const value = sign(id, "new");
    expect(readCookie(`sid=${encodeURIComponent(value)}\u00a0`, "sid")).toBe(`${value}\u00a0`);
    expect(unsignSessionId(readCookie(`sid=${encodeURIComponent(value)}\u00a0`, "sid")!, ["new"])).toBeUndefined();
    expect(readCookie(` sid = "${encodeURIComponent(value)}" `, "sid")).toBe(value);
    expect(readCookie("sid=; sid=2", "sid")).toBeUndefined();
  });
});

describe("VerifiedCookies", () => {
  const header = (value: string) => `other=1; sid=${encodeURIComponent(value)}`;
  it("gives the id and label of a signed cookie, the same on a repeat (remembered) as the first time", () => {
    const cookies = new VerifiedCookies("sid", ["new", "old"]);
    const want = { sid: id, label: sessionLabel(id) };
    expect(cookies.verify(header(sign(id, "new")))).toEqual(want);
    expect(cookies.verify(header(sign(id, "new")))).toEqual(want);
    expect(cookies.verify(header(sign(id, "old")))).toEqual(want);
    const long = `${"x=".padEnd(600, "y")}; ${header(sign(id, "new"))}`;
    expect(cookies.verify(long)).toEqual(want);
    expect(cookies.verify(long)).toEqual(want);
  });
  it("refuses a tampered, re-signed or unsigned copy of a cookie it already verified, every time", () => {
    const cookies = new VerifiedCookies("sid", ["new"]);
    expect(cookies.verify(header(sign(id, "new")))?.sid).toBe(id);
    for (let i = 0; i < 2; i++) {
      expect(cookies.verify(header(`${sign(id, "new").slice(0, -1)}x`))).toBeUndefined();
      expect(cookies.verify(header(sign(id, "stolen")))).toBeUndefined();
      expect(cookies.verify(header(id))).toBeUndefined();
      expect(cookies.verify("sid=")).toBeUndefined();
      expect(cookies.verify(undefined)).toBeUndefined();
    }
  });
});
