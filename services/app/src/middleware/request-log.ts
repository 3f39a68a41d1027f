// pino-http: one JSON line per request with the id nginx assigned ($request_id), echoed back.
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { pinoHttp } from "pino-http";
import type { Logger } from "pino";

const ID_RE = /^[A-Za-z0-9_.:-]{1,128}$/;

export function requestLog(logger: Logger) {
  return pinoHttp({
    logger,
    genReqId(req: IncomingMessage, res: ServerResponse) {
      const header = req.headers["x-request-id"];
      const id = typeof header === "string" && ID_RE.test(header) ? header : randomUUID();
      res.setHeader("X-Request-ID", id);
      return id;
    },
    customLogLevel: (_req, res, err) =>
      err || res.statusCode >= 500 ? "error" : res.statusCode >= 400 ? "warn" : "info",
    serializers: {
      // The path without its query string: the app reads nothing from queries, and a client
      // that puts a session id or token in a URL should not get it written to the logs.
      req: (req: { id: string; method: string; url: string }) => ({
        id: req.id,
        method: req.method,
        path: req.url.split("?", 1)[0],
      }),
      res: (res: { statusCode: number }) => ({ status: res.statusCode }),
    },
    customAttributeKeys: { responseTime: "ms" },
    // A 5xx is already explained by the error handler's own line; don't add a fake stack.
    customErrorMessage: () => "request completed",
    customErrorObject: (_req, res, _err, val: Record<string, unknown>) =>
      (res as { err?: unknown }).err ? val : { ...val, err: undefined },
    wrapSerializers: false,
  });
}
