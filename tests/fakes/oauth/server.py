"""HTTP front of the fake Slack and Google OAuth endpoints, on 127.0.0.1, in a thread of the
test process or as a script (`PYTHONPATH=tests python -m fakes.oauth --port 8086`).

Routes:
  GET  /slack/oauth/v2/authorize       302 to redirect_uri?code=...&state=... (the user approves)
  POST /slack/api/oauth.v2.access      code exchange and (token rotation) refresh
  POST /slack/api/auth.revoke          token as form field or Authorization: Bearer
  GET  /google/o/oauth2/v2/auth        302 like Slack's
  POST /google/token                   authorization_code and refresh_token grants
  POST /google/revoke                  RFC 7009 (token as form field)

Client authentication: client_id/client_secret in the form or HTTP Basic. An exception in the
fake itself is the provider's answer to a failure of its own (state.py; the authorize page: a
500 page), its traceback logged (fakes/serving.py), the connection kept. Test controls:
`fail(provider, endpoint, *statuses)` answers the next requests with those statuses (503,
429 + Retry-After), `revoke_all(provider)` is the user removing the app (every token dead,
the next refresh gets invalid_grant), `trickle(provider, endpoint, seconds=...)` sends the
next answer of that endpoint in pieces spread over that time (a provider, or a proxy on the
way, answering slowly: each piece comes well within a client's read timeout, the whole answer
does not), `state(provider).calls` counts requests per endpoint and
grant (`exchange`, `refresh`, `revoke`), `.revoked` lists revoked tokens and `issued()` every
code and token handed out (tests grep logs for them).
"""

from __future__ import annotations

import argparse
import base64
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fakes.serving import JsonHandler, ThreadedFake

from .state import ProviderState

__all__ = ["FakeOAuth"]

_ROUTES = {
    ("GET", "/slack/oauth/v2/authorize"): ("slack", "authorize"),
    ("POST", "/slack/api/oauth.v2.access"): ("slack", "token"),
    ("POST", "/slack/api/auth.revoke"): ("slack", "revoke"),
    ("GET", "/google/o/oauth2/v2/auth"): ("google", "authorize"),
    ("POST", "/google/token"): ("google", "token"),
    ("POST", "/google/revoke"): ("google", "revoke"),
}


