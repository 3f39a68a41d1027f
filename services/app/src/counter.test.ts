import { describe, expect, it } from "vitest";
import { parseIdempotencyKey } from "./counter.ts";
import { HttpError } from "./errors.ts";

const status = (header: string | undefined) => {
  try {
    parseIdempotencyKey(header);
    return 200;
  } catch (err) {
    return (err as HttpError).status;
  }
};

describe("parseIdempotencyKey", () => {
  it("takes a bare token (Stripe) or a structured-field string (the IETF draft) as the same key", () => {
    expect(parseIdempotencyKey("8e03978e-40d5-43e8-bc93-6894a57f9324")).toBe("8e03978e-40d5-43e8-bc93-6894a57f9324");
    expect(parseIdempotencyKey('"8e03978e-40d5-43e8-bc93-6894a57f9324"')).toBe("8e03978e-40d5-43e8-bc93-6894a57f9324");
  });

  it("treats a missing header as no key", () => {
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
  });

  it("answers 400 for an empty, oversized, spaced, non-ASCII, half-quoted or doubled key", () => {
    for (const bad of ["", '""', '"', "x".repeat(129), "a b", "ключ", '"abc', "a, b"])
      expect(status(bad), bad).toBe(400);
    expect(status("x".repeat(128))).toBe(200);
  });
});
