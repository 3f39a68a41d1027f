import { describe, expect, it } from "vitest";
import { keySlot, newSessionId, sessionIdInSlotOf } from "./session-id.ts";

describe("session ids", () => {
  it("makes express-session's kind of id: 32 base64url characters, a different one each time", () => {
    // 1000 ids: several refills of the pool of random bytes they are drawn from.
    const ids = new Set(Array.from({ length: 1000 }, newSessionId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{32}$/);
  });

  it("gives a login's new id the old session key's hash slot, and a fresh random id each time", () => {
    for (let i = 0; i < 50; i++) {
      const old = newSessionId();
      const id = sessionIdInSlotOf(old, "sess:");
      expect(id).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(id).not.toBe(old);
      // cluster-key-slot, ioredis' own, is the reference; so are the companion keys' tags.
      expect(keySlot(`sess:${id}`)).toBe(keySlot(`sess:${old}`));
      expect(keySlot(`{sess:${id}}:count`)).toBe(keySlot(`sess:${old}`));
    }
    const old = newSessionId();
    expect(sessionIdInSlotOf(old, "sess:")).not.toBe(sessionIdInSlotOf(old, "sess:"));
  });

  it("spreads sessions over the slots: no constant hash tag", () => {
    const slots = new Set(Array.from({ length: 500 }, () => keySlot(`{sess:${newSessionId()}}:count`)));
    expect(slots.size).toBeGreaterThan(450);
  });
});
