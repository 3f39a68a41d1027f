// The one way the API reads a body: empty, or JSON of at most 1 KiB. Anything else is a 4xx
// before a handler runs, so a bad body can never change what is stored. Mounted once for all
// of /api (app.ts), so a state-changing route added later is guarded without asking.
import { parse as parseContentType } from "content-type";
import { json, type Request, type RequestHandler } from "express";
import { HttpError } from "../errors.ts";
import { SAFE_METHODS } from "./cross-site.ts";

export const BODY_LIMIT_BYTES = 1024;

/** True when the request carries body bytes (chunked, or a non-zero Content-Length). */
function hasBody(headers: { "transfer-encoding"?: string; "content-length"?: string }): boolean {
  return (
    headers["transfer-encoding"] !== undefined ||
    (headers["content-length"] !== undefined && headers["content-length"] !== "0")
  );
}

/** The charset parameter of the request's Content-Type, lower case; undefined when none. */
const charsetOf = (req: Request): string | undefined =>
  parseContentType(req.headers["content-type"] ?? "").parameters.charset?.toLowerCase();

/** What the API answers to a body in another charset than UTF-8 (body-parser's refusal included). */
export const NOT_UTF8 = "Send the body as UTF-8 JSON: charset=utf-8, or no charset.";

// express.json() skips a body whose type is not JSON and leaves req.body undefined, which a
// handler would read as "no body": a form post to /api/counter would count. Refuse it instead.
// It also decodes any "utf-*" charset, UTF-16 and UTF-32 included; the API reads UTF-8 only.
function jsonBody(): RequestHandler {
  const parse = json({ limit: BODY_LIMIT_BYTES, strict: true });
  return (req, res, next) => {
    // Falsy also when the request has no body headers at all (type-is), so body-parser reads it exactly when truthy.
    const isJson = req.is("application/json");
    if (hasBody(req.headers) && !isJson) {
      next(
        new HttpError(
          415,
          "unsupported_media_type",
          "Send the body as application/json (Content-Type: application/json), or send none.",
        ),
      );
      return;
    }
    // Wherever body-parser reads the body (a Content-Length, 0 included, or chunked), so that no charset
    // gets another answer than any other.
    const charset = isJson ? charsetOf(req) : undefined;
    if (charset !== undefined && charset !== "utf-8") {
      next(new HttpError(415, "unsupported_encoding", NOT_UTF8));
      return;
    }
    parse(req, res, (err?: unknown) => next(err === undefined ? undefined : bodyError(err)));
  };
}

/**
 * jsonBody() for every method but GET, HEAD and OPTIONS, whatever the route (one that does not
 * exist included): mounted before the one-round-trip path and express-session, a refused body
 * loads, stores and counts nothing. body-parser skips a body already read, so a route may still
 * parse again.
 */
export function stateChangingBody(): RequestHandler {
  const guard = jsonBody();
  return (req, res, next) => (SAFE_METHODS.has(req.method) ? next() : guard(req, res, next));
}

type ParserError = Error & { type?: string; status?: number };

// The error handler knows body-parser's typed errors (invalid JSON, too large, charset).
// The untyped ones are still the client's fault (a gzip/deflate/br body that does not
// decompress, a body shorter than its Content-Length) and must not become a 500.
function bodyError(err: unknown): unknown {
  const e = err as ParserError;
  if (e?.type === "request.size.invalid")
    return new HttpError(400, "invalid_body", "The body is not as long as its Content-Length says.");
  if (e?.type === "request.aborted")
    return new HttpError(400, "request_aborted", "The client stopped sending the body.");
  if (e?.type === undefined && typeof e?.status === "number" && e.status >= 400 && e.status < 500) {
    return new HttpError(e.status, "invalid_body", "The request body could not be read; check its Content-Encoding.");
  }
  return err;
}
