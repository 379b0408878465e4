"""CORS origins: an exact allow-list plus wildcard-subdomain patterns, credentials allowed.

The policy gives Starlette's ``CORSMiddleware`` its origins and regex (services.gateway.app)
and checks the socket.io handshake's ``Origin``. :class:`SimpleCors` gives a proxied
response the headers that middleware would give it, without the middleware's per-message
``send`` wrapper and header rewriting (in py-spy about a seventh of the gateway's Python time
on the proxy path): the policy and the header values stay the middleware's own.

``https://*.xynergyos.com`` allows any subdomain (one or more labels) of xynergyos.com over
https, and nothing else: not the bare domain, not another scheme, not ``evilxynergyos.com``.
A bare ``*`` is refused, since credentials are allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.middleware.cors import CORSMiddleware

__all__ = ["OriginPolicy", "SimpleCors"]

Headers = list[tuple[bytes, bytes]]

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


class SimpleCors:
    """What Starlette's ``CORSMiddleware`` does to the response of a simple (not preflight)
    request, applied by the proxy to the raw headers it is about to send.

    As the middleware's ``send``: with an ``Origin``, its simple headers (credentials,
    exposed headers) replace the response's own; an allowed origin is echoed in
    ``Access-Control-Allow-Origin`` (replacing the upstream's); and every response, with or
    without an ``Origin``, gets ``Origin`` added to one merged ``Vary``. The answer for an
    origin is worked out once (at most ``max_origins`` remembered)."""

    def __init__(self, middleware: CORSMiddleware, *, max_origins: int = 1024) -> None:
        self._middleware = middleware
        self._simple = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in middleware.simple_headers.items()
        ]
        self._max = max_origins
        self._by_origin: dict[str, tuple[frozenset[bytes], Headers]] = {}

    def _for(self, origin: str) -> tuple[frozenset[bytes], Headers]:
        """(header names to replace, headers to add) for a request with this Origin."""
        known = self._by_origin.get(origin)
        if known is not None:
            return known
        m = self._middleware
        add = list(self._simple)
        # as the middleware: the origin is echoed when credentials are allowed or the origin
        # is on the list (never "*" with credentials)
        if (m.allow_all_origins and m.allow_credentials) or (
            not m.allow_all_origins and m.is_allowed_origin(origin=origin)
        ):
            add = [h for h in add if h[0] != b"access-control-allow-origin"]
            add.append((b"access-control-allow-origin", origin.encode("latin-1")))
        answer = (frozenset(name for name, _ in add), add)
        if len(self._by_origin) < self._max:
            self._by_origin[origin] = answer
        return answer

    def apply(self, origin: str | None, headers: Headers) -> Headers:
        """The response headers as the middleware would send them."""
        drop, add = self._for(origin) if origin is not None else (frozenset(), [])
        out: Headers = []
        vary: list[bytes] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"vary":
                vary.append(value)
            elif lowered not in drop:
                out.append((name, value))
        out.extend(add)
        vary.append(b"Origin")
        out.append((b"vary", b", ".join(vary)))
        return out
