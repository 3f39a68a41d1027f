// Free TCP ports on 127.0.0.1 for clusters, baselines and tests, from get-port.
import getPort from "get-port";

/**
 * A port nothing listens on right now. `reserve` keeps it from being handed out again for
 * the life of this process: a cluster asks for all its ports before it starts anything, and
 * the OS offers a just-released port again at once. (Another process can still take it
 * before it is bound; on one machine that is rare.)
 */
export function freePort(): Promise<number> {
  return getPort({ host: "127.0.0.1", reserve: true });
}
