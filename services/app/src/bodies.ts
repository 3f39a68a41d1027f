// The JSON bodies the API accepts, as zod schemas, and the one place a schema's refusal
// becomes the 400 { error: "invalid_body", message } a client sees.
import type { Request } from "express";
import { z } from "zod";
import { badRequest, type HttpError } from "./errors.ts";

/** The first problem zod found, as a 400. Every schema below words its own messages. */
export function invalidBody(err: z.ZodError): HttpError {
  return badRequest("invalid_body", err.issues[0]?.message ?? "The request body is not valid.");
}

/** `schema` applied to req.body (undefined when no body was sent); throws the 400 above. */
export function parseBody<T extends z.ZodType>(schema: T, req: Request): z.output<T> {
  const parsed = schema.safeParse(req.body);
  if (!parsed.success) throw invalidBody(parsed.error);
  return parsed.data;
}

/** A strict object whose type and unknown-key errors say what the body must look like. */
function bodyObject<S extends z.core.$ZodLooseShape>(shape: S, example: string) {
  const only = Object.keys(shape)
    .map((k) => `"${k}"`)
    .join(", ");
  return z.strictObject(shape, {
    error: (iss) =>
      iss.code === "unrecognized_keys"
        ? `Unknown field(s): ${iss.keys.join(", ")}. Only ${only} is accepted.`
        : `The body must be a JSON object such as ${example}.`,
  });
}

// POST /api/counter: empty, {}, or {"by": n}; `by` defaults to 1.
const BY_RULE = { error: '"by" must be an integer from 1 to 1000.' };
export const counterBody = bodyObject(
  { by: z.number(BY_RULE).int(BY_RULE).min(1, BY_RULE).max(1000, BY_RULE).optional() },
  '{"by": 1}, or empty',
).optional();

export function parseBy(req: Request): number {
  return parseBody(counterBody, req)?.by ?? 1;
}

// Letters, digits, punctuation and spaces; no control or format characters (no log or
// terminal injection through a name that is echoed back).
const NAME_RE = /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]{1,64}$/u;
const NAME_RULE = '"name" must be 1 to 64 characters, without control characters.';

// POST /api/login: {"name": "..."}, normalised (NFC) and trimmed before it is checked.
export const loginBody = bodyObject(
  {
    name: z
      .string({ error: '"name" is required: a string of 1 to 64 characters.' })
      .transform((s) => s.normalize("NFC").trim())
      .pipe(z.string().regex(NAME_RE, NAME_RULE)),
  },
  '{"name": "ada"}',
);

export function parseName(req: Request): string {
  return parseBody(loginBody, req).name;
}

// POST /api/logout, POST and DELETE /api/session: nothing to send; an empty body, or {}.
export const noBody = z
  .strictObject(
    {},
    {
      error: (iss) =>
        iss.code === "unrecognized_keys"
          ? `Unknown field(s): ${iss.keys.join(", ")}. This route takes no fields: send no body, or {}.`
          : "This route takes no body: send none, or {}.",
    },
  )
  .optional();

/** Throws the 400 when the request carried anything but no body or {}. */
export function parseNoBody(req: Request): void {
  parseBody(noBody, req);
}
