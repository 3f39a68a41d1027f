// One raw HTTP exchange over a socket, for requests fetch refuses to send.
import { connect } from "node:net";

/** One raw HTTP exchange, for requests fetch refuses to send (bad request lines, TRACE, control bytes). */
export function rawRequest(port: number, text: string): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    // Written, not ended: nginx takes a half-closed client for one that gave up (499).
    const socket = connect(port, "127.0.0.1", () => socket.write(Buffer.from(text, "latin1")));
    let data = "";
    socket.setTimeout(5000, () => socket.destroy(new Error("no answer within 5 s")));
    socket.on("data", (d) => (data += d.toString()));
    socket.on("error", reject);
    socket.on("close", () => {
      const [head = "", body = ""] = data.split("\r\n\r\n");
      resolve({ status: Number(head.split(" ")[1]), headers: head, body });
    });
  });
}
