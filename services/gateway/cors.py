"""CORS: an exact origin allow-list plus wildcard-subdomain patterns, credentials allowed.

``https://*.xynergyos.com`` allows any subdomain (one or more labels) of xynergyos.com over
https, and nothing else: not the bare domain, not another scheme, not ``evilxynergyos.com``.
A bare ``*`` is refused, since credentials are allowed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from services.gateway.errors import error_body

__all__ = ["Cors", "OriginPolicy", "with_headers"]

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_LABELS = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"


def _pattern_regex(pattern: str) -> str:
    pattern = pattern.strip().lower()
    if "*" in pattern and not re.match(r"^https?://\*\.[^*]+$", pattern):
        raise ValueError(f"CORS pattern {pattern!r} must look like https://*.example.com")
    return re.escape(pattern).replace(r"\*", _LABELS)


class OriginPolicy:
    def __init__(self, *, origins: Iterable[str], patterns: Iterable[str]) -> None:
        self.origins = frozenset(o.strip().lower().rstrip("/") for o in origins)
        if "*" in self.origins or "*" in [p.strip() for p in patterns]:
            raise ValueError("a '*' CORS origin is not allowed (credentials are allowed)")
        parts = [_pattern_regex(p) for p in patterns]
        self.regex = "(?:" + "|".join(parts) + ")" if parts else None
        self._compiled = re.compile(self.regex) if self.regex else None

    def allows(self, origin: str | None) -> bool:
        if not origin:
            return False
        origin = origin.lower()
        if origin in self.origins:
            return True
        return self._compiled is not None and self._compiled.fullmatch(origin) is not None


Header = tuple[bytes, bytes]

_VARY_ORIGIN: Header = (b"vary", b"Origin")
_PREFLIGHT_VARY = (
    b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
    b"Access-Control-Request-Private-Network"
)
# Headers a browser may always send (the CORS safelist), as Starlette lists them.
_SAFELISTED = ("Accept", "Accept-Language", "Content-Language", "Content-Type")


class Cors:
    """CORS headers as plain byte pairs, computed once per request without wrapping ``send``.

    The gateway used Starlette's ``CORSMiddleware``, which builds ``Headers`` for every request
    and wraps ``send`` to rewrite the response headers through ``MutableHeaders``: about 4% of
    the gateway's CPU per proxied request. Here a preflight is answered from precomputed
    headers, and :meth:`response_headers` returns what every other response gets: for an
    allowed origin, that origin (never ``*``), ``Access-Control-Allow-Credentials`` and the
    exposed headers; always ``Vary: Origin``. The proxy appends them to its own response
    headers; other apps get them through :meth:`wrap_send`.
    """

    def __init__(
        self,
        policy: OriginPolicy,
        *,
        allow_methods: Iterable[str],
        allow_headers: Iterable[str],
        expose_headers: Iterable[str],
        max_age: int = 600,
    ) -> None:
        self.policy = policy
        self.allow_methods = frozenset(m.upper() for m in allow_methods)
        allowed = sorted(set(_SAFELISTED) | {h.lower() for h in allow_headers})
        self.allow_headers = frozenset(h.lower() for h in allowed)
        self._simple: list[Header] = [(b"access-control-allow-credentials", b"true")]
        expose = ", ".join(expose_headers)
        if expose:
            self._simple.append((b"access-control-expose-headers", expose.encode("latin-1")))
        self._simple.append(_VARY_ORIGIN)
        methods = ", ".join(
            m
            for m in ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
            if m in self.allow_methods
        )
        self._preflight: list[Header] = [
            (b"vary", _PREFLIGHT_VARY),
            (b"access-control-allow-methods", methods.encode()),
            (b"access-control-max-age", str(max_age).encode()),
            (b"access-control-allow-headers", ", ".join(allowed).encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
        ]

    def response_headers(self, origin: bytes | None) -> list[Header]:
        """Headers for a non-preflight response to a request with this ``Origin`` (a new list)."""
        if origin is not None and self.policy.allows(origin.decode("latin-1")):
            return [(b"access-control-allow-origin", origin), *self._simple]
        return [_VARY_ORIGIN]

    def preflight(
        self, origin: bytes, method: bytes, request_headers: bytes | None, private_network: bool
    ) -> tuple[int, list[Header], bytes]:
        """(status, headers, body) of the answer to an ``OPTIONS`` preflight."""
        headers = list(self._preflight)
        failures: list[str] = []
        if self.policy.allows(origin.decode("latin-1")):
            headers.append((b"access-control-allow-origin", origin))
        else:
            failures.append("origin")
        if method.decode("latin-1") not in self.allow_methods:
            failures.append("method")
        if request_headers is not None:
            for name in request_headers.decode("latin-1").split(","):
                if name.strip().lower() not in self.allow_headers:
                    failures.append("headers")
                    break
        if private_network:
            failures.append("private-network")
        if failures:
            message = "Disallowed CORS " + ", ".join(failures)
            body = error_body(400, "cors_refused", message)
            headers.append((b"content-type", b"application/json"))
        else:
            body = b"OK"
            headers.append((b"content-type", b"text/plain; charset=utf-8"))
        headers.append((b"content-length", str(len(body)).encode()))
        return (400 if failures else 200), headers, body


def with_headers(send: Send, extra: list[Header]) -> Send:
    """``send`` that appends ``extra`` to the response start message's headers."""

    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return wrapped
