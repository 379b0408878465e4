"""Proxy behaviour through the running gateway: routes, aliases, paths, headers, bodies,
limits, health endpoints, CORS, route reloads."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx

from services.common.settings import AuthSettings, InternalIdentitySettings
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

from .conftest import (
    INTERNAL_KEY,
    JWT_SECRET,
    RedisServer,
    RunningGateway,
    Upstream,
    make_jwt,
    routes_document,
    serve,
    wait_for,
)


async def test_unknown_route_is_404_json(gateway: RunningGateway, auth: Any) -> None:
    r = await gateway.http.get("/api/v2/nowhere/x", headers=auth())
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    # a prefix must match whole segments
    r = await gateway.http.get("/api/v2/crmx/contacts", headers=auth())
    assert r.status_code == 404


async def test_xynergyos_mirror_and_alias_reach_the_canonical_path(
    gateway: RunningGateway, auth: Any
) -> None:
    r = await gateway.http.get("/api/xynergyos/v2/crm/contacts?a=1", headers=auth())
    assert r.status_code == 200
    assert r.json()["path"] == "/api/v2/crm/contacts"
    assert r.json()["query"] == "a=1"
    r = await gateway.http.get("/api/v2/email/inbox", headers=auth())
    assert r.status_code == 200
    assert r.json()["path"] == "/api/v2/gmail/inbox"
    r = await gateway.http.get("/api/xynergyos/v2/email/inbox", headers=auth())
    assert r.json()["path"] == "/api/v2/gmail/inbox"
    r = await gateway.http.get("/api/v1/ai/chat", headers=auth())
    assert r.json()["path"] == "/api/v1/ai/chat"


async def _raw_get(url: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """A GET whose path is sent as is (HTTP clients remove dot segments themselves)."""
    status, _, body = await _raw(url, f"GET {path} HTTP/1.1", headers)
    return status, body


async def test_dot_segments_cannot_escape_a_route(gateway: RunningGateway, auth: Any) -> None:
    status, _ = await _raw_get(gateway.url, "/api/v2/crm/../../../../etc/passwd", auth())
    assert status == 400
    status, _ = await _raw_get(gateway.url, "/api/v2/crm/%2e%2e/%2e%2e/%2e%2e/%2e%2e/x", auth())
    assert status == 400
    status, body = await _raw_get(gateway.url, "/api/v2/crm/../slack/channels", auth())
    assert status == 200
    assert b'"path":"/api/v2/slack/channels"' in body


async def test_request_id_and_hop_by_hop_headers(gateway: RunningGateway, auth: Any) -> None:
    r = await gateway.http.get(
        "/api/v2/crm/contacts",
        headers={
            **auth(),
            "X-Request-ID": "req-123",
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "drop me",
            "TE": "trailers",
            "Proxy-Authorization": "Basic abc",
        },
    )
    assert r.headers["x-request-id"] == "req-123"
    seen = r.json()["headers"]
    assert seen["x-request-id"] == "req-123"
    for name in ("x-secret-hop", "te", "proxy-authorization"):
        assert name not in seen
    r = await gateway.http.get("/api/v2/crm/contacts", headers=auth())
    generated = r.headers["x-request-id"]
    assert len(generated) >= 16
    assert r.json()["headers"]["x-request-id"] == generated


async def test_bodies_stream_both_ways(gateway: RunningGateway, auth: Any) -> None:
    payload = bytes(range(256)) * 2048  # 512 KiB, above the buffering threshold

    async def chunks() -> Any:
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    r = await gateway.http.post("/api/v2/crm/upload", headers=auth(), content=chunks())
    assert r.status_code == 200
    assert r.json()["body_len"] == len(payload)
    assert r.json()["body_sha256"] == hashlib.sha256(payload).hexdigest()
    r = await gateway.http.get("/api/v2/crm/stream", headers=auth())
    assert r.text == "".join(f"chunk-{i};" for i in range(5))


async def test_body_over_the_limit_is_413(gateway: RunningGateway, auth: Any) -> None:
    big = b"x" * ((1 << 20) + 1)
    r = await gateway.http.post("/api/v2/crm/upload", headers=auth(), content=big)
    assert r.status_code == 413

    async def chunks() -> Any:
        for _ in range(20):
            yield b"y" * 65536

    r = await gateway.http.post("/api/v2/crm/upload", headers=auth(), content=chunks())
    assert r.status_code == 413


async def test_idempotent_requests_are_retried_and_posts_are_not(
    gateway: RunningGateway, upstream: Upstream, auth: Any
) -> None:
    upstream.fail_next["/api/v2/flaky/retry-get"] = 1
    r = await gateway.http.get("/api/v2/flaky/retry-get", headers=auth(user_id="retrier"))
    assert r.status_code == 200
    assert upstream.hits["/api/v2/flaky/retry-get"] == 2
    upstream.fail_next["/api/v2/flaky/retry-post"] = 1
    r = await gateway.http.post("/api/v2/flaky/retry-post", headers=auth(user_id="retrier"))
    assert r.status_code == 503
    assert upstream.hits["/api/v2/flaky/retry-post"] == 1


async def test_route_timeout_gives_504(gateway: RunningGateway, auth: Any) -> None:
    r = await gateway.http.post("/api/v2/flaky/slow", headers=auth(user_id="slowpoke"))
    assert r.status_code == 504
    assert r.json()["error"] == "upstream_timeout"


async def test_health_ready_metrics_and_docs(gateway: RunningGateway, auth: Any) -> None:
    assert (await gateway.http.get("/healthz")).json() == {"status": "ok"}
    ready = (await gateway.http.get("/readyz")).json()
    assert ready["checks"]["redis"] == "ok"
    assert ready["checks"]["routes"]["count"] >= 5
    await gateway.http.get("/api/v2/crm/contacts", headers=auth())
    metrics = (await gateway.http.get("/metrics")).text
    assert (
        'xynergy_gateway_requests_total{method="GET",route="/api/v2/crm",status="200"}' in metrics
    )
    assert "xynergy_gateway_request_duration_seconds_bucket" in metrics
    assert (await gateway.http.get("/openapi.json")).json()["info"]["title"].startswith("Xynergy")


async def test_cors_allows_listed_and_pattern_origins_only(gateway: RunningGateway) -> None:
    async def preflight(origin: str) -> httpx.Response:
        return await gateway.http.options(
            "/api/v2/crm/contacts",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )

    for origin in (
        "http://localhost:3000",
        "https://app.xynergyos.com",
        "https://a.b.xynergyos.com",
    ):
        r = await preflight(origin)
        assert r.status_code == 200, origin
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-credentials"] == "true"
    for origin in (
        "https://evil.com",
        "https://xynergyos.com.evil.com",
        "http://app.xynergyos.com",
    ):
        r = await preflight(origin)
        assert r.headers.get("access-control-allow-origin") != origin
        assert r.headers.get("access-control-allow-origin") != "*"


async def test_cors_lets_frontends_use_etags_and_idempotency_keys(gateway: RunningGateway) -> None:
    r = await gateway.http.options(
        "/api/v2/crm/contacts/c1",
        headers={
            "Origin": "https://app.xynergyos.com",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, if-match, idempotency-key",
        },
    )
    assert r.status_code == 200
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"if-match", "idempotency-key"} <= allowed


async def test_route_table_reloads_without_restart(
    gateway_factory: Any, upstream: Upstream, auth: Any
) -> None:
    async with gateway_factory() as gw:
        assert (await gw.http.get("/api/v1/marketing/campaigns", headers=auth())).status_code == 404
        doc = routes_document(upstream.url)
        doc["services"].append(
            {"name": "marketing", "url": upstream.url, "routes": [{"prefix": "/api/v1/marketing"}]}
        )
        gw.routes_file.write_text(json.dumps(doc))

        async def served() -> bool:
            r = await gw.http.get("/api/v1/marketing/campaigns", headers=auth())
            return r.status_code == 200

        await wait_for(served, within=10, what="the new route")
        gw.routes_file.write_text("services: [ {broken")
        r = await gw.http.get("/api/v1/marketing/campaigns", headers=auth())
        assert r.status_code == 200  # a broken file keeps the last good table


async def test_doubled_slashes_are_normalised_before_dispatch(
    gateway: RunningGateway, auth: Any
) -> None:
    for raw in (
        "//api/v2/crm/contacts",
        "/api//v2/crm//contacts",
        "//api/xynergyos/v2/crm/./contacts",
    ):
        status, body = await _raw_get(gateway.url, raw, auth())
        assert status == 200, raw
        assert json.loads(body)["path"] == "/api/v2/crm/contacts", raw
    status, body = await _raw_get(gateway.url, "//healthz", {})
    assert (status, json.loads(body)) == (200, {"status": "ok"})


async def _raw(
    url: str, request_line: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """Any request line sent as is; (status, headers, body)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [request_line, f"Host: {host}", "Connection: close", "Content-Length: 0"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    out = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split(" ", 2)[1]), out, body


