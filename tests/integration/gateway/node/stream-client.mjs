// The real socket.io client, driven by tests/integration/gateway/test_stream.py.
// Usage: node stream-client.mjs <base-url> <path> <token|-> <topic,topic,...>
// Prints one JSON object per line: connect, connect_error, subscribed, event, done.
// Exits after an event whose payload has {"final": true}, on connect_error, or after 30 s.
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

socket.on("connect", () => {
  out({ type: "connect" });
  socket.emit("subscribe", topics.split(","), (ack) => out({ type: "subscribed", ack }));
});
socket.on("connect_error", (err) => {
  out({ type: "connect_error", message: err.message, data: err.data ?? null });
  finish(0);
});
socket.onAny((event, data) => {
  out({ type: "event", event, data });
  if (data && data.final === true) finish(0);
});
