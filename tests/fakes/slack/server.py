"""HTTP front of the fake Slack Web API on 127.0.0.1, in a thread of the test process or as a
script (``PYTHONPATH=tests python -m fakes.slack --port 8087``).

``GET`` or ``POST /api/<method>`` with arguments in the query, a form or a JSON body, and the
token as ``Authorization: Bearer`` (or a ``token`` argument), as slack_sdk sends them. Point
``AsyncWebClient(base_url=fake.base_url)`` at it. Test controls: ``grant(token, scopes)``,
``fail(method, *statuses)`` (429 answers ``ratelimited`` with ``Retry-After: 1``),
``state.calls`` per method, ``state.posted``.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .state import Grant, SlackState

__all__ = ["ALL_SCOPES", "FakeSlack"]

ALL_SCOPES = frozenset(
    {"channels:read", "channels:history", "chat:write", "users:read", "users:read.email"}
)


class FakeSlack:
    """The fake Web API. Use as a context manager, or start()/stop()."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = SlackState()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """What ``AsyncWebClient(base_url=...)`` takes (ends with a slash)."""
        return f"{self.endpoint}/api/"

    def grant(self, token: str, scopes: Iterable[str] = ALL_SCOPES) -> None:
        with self.lock:
            self.state.grants[token] = Grant(team=self.state.team, scopes=frozenset(scopes))

    def fail(self, method: str, *statuses: int) -> None:
        with self.lock:
            self.state.faults.setdefault(method, []).extend(statuses)

    def handle(self, path: str, args: dict[str, Any], auth: str | None) -> Any:
        if not path.startswith("/api/"):
            return 404, {"ok": False, "error": "unknown_method"}, {}
        token = auth[7:] if auth and auth.lower().startswith("bearer ") else None
        token = token or (str(args.pop("token")) if args.get("token") else None)
        with self.lock:
            return self.state.handle(path[len("/api/") :], args, token)

    def start(self) -> FakeSlack:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-slack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet: no tokens in test output
            pass

        def do_GET(self) -> None:
            self._dispatch(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._dispatch(self.rfile.read(length))

        def _dispatch(self, raw: bytes) -> None:
            parts = urlsplit(self.path)
            args: dict[str, Any] = dict(parse_qsl(parts.query))
            ctype = self.headers.get("Content-Type", "")
            if raw and ctype.startswith("application/json"):
                try:
                    args.update(json.loads(raw))
                except ValueError:
                    self._send(200, {"ok": False, "error": "invalid_json"}, {})
                    return
            elif raw:
                args.update(parse_qsl(raw.decode()))
            self._send(*fake.handle(parts.path, args, self.headers.get("Authorization")))

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="fake Slack Web API")
    parser.add_argument("--port", type=int, default=8087)
    parser.add_argument("--token", action="append", default=[], help="a bot token to accept")
    args = parser.parse_args()
    fake = FakeSlack(port=args.port)
    for token in args.token:
        fake.grant(token)
    general = fake.state.add_channel("general")
    fake.state.add_user("ada", "ada@example.com")
    fake.state.add_message(general, "hello from the fake workspace")
    print(f"fake Slack Web API on {fake.base_url}", flush=True)
    fake._server.serve_forever()
