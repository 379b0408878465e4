"""SimpleCors (the proxy's own CORS headers) against Starlette's CORSMiddleware itself: the
same response headers for the same request, whatever the upstream sent (header names in
ASGI's lower case; SimpleCors also matches the upstream's mixed-case names, which the
middleware's lower-case lookups miss)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware

from services.gateway.cors import OriginPolicy, SimpleCors

pytestmark = pytest.mark.unit

Headers = list[tuple[bytes, bytes]]
POLICY = OriginPolicy(origins=["https://app.example.com"], patterns=["https://*.example.org"])


def middleware(app: Any = None, *, expose: list[str] | None = None) -> CORSMiddleware:
    return CORSMiddleware(
        app,
        allow_origins=sorted(POLICY.origins),
        allow_origin_regex=POLICY.regex,
        allow_credentials=True,
        allow_methods=["GET"],
        expose_headers=expose if expose is not None else ["x-request-id", "etag"],
    )


def through_starlette(origin: str | None, upstream: Headers, **kw: Any) -> Headers:
    """The headers Starlette's middleware sends for a response with ``upstream`` headers."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(upstream)})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    headers = [(b"origin", origin.encode())] if origin is not None else []
    scope = {"type": "http", "method": "GET", "path": "/api/v2/x", "headers": headers}
    asyncio.run(middleware(app, **kw)(scope, receive, send))
    return list(sent[0]["headers"])


def normal(headers: Headers) -> list[tuple[bytes, bytes]]:
    return sorted((k.lower(), v) for k, v in headers)


UPSTREAMS: list[Headers] = [
    [(b"content-type", b"application/json")],
    [(b"content-type", b"text/plain"), (b"vary", b"Accept-Encoding")],
    [(b"vary", b"Accept-Encoding"), (b"vary", b"Accept-Language")],
    [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-credentials", b"false"),
        (b"access-control-expose-headers", b"x-secret"),
        (b"x-request-id", b"abc"),
    ],
]
ORIGINS = [
    None,
    "https://app.example.com",
    "https://a.b.example.org",
    "https://evil.example.com",
    "https://example.org",
]


@pytest.mark.parametrize("origin", ORIGINS)
@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_same_headers_as_starlettes_middleware(origin: str | None, upstream: Headers) -> None:
    mine = SimpleCors(middleware()).apply(origin, list(upstream))
    assert normal(mine) == normal(through_starlette(origin, upstream))


@pytest.mark.parametrize("origin", ORIGINS)
def test_upstream_names_in_any_case(origin: str | None) -> None:
    """An upstream's ``Access-Control-Allow-Origin: *`` or ``Vary`` in its own case is
    replaced or merged as the lower-case one is (never two Allow-Origin values)."""
    cors = SimpleCors(middleware())
    upstream = [(k.title(), v) for k, v in UPSTREAMS[3]] + [(b"Vary", b"Accept-Encoding")]
    lowered = [(k.lower(), v) for k, v in upstream]
    mine = normal(cors.apply(origin, upstream))
    assert mine == normal(cors.apply(origin, lowered))
    assert len([k for k, _ in mine if k == b"vary"]) == 1
    assert len([k for k, _ in mine if k == b"access-control-allow-origin"]) <= 1


def test_allowed_origin_is_echoed_and_others_are_not() -> None:
    cors = SimpleCors(middleware())
    allowed = dict(cors.apply("https://app.example.com", []))
    assert allowed[b"access-control-allow-origin"] == b"https://app.example.com"
    assert allowed[b"access-control-allow-credentials"] == b"true"
    upstream = [(b"access-control-allow-origin", b"*")]
    refused = cors.apply("https://evil.example.com", upstream)
    assert (b"access-control-allow-origin", b"https://evil.example.com") not in refused
    assert dict(refused)[b"vary"] == b"Origin"


def test_no_exposed_headers_configured() -> None:
    upstream = [(b"access-control-expose-headers", b"x-upstream")]
    mine = SimpleCors(middleware(expose=[])).apply("https://app.example.com", upstream)
    theirs = through_starlette("https://app.example.com", upstream, expose=[])
    assert normal(mine) == normal(theirs)


def test_remembered_origins_are_bounded() -> None:
    cors = SimpleCors(middleware(), max_origins=2)
    for i in range(5):
        cors.apply(f"https://o{i}.example.org", [])
    assert len(cors._by_origin) == 2
    assert dict(cors.apply("https://o4.example.org", []))[b"access-control-allow-origin"] == (
        b"https://o4.example.org"
    )
