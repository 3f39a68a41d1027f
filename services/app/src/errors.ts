// The few HTTP errors the service answers with; each renders as a JSON body { error, message }.
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

export const badRequest = (code: string, message: string) => new HttpError(400, code, message);
export const notFound = (message = "No route matches this path.") => new HttpError(404, "not_found", message);
export const methodNotAllowed = (allow: readonly string[]) =>
  new HttpError(405, "method_not_allowed", `Use one of: ${allow.join(", ")}.`, { Allow: allow.join(", ") });
export const conflict = (code: string, message: string) => new HttpError(409, code, message);
export const unprocessable = (code: string, message: string) => new HttpError(422, code, message);

/**
 * Redis could not serve the request; the client gets a fast 503 instead of a hang.
 * `applied` tells the client what it may assume: "no" when the command never left this
 * process (Redis was disconnected), "unknown" when it was sent and no answer came back
 * in time. Only the latter can have changed anything; retry it with the same Idempotency-Key.
 */
export class StoreUnavailableError extends HttpError {
  readonly applied: "no" | "unknown";
  constructor(cause: unknown, applied: "no" | "unknown") {
    super(
      503,
      applied === "no" ? "store_unavailable" : "store_timeout",
      applied === "no"
        ? "The session store is unavailable; nothing was changed. Retry shortly."
        : "The session store did not answer in time; the change may or may not have been applied. Retry " +
            "shortly, with the same Idempotency-Key if the request had one (docs/exactly-once.md).",
      { "Retry-After": "1" },
    );
    this.name = "StoreUnavailableError";
    this.cause = cause;
    this.applied = applied;
  }
}
