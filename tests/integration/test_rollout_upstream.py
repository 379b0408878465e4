"""A small real HTTP upstream standing in for a revision's Pods (kwok runs no containers):
`python tests/integration/test_rollout_upstream.py PORT`. Every request is answered after a
base latency with jitter; `POST /__control {"errors": 0.05, "slow": 1.5}` makes it fail that
share of requests with 500 and multiplies its latency (a bad canary). `GET /__count` says how
many requests it served. Holds no tests (stdlib only, so it starts fast)."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BASE_SECONDS = 0.040
JITTER_SECONDS = 0.004


class _State:
    errors = 0.0
    slow = 1.0
    served = 0
    lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/__count":
            self._answer(200, json.dumps({"served": _State.served}).encode())
            return
        time.sleep(max(0.0, random.gauss(BASE_SECONDS, JITTER_SECONDS)) * _State.slow)
        with _State.lock:
            _State.served += 1
        failed = random.random() < _State.errors
        self._answer(500 if failed else 200, b'{"ok": false}' if failed else b'{"ok": true}')

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        _State.errors = float(body.get("errors", 0.0))
        _State.slow = float(body.get("slow", 1.0))
        self._answer(200, b"{}")

    def log_message(self, *_: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Handler)
    server.daemon_threads = True
    server.serve_forever()
