// A stalled Redis (CLIENT PAUSE: connected, answering nothing it holds) costs a request one command
// timeout before its 503, not one per Redis call the request would still have made.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../../../test/app-fixture.ts";
import type { Reply, Visitor } from "../../../loadtest/client/visitor.ts";

/** A command the app's client sent, and whether it failed on the command timeout. */
type Sent = { name: string; timedOut: boolean };

let app: TestApp;
let sent: Sent[] = [];
beforeAll(async () => {
  app = await startApp({
    env: { NEW_SESSION_LIMIT: "0", REDIS_COMMAND_TIMEOUT_MS: "300" },
    onRedis: (client) => {
      const send = client.sendCommand.bind(client);
      client.sendCommand = ((cmd: Parameters<typeof send>[0], ...rest: unknown[]) => {
        const s: Sent = { name: cmd.name, timedOut: false };
        sent.push(s);
        cmd.promise.catch((err: Error) => {
          if (err.message.includes("Command timed out")) s.timedOut = true;
        });
        return (send as (...a: unknown[]) => ReturnType<typeof send>)(cmd, ...rest);
      }) as typeof send;
    },
  });
});
afterAll(async () => {
  await app?.close();
});

/** A visitor whose stored session holds a count of 2. */
async function visitorWithCount(): Promise<Visitor> {
  const v = app.visitor();
  expect((await v.startSession()).status).toBe(201);
  expect((await v.post("/api/counter", { body: JSON.stringify({ by: 2 }) })).json?.count).toBe(2);
  return v;
}

/** What the app sent Redis for `request`, sent while Redis holds its clients' commands (`mode`). */
async function whilePaused(mode: "WRITE" | "ALL", request: () => Promise<Reply>): Promise<[Reply, Sent[]]> {
  const admin = app.redis!.admin;
  // Longer than the command timeout (300 ms). An ALL pause holds the UNPAUSE too, until it ends.
  await admin.call("CLIENT", "PAUSE", "1000", mode);
  sent = [];
  try {
    const r = await request();
    return [r, sent];
  } finally {
    await admin.call("CLIENT", "UNPAUSE");
  }
}

const login = (v: Visitor, key?: string) =>
  v.post("/api/login", {
    body: JSON.stringify({ name: "ada" }),
    headers: key === undefined ? {} : { "Idempotency-Key": key },
  });

describe.each(["WRITE", "ALL"] as const)("a Redis paused with CLIENT PAUSE %s", (mode) => {
  it.each([
    ["an increment", (v: Visitor) => v.increment()],
    ["a login", (v: Visitor) => login(v)],
    ["a keyed login", (v: Visitor) => login(v, randomUUID())],
  ])("answers %s with a 503 after one command timeout, sending nothing after it", async (_what, send) => {
    const v = await visitorWithCount();
    const [r, commands] = await whilePaused(mode, () => send(v));
    expect(r.status).toBe(503);
    expect(r.json?.error).toBe("store_timeout");
    // One command waited out the timeout, and it was the request's last: nothing after it (such as
    // express-session touching the session once the answer was written) waited for a second one.
    const names = commands.map((c) => c.name);
    expect(
      commands.filter((c) => c.timedOut).map((c) => c.name),
      names.join(","),
    ).toHaveLength(1);
    expect(commands.at(-1)?.timedOut, names.join(",")).toBe(true);
  });
});