async def test_every_error_of_the_gateway_has_the_one_json_shape(
    gateway: RunningGateway, auth: Any
) -> None:
    """The gateway's own error paths: FastAPI's and Starlette's defaults, the proxy's checks,
    CORS refusals and the socket.io endpoint all answer {error, message, status}."""
    token = auth()
    bad = {"Authorization": "Bearer " + make_jwt(secret="wrong-secret" * 4)}
    cors = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    stream = "/api/xynergyos/v2/stream/"
    cases = [
        ("GET /nowhere HTTP/1.1", {}, 404),
        ("GET //nowhere/at/all HTTP/1.1", {}, 404),
        ("POST /healthz HTTP/1.1", {}, 405),
        ("DELETE /metrics HTTP/1.1", {}, 405),
        ("GET /api/v2/nowhere/x HTTP/1.1", token, 404),
        ("GET //api/v2/nowhere HTTP/1.1", token, 404),
        ("GET /api/v2/crm/../../../../etc/passwd HTTP/1.1", token, 400),
        ("GET /api/v2/crm/../../../etc/passwd HTTP/1.1", token, 404),
        ("GET /api/v2/crm/x HTTP/1.1", {}, 401),
        ("GET /api/v2/crm/x HTTP/1.1", bad, 401),
        ("OPTIONS /api/v2/crm/x HTTP/1.1", cors, 400),
        (f"GET {stream}?EIO=4&transport=polling&sid=not-a-session HTTP/1.1", {}, 400),
        (f"GET {stream}?EIO=1&transport=carrier-pigeon HTTP/1.1", {}, 400),
    ]
    for line, headers, expected in cases:
        status, got_headers, body = await _raw(gateway.url, line, headers)
        assert status == expected, (line, body)
        assert got_headers["content-type"].startswith("application/json"), (line, got_headers)
        parsed = json.loads(body)
        assert parsed["status"] == expected, line
        assert {type(parsed["error"]), type(parsed["message"])} == {str}, line
        assert parsed["error"], line
        assert parsed["message"], line
        assert "detail" not in parsed, line


