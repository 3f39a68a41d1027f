// Unit tests for the body schemas: what passes, and the message each refusal gives.
import type { Request } from "express";
import { describe, expect, it } from "vitest";
import { HttpError } from "./errors.ts";
import { parseBy, parseName, parseNoBody } from "./bodies.ts";

const req = (body: unknown) => ({ body }) as Request;
function refusal(fn: () => unknown): { status: number; code: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (err instanceof HttpError) return { status: err.status, code: err.code, message: err.message };
    throw err;
  }
  throw new Error("accepted");
}

describe("parseBy", () => {
  it("takes no body, {} or an integer by from 1 to 1000", () => {
    expect(parseBy(req(undefined))).toBe(1);
    expect(parseBy(req({}))).toBe(1);
    expect(parseBy(req({ by: 7 }))).toBe(7);
    expect(parseBy(req({ by: 1000 }))).toBe(1000);
  });

  it("refuses anything else with a 400 invalid_body that says what to send", () => {
    const rule = '"by" must be an integer from 1 to 1000.';
    for (const by of [0, 1001, 1.5, "1", null, true])
      expect(refusal(() => parseBy(req({ by })))).toEqual({ status: 400, code: "invalid_body", message: rule });
    expect(refusal(() => parseBy(req({ by: 1, admin: true }))).message).toBe(
      'Unknown field(s): admin. Only "by" is accepted.',
    );
    expect(refusal(() => parseBy(req([1]))).message).toBe(
      'The body must be a JSON object such as {"by": 1}, or empty.',
    );
  });
});

describe("parseName", () => {
  it("returns the name normalised (NFC) and trimmed", () => {
    expect(parseName(req({ name: "  ada " }))).toBe("ada");
    expect(parseName(req({ name: "Ame\u0301lie" }))).toBe("Am\u00e9lie");
  });

  it("refuses a missing body, a missing or non-string name, a blank, long or control-char name, extra fields", () => {
    expect(refusal(() => parseName(req(undefined)))).toEqual({
      status: 400,
      code: "invalid_body",
      message: 'The body must be a JSON object such as {"name": "ada"}.',
    });
    expect(refusal(() => parseName(req({}))).message).toBe('"name" is required: a string of 1 to 64 characters.');
    expect(refusal(() => parseName(req({ name: 5 }))).message).toBe(
      '"name" is required: a string of 1 to 64 characters.',
    );
    for (const name of ["   ", "x".repeat(65), "ada\u001b[31m", "a\u200bb"]) {
      expect(refusal(() => parseName(req({ name }))).message).toBe(
        '"name" must be 1 to 64 characters, without control characters.',
      );
    }
    expect(refusal(() => parseName(req({ name: "ada", role: "admin" }))).message).toBe(
      'Unknown field(s): role. Only "name" is accepted.',
    );
  });
});

describe("parseNoBody", () => {
  it("takes no body or {}", () => {
    expect(() => parseNoBody(req(undefined))).not.toThrow();
    expect(() => parseNoBody(req({}))).not.toThrow();
  });

  it("refuses any field, and anything but an object, with a 400 invalid_body that says to send none", () => {
    expect(refusal(() => parseNoBody(req({ admin: true, by: 2 })))).toEqual({
      status: 400,
      code: "invalid_body",
      message: "Unknown field(s): admin, by. This route takes no fields: send no body, or {}.",
    });
    for (const body of [[], null, "x", 1])
      expect(refusal(() => parseNoBody(req(body))).message).toBe("This route takes no body: send none, or {}.");
  });
});