class FakeOAuth(ThreadedFake):
    """Both fake providers on one port. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        *,
        clients: dict[str, str] | None = None,
        expires_in: int | None = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        clients = clients if clients is not None else {"fake-client-id": "fake-client-secret"}
        self.slack = ProviderState("slack", clients=dict(clients), expires_in=expires_in)
        self.google = ProviderState("google", clients=dict(clients), expires_in=expires_in or 3599)
        self.lock = threading.Lock()
        self.trickles: dict[tuple[str, str], list[tuple[float, int]]] = {}
        """(provider, endpoint): the pause between pieces, and how many, of each of its next
        answers (`trickle`)."""
        super().__init__(_handler(self), host=host, port=port, name="fake-oauth")

    def endpoints(self, provider: str) -> dict[str, str]:
        """authorize/token/revoke URLs of `provider` ("slack" or "google")."""
        base = self.endpoint
        if provider == "slack":
            return {
                "authorize": f"{base}/slack/oauth/v2/authorize",
                "token": f"{base}/slack/api/oauth.v2.access",
                "revoke": f"{base}/slack/api/auth.revoke",
            }
        return {
            "authorize": f"{base}/google/o/oauth2/v2/auth",
            "token": f"{base}/google/token",
            "revoke": f"{base}/google/revoke",
        }

    def state(self, provider: str) -> ProviderState:
        return self.slack if provider == "slack" else self.google

    def fail(self, provider: str, endpoint: str, statuses: Iterable[int]) -> None:
        """The next requests to `endpoint` ("token" or "revoke") answer these statuses."""
        with self.lock:
            self.state(provider).faults.setdefault(endpoint, []).extend(statuses)

    def trickle(self, provider: str, endpoint: str, *, seconds: float, pieces: int = 10) -> None:
        """The next answer of `endpoint` ("token" or "revoke"): its status line and headers at
        once, then its body in `pieces` parts, one every `seconds / pieces` seconds."""
        with self.lock:
            self.trickles.setdefault((provider, endpoint), []).append((seconds / pieces, pieces))

    def _take_trickle(self, method: str, url: str) -> tuple[float, int] | None:
        """The pause between the pieces of this request's answer and how many; None: the
        answer at once."""
        route = _ROUTES.get((method, urlsplit(url).path))
        with self.lock:
            queue = self.trickles.get(route) if route is not None else None
            return queue.pop(0) if queue else None

    def revoke_all(self, provider: str) -> None:
        """The user removed the app at the provider: every token stops working."""
        with self.lock:
            state = self.state(provider)
            for grant in set(state.access.values()) | set(state.refresh.values()):
                state.revoke_grant(grant)

    def issued(self) -> list[str]:
        """Every code and token either provider issued."""
        with self.lock:
            return [*self.slack.issued, *self.google.issued]

    def handle(self, method: str, url: str, form: dict[str, str], auth: str | None) -> Any:
        parts = urlsplit(url)
        route = _ROUTES.get((method, parts.path))
        if route is None:
            return 404, {"error": "not_found"}, {}
        provider, endpoint = route
        state = self.state(provider)
        form = dict(form)
        bearer = None
        if auth and auth.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            form.setdefault("client_id", client_id)
            form.setdefault("client_secret", secret)
        elif auth and auth.lower().startswith("bearer "):
            bearer = auth[7:]
        with self.lock:
            state.calls[endpoint] += 1
            if endpoint == "authorize":
                return state.authorize(dict(parse_qsl(parts.query)))
            if endpoint == "token":
                return state.token(form)
            return state.revoke(form, bearer)

    def internal_error(self, method: str, url: str) -> Any:
        """The answer to a failure of the fake's own on this request: the endpoint's (state.py),
        or a 500 error page for the authorize page (or a path that is no endpoint)."""
        route = _ROUTES.get((method, urlsplit(url).path))
        if route is None or route[1] == "authorize":
            return 500, "Internal Server Error"
        return self.state(route[0]).internal_error()


def _handler(fake: FakeOAuth) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def send_body(self, status: int, body: bytes, ctype: str, headers: dict[str, str]) -> None:
            trickle = fake._take_trickle(self.command, self.path)
            if trickle is None:
                super().send_body(status, body, ctype, headers)
                return
            pause, pieces = trickle
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()
            size = -(-len(body) // pieces) or 1
            try:
                for start in range(0, len(body), size):
                    time.sleep(pause)
                    self.wfile.write(body[start : start + size])
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                self.close_connection = True

        def answer(self, raw: bytes) -> None:
            if self.command == "GET":
                self._reply(fake.handle("GET", self.path, {}, None))
                return
            form = dict(parse_qsl(raw.decode())) if raw else {}
            self._reply(fake.handle("POST", self.path, form, self.headers.get("Authorization")))

        def send_internal_error(self, exc: Exception) -> None:
            self._reply(fake.internal_error(self.command, self.path))

        def _reply(self, reply: Any) -> None:
            if len(reply) == 2:  # authorize: (302, location) or (400, message)
                status, text = reply
                headers = {"Location": text} if status == 302 else {}
                body = b"" if status == 302 else text.encode()
                self.send_body(status, body, "text/plain; charset=utf-8", headers)
                return
            self.send_json(*reply)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="fake Slack and Google OAuth endpoints")
    parser.add_argument("--port", type=int, default=8086)
    parser.add_argument("--client", action="append", default=[], help="id:secret (repeatable)")
    args = parser.parse_args()
    clients = dict(c.split(":", 1) for c in args.client) or None
    fake = FakeOAuth(clients=clients, port=args.port)
    print(f"fake OAuth on {fake.endpoint}", flush=True)
    fake.serve_forever()
