// The real socket.io client, driven by tests/integration/gateway/test_gateway_stream.py.
// Usage: node stream-client.mjs <base-url> <path> <token|-> <topic,topic,...>
// Prints one JSON object per line: connect, connect_error, subscribed, event, disconnect,
// done. A connect_error carries the server's refusal (message, data) or, when the transport
// itself failed (a refused engine.io handshake), its description (the HTTP status). An event line carries the event's first argument as data and its second, if any
// (the stream's {seq} metadata), as meta.
// Reads commands from stdin, one JSON object per line: {"cmd": "subscribe", "topics": [...]}.
// Exits after an event whose payload has {"final": true}, on connect_error, on disconnect,
// or after 30 s.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const [base, path, token, topics] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const socket = io(base, {
  path,
  auth: token === "-" ? {} : { token },
  reconnection: false,
  timeout: 10000,
});
const finish = (code) => {
  socket.close();
  out({ type: "done" });
  process.exit(code);
};
setTimeout(() => finish(2), 30000).unref();

const subscribe = (list) =>
  socket.emit("subscribe", list, (ack) => out({ type: "subscribed", ack }));

socket.on("connect", () => {
  out({ type: "connect" });
  subscribe(topics.split(","));
});
socket.on("connect_error", (err) => {
  out({
    type: "connect_error",
    message: err.message,
    data: err.data ?? null,
    description: typeof err.description === "number" ? err.description : null,
  });
  finish(0);
});
socket.on("disconnect", (reason) => {
  out({ type: "disconnect", reason });
  finish(0);
});
socket.onAny((event, data, meta) => {
  out({ type: "event", event, data, meta: meta ?? null });
  if (data && data.final === true) finish(0);
});
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "subscribe") subscribe(command.topics);
});
