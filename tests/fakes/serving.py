"""How the HTTP fakes serve: a ThreadingHTTPServer on 127.0.0.1 in a daemon thread (context
manager, or start()/stop(); Slack, Gmail, Secret Manager, Cloud Run, the OAuth providers and
OpenAI) and a quiet request handler that answers JSON (all of them but Cloud Run). Nothing here
is one API's; each fake's package says how its API answers.

An exception the fake does not catch while answering (a bug in the fake) is answered as the
real API answers a failure of its own, which each fake says in :meth:`JsonHandler.internal_error`
(Google: 500 ``INTERNAL``; Slack: ``ok: false``, ``internal_error``), and its traceback is
logged at error level (logger ``fakes.serving``; the path without its query, which may hold a
token). The connection stays open for the next request.

A POST whose ``Content-Length`` is not a non-negative integer is answered as an HTTP server (the
API's front) answers it, before any API sees it: 400 Bad Request with the standard library's
small HTML error page, and the connection is closed, as where its body ends is unknown."""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

__all__ = ["JsonHandler", "ThreadedFake"]

log = logging.getLogger(__name__)


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    json_type = "application/json; charset=utf-8"
    """The Content-Type of JSON answers."""
    _answering = False
    """True once the status line of an answer is out: too late for another answer."""

    def log_message(self, *args: Any) -> None:  # quiet: no tokens in test output
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answering = True
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "0").strip()
        if not (length.isascii() and length.isdigit()):  # not "-1", "+3", "1_0", "²", ""
            explain = "Content-Length is not a non-negative integer"
            self.send_error(HTTPStatus.BAD_REQUEST, explain=explain)  # and Connection: close
            return
        self._answer(self.rfile.read(int(length)))

    def _answer(self, raw: bytes) -> None:
        self._answering = False
        try:
            self.answer(raw)
        except Exception as exc:
            path = urlsplit(self.path).path
            log.exception("%s: %s %s raised", type(self).__module__, self.command, path)
            if self._answering:  # part of an answer is out: the connection cannot be reused
                self.close_connection = True
                return
            self.send_internal_error(exc)

    def answer(self, raw: bytes) -> None:
        """Answer the request (``raw`` is its body); subclasses say how."""
        raise NotImplementedError

    def internal_error(self, exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON body and headers of the real API's answer to a failure of its own;
        ``exc`` is what the fake raised (already logged). Subclasses answer as their API."""
        return 500, {"error": "internal_error"}, {}

    def send_internal_error(self, exc: Exception) -> None:
        """Send the answer to a failure of the fake's own: :meth:`internal_error` as JSON.
        A fake whose API answers some failures in another form (a page) overrides this."""
        self.send_json(*self.internal_error(exc))

    def send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        self.send_body(status, json.dumps(payload).encode(), self.json_type, headers)

    def send_body(self, status: int, body: bytes, ctype: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class ThreadedFake:
    """A fake's server and lifecycle: start() (returns the fake), stop(), or a ``with`` block.
    The server thread is called ``name``; ``poll_interval`` is how often it looks for stop()."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        *,
        host: str,
        port: int,
        name: str = "fake",
        poll_interval: float = 0.5,
    ) -> None:
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._thread_name = name
        self._poll_interval = poll_interval

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=self._poll_interval)

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self.serve_forever, name=self._thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
