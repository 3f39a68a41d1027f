import { createServer } from "node:net";
import getPort from "get-port";
import { describe, expect, it } from "vitest";
import { freePort } from "./ports.ts";

describe("freePort", () => {
  it("never hands out a port again in this process, even one the OS would give again", async () => {
    const ports = await Promise.all(Array.from({ length: 50 }, () => freePort()));
    expect(new Set(ports).size).toBe(50);
    // Nothing listens on ports[0], so the OS would hand it out; get-port must not.
    expect(await getPort({ host: "127.0.0.1", port: ports[0]! })).not.toBe(ports[0]);
  });

  it("returns a port that can be listened on", async () => {
    const port = await freePort();
    const srv = createServer();
    await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(port, "127.0.0.1", resolve));
    await new Promise((resolve) => srv.close(resolve));
  });
});
