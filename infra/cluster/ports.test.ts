import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { freePort } from "./ports.ts";

describe("freePort", () => {
  it("never hands out the same port twice in a process, even when the OS offers it again", async () => {
    const offers = [41001, 41001, 41001, 41002];
    const probe = async () => offers.shift()!;
    expect(await freePort(probe)).toBe(41001);
    expect(await freePort(probe)).toBe(41002);
    expect(offers).toEqual([]);
  });

  it("returns a port that can be listened on", async () => {
    const port = await freePort();
    const srv = createServer();
    await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(port, "127.0.0.1", resolve));
    await new Promise((resolve) => srv.close(resolve));
  });
});
