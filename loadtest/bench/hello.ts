// Baseline B1 of `make bench`: the bare Express 5 hello-world, one process (GET /). The
// ceilings run three of them behind the cluster's nginx. Prints "listening <port>" once it
// accepts connections.
import { randomBytes } from "node:crypto";
import express from "express";
import { Redis } from "ioredis";

// HELLO_REDIS_PORT: the exactly-once request below first makes one Redis round trip (a script
// that increments one key) on this Redis, as the app's one-round-trip path does, with the app's
// default client settings on that path (auto-pipelining, a 500 ms command timeout). GET / never
// touches Redis.
const redisPort = Number(process.env.HELLO_REDIS_PORT || 0);
const redis = redisPort
  ? new Redis({ host: "127.0.0.1", port: redisPort, enableAutoPipelining: true, commandTimeout: 500 })
  : undefined;
redis?.defineCommand("helloIncrement", { numberOfKeys: 1, lua: "return redis.call('INCR', KEYS[1])" });
type WithIncrement = { helloIncrement(key: string): Promise<number> };
const increment = (key: string) => (redis as unknown as WithIncrement).helloIncrement(key);

const app = express();
app.get("/", (_req, res) => {
  res.send("Hello World!");
});
// The exactly-once request's own shape, for the reference of goals 1 and 3 (bench.ts): the app's
// headers and JSON answer (no ETag, as the app sets none), and a cookie as long as a signed
// session cookie (the app's default name) for a request that has none. No session: what nginx,
// the load generator and (with HELLO_REDIS_PORT) one Redis round trip cost for this request,
// with a bare Express behind it. One cookie value for all: no session, so no id to draw.
const COOKIE = `s:${randomBytes(24).toString("base64url")}.${randomBytes(32).toString("base64url")}`;
app.post("/api/counter", async (req, res) => {
  const count = redis ? await increment("hello:count") : 1;
  if (req.headers.cookie === undefined) res.cookie("sid", COOKIE, { httpOnly: true, sameSite: "lax" });
  res.removeHeader("X-Powered-By");
  res.set({ "Cache-Control": "no-store", "X-Replica": "hello-1", "X-Request-ID": req.get("x-request-id") ?? "" });
  res.type("json").end(JSON.stringify({ count, replica: "hello-1", session: "0123456789ab" }));
});
const server = app.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  const addr = server.address();
  process.stdout.write(`listening ${typeof addr === "object" && addr ? addr.port : "?"}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
