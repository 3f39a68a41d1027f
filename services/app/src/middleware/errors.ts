// The last middleware: turns every error into a JSON body with a status a client can act on.
import { STATUS_CODES } from "node:http";
import type { ErrorRequestHandler, RequestHandler } from "express";
import { HttpError, notFound, StoreUnavailableError } from "../errors.ts";
import { NOT_UTF8 } from "./json-body.ts";
import { toStoreError } from "../redis.ts";
import { markSaved, markTouched } from "../session.ts";

export const unknownRoute: RequestHandler = (_req, _res, next) => next(notFound());

type BodyParserError = Error & { type?: string; status?: number; expose?: boolean; headers?: Record<string, string> };

function classify(err: unknown): HttpError | undefined {
  const mapped = toStoreError(err);
  if (mapped instanceof HttpError) return mapped;
  const e = err as BodyParserError;
  switch (e?.type) {
    case "entity.parse.failed":
      return new HttpError(400, "invalid_json", "The request body is not valid JSON.");
    case "entity.too.large":
      return new HttpError(413, "body_too_large", "The request body is larger than this API accepts (1 KiB).");
    case "encoding.unsupported":
      return new HttpError(
        415,
        "unsupported_encoding",
        "This Content-Encoding is not accepted: send the body uncompressed, or as gzip, deflate, br or zstd.",
      );
    case "charset.unsupported":
      return new HttpError(415, "unsupported_encoding", NOT_UTF8);
  }
  // Other http-errors the client caused (express.static's 416 for a Range past the end of a
  // file, 412 for a failed If-Match): their own status and message, not a logged 500.
  const status = e?.status;
  if (e?.expose === true && typeof status === "number" && status >= 400 && status < 500) {
    const code = (STATUS_CODES[status] ?? "Client Error").toLowerCase().replace(/[^a-z]+/g, "_");
    return new HttpError(status, code, `${e.message}.`, e.headers);
  }
  return undefined;
}

export const errorHandler: ErrorRequestHandler = (err, req, res, _next) => {
  const known = classify(err);
  if (known instanceof StoreUnavailableError)
    req.log?.warn({ err: (known.cause as Error)?.message, applied: known.applied }, "store unavailable");
  else if (!known) req.log?.error({ err }, "unhandled error");
  const status = known?.status ?? 500;
  // An error answer stores no change the failed handler left in req.session. After a 5xx no touch
  // follows either: on a stalled Redis it would hold the 503 for another command timeout. A 4xx
  // still refreshes the session's TTLs, as any answer does.
  if (req.session) {
    markSaved(req);
    if (status >= 500) markTouched(req);
  }
  if (res.headersSent) {
    // Mid-answer, the client must not take a cut body for a whole one; an error express-session
    // reports after a finished answer (a failed save) leaves the connection alone.
    if (!res.writableEnded) res.destroy();
    return;
  }
  for (const [k, v] of Object.entries(known?.headers ?? {})) res.setHeader(k, v);
  // A handler may have typed the response, or made it cacheable, before failing (express.static
  // does): the body is JSON, and an error is never cached.
  res.removeHeader("Content-Type");
  res.setHeader("Cache-Control", "no-store");
  res.status(status).json({
    error: known?.code ?? "internal",
    message: known?.message ?? "Something went wrong on this replica; it has been logged.",
  });
};
