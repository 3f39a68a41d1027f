// A free TCP port on 127.0.0.1, for clusters, baselines and tests that must not collide.
// (Another process can take it between this check and its use; on one machine that is rare.)
import { createServer } from "node:net";

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolvePort(port));
    });
  });
}
