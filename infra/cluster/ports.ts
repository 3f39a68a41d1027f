// A free TCP port on 127.0.0.1, for clusters, baselines and tests that must not collide.
// (Another process can take it between this check and its use; on one machine that is rare.)
import { createServer } from "node:net";

/** Asks the OS for a port it considers free right now (bind to port 0, read it, release it). */
function osFreePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolvePort(port));
    });
  });
}

// The OS may offer a released port again at once, and a cluster asks for all its ports
// before it starts anything: Redis and a replica were once given the same one. So a port
// is handed out at most once per process.
const handedOut = new Set<number>();

export async function freePort(probe: () => Promise<number> = osFreePort): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await probe();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("no free port that this process has not already handed out, after 100 tries");
}
