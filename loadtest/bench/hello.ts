// Baseline B1 of `make bench`: the bare Express 5 hello-world, one process, nothing else.
// Prints "listening <port>" once it accepts connections.
import express from "express";

const app = express();
app.get("/", (_req, res) => {
  res.send("Hello World!");
});
const server = app.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  const addr = server.address();
  process.stdout.write(`listening ${typeof addr === "object" && addr ? addr.port : "?"}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