async def _mixed_case_cors_upstream(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """An upstream that sets CORS headers of its own, names in mixed case on the wire (as a
    hand-written Express or Flask handler does)."""
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    body = b'{"ok":true}'
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: false\r\n"
        b"Access-Control-Expose-Headers: X-Internal\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    await writer.drain()
    writer.close()


async def test_upstream_cors_headers_never_reach_the_client(
    redis_server: RedisServer, tmp_path: Path, auth: Any
) -> None:
    """The gateway's CORS policy is the only one: an upstream's own Access-Control-* headers
    (in any case) are dropped, so a browser sees exactly one allowed origin, the echoed one.
    (A gateway of its own with JWTs only: it needs no Firebase emulator.)"""
    server = await asyncio.start_server(_mixed_case_cors_upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    routes = tmp_path / "routes.json"
    upstream = {"name": "cors", "url": f"http://127.0.0.1:{port}"}
    routes.write_text(json.dumps({"services": [{**upstream, "routes": [{"prefix": "/api/v2/c"}]}]}))
    origin = "http://localhost:3000"
    app = create_app(
        GatewaySettings(
            routes_file=routes,
            cors_origins=[origin],
            redis_url=redis_server.url,
            log_level="WARNING",
        ),
        auth_settings=AuthSettings(jwt_secret=JWT_SECRET, firebase_enabled=False),  # type: ignore[arg-type]
        internal_settings=InternalIdentitySettings(signing_key=INTERNAL_KEY),  # type: ignore[arg-type]
    )
    async with server, serve(app) as url, httpx.AsyncClient(base_url=url) as http:

        async def loaded() -> bool:
            return app.routes.loaded and len(app.routes.table) > 0

        await wait_for(loaded, within=10, what="the route table")
        r = await http.get("/api/v2/c/x", headers={**auth(), "Origin": origin})
        assert r.status_code == 200
        assert r.headers.get_list("access-control-allow-origin") == [origin]
        assert r.headers.get_list("access-control-allow-credentials") == ["true"]
        assert "x-internal" not in r.headers["access-control-expose-headers"].lower()
        r = await http.get("/api/v2/c/x", headers=auth())  # no Origin: no CORS headers
        assert r.status_code == 200
        assert not [k for k in r.headers if k.lower().startswith("access-control-")]
