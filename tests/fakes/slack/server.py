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
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fakes.serving import JsonHandler, ThreadedFake

from .state import Grant, SlackState

__all__ = ["ALL_SCOPES", "FakeSlack"]

ALL_SCOPES = frozenset(
    {"channels:read", "channels:history", "chat:write", "users:read", "users:read.email"}
)


class FakeSlack(ThreadedFake):
    """The fake Web API. Use as a context manager, or start()/stop()."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = SlackState()
        self.lock = threading.Lock()
        super().__init__(_handler(self), host=host, port=port)

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


def _handler(fake: FakeSlack) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def answer(self, raw: bytes) -> None:
            parts = urlsplit(self.path)
            args: dict[str, Any] = dict(parse_qsl(parts.query))
            ctype = self.headers.get("Content-Type", "")
            if raw and ctype.startswith("application/json"):
                try:
                    args.update(json.loads(raw))
                except ValueError:
                    self.send_json(200, {"ok": False, "error": "invalid_json"}, {})
                    return
            elif raw:
                args.update(parse_qsl(raw.decode()))
            self.send_json(*fake.handle(parts.path, args, self.headers.get("Authorization")))

        def internal_error(self, exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
            # the Web API says its own failures in the envelope, like any other error
            return 200, {"ok": False, "error": "internal_error"}, {}

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
    fake.serve_forever()
