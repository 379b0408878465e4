"""Unit tests of the per-request fast path parts: CORS headers, the access log writer, RESP packing and cached metric children."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest

from services.gateway.accesslog import AccessLog
from services.gateway.cors import Cors, OriginPolicy
from services.gateway.metrics import GatewayMetrics
from services.gateway.redismux import pack_command


def _cors() -> Cors:
    return Cors(
        OriginPolicy(origins=["http://localhost:3000"], patterns=["https://*.xynergyos.com"]),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["authorization", "if-match"],
        expose_headers=["x-request-id", "etag"],
        max_age=600,
    )


def test_cors_response_headers() -> None:
    cors = _cors()
    assert cors.response_headers(None) == [(b"vary", b"Origin")]
    assert cors.response_headers(b"https://evil.com") == [(b"vary", b"Origin")]
    allowed = dict(cors.response_headers(b"https://app.xynergyos.com"))
    assert allowed[b"access-control-allow-origin"] == b"https://app.xynergyos.com"
    assert allowed[b"access-control-allow-credentials"] == b"true"
    assert allowed[b"access-control-expose-headers"] == b"x-request-id, etag"
    assert allowed[b"vary"] == b"Origin"
    # a fresh list every time: callers extend it
    assert cors.response_headers(None) is not cors.response_headers(None)


def test_cors_preflight() -> None:
    cors = _cors()
    status, headers, body = cors.preflight(
        b"http://localhost:3000", b"POST", b"Authorization, If-Match", False
    )
    h = dict(headers)
    assert (status, body) == (200, b"OK")
    assert h[b"access-control-allow-origin"] == b"http://localhost:3000"
    assert h[b"access-control-allow-credentials"] == b"true"
    assert b"if-match" in h[b"access-control-allow-headers"]
    assert h[b"access-control-max-age"] == b"600"
    status, headers, body = cors.preflight(b"https://evil.com", b"DELETE", b"x-secret", True)
    assert status == 400
    assert json.loads(body) == {
        "error": "cors_refused",
        "message": "Disallowed CORS origin, method, headers, private-network",
        "status": 400,
    }
    assert b"access-control-allow-origin" not in dict(headers)


@pytest.fixture
def access_logger_info() -> Any:
    """The access logger enabled for INFO, as configure_logging() leaves it."""
    logger = logging.getLogger("xynergy.gateway.access")
    old = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(old)


def _request(log: AccessLog, i: int) -> None:
    log.request(
        request_id=f"r{i}",
        method="GET",
        path='/api/v2/crm/"x"',
        route="/api/v2/crm",
        status=200,
        ms=1.5,
        tenant="t1",
        user=None,
    )


@pytest.mark.usefixtures("access_logger_info")
async def test_access_log_batches_json_lines() -> None:
    out = io.StringIO()
    log = AccessLog(out, max_lines=3, flush_seconds=60)
    _request(log, 1)
    _request(log, 2)
    assert out.getvalue() == ""
    _request(log, 3)  # the batch is full
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first["logger"] == "xynergy.gateway.access"
    assert first["level"] == "info"
    assert first["request_id"] == "r1"
    assert first["path"] == '/api/v2/crm/"x"'
    assert first["status"] == 200
    assert first["tenant"] == "t1"
    assert first["user"] is None
    _request(log, 4)
    log.close()
    assert len(out.getvalue().splitlines()) == 4


@pytest.mark.usefixtures("access_logger_info")
async def test_access_log_flushes_after_its_interval() -> None:
    out = io.StringIO()
    log = AccessLog(out, max_lines=100, flush_seconds=0.01)
    _request(log, 1)
    for _ in range(200):
        if out.getvalue():
            break
        await asyncio.sleep(0.01)
    assert json.loads(out.getvalue())["request_id"] == "r1"


def test_access_log_follows_the_logger_level() -> None:
    out = io.StringIO()
    logger = logging.getLogger("xynergy.gateway.access")
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        log = AccessLog(out, max_lines=1)
        _request(log, 1)
        assert out.getvalue() == ""
    finally:
        logger.setLevel(old)


def test_pack_command() -> None:
    assert pack_command(("SET", b"k", 12)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert pack_command(("ECHO", "é")) == b"*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"
    with pytest.raises(TypeError):
        pack_command(("SET", "k", None))
    with pytest.raises(TypeError):
        pack_command(("SET", "k", True))


def _sample(metrics: GatewayMetrics, name: str, labels: dict[str, str]) -> Any:
    return metrics.registry.get_sample_value(name, labels)


def test_metrics_request_done_counts_by_route_method_status() -> None:
    metrics = GatewayMetrics()
    for _ in range(3):
        metrics.request_done("/api/v2/crm", "GET", 200, 0.002)
    metrics.request_done("/api/v2/crm", "GET", 404, 0.001)
    labels = {"route": "/api/v2/crm", "method": "GET", "status": "200"}
    assert _sample(metrics, "xynergy_gateway_requests_total", labels) == 3
    assert _sample(metrics, "xynergy_gateway_requests_total", {**labels, "status": "404"}) == 1
    count = _sample(
        metrics, "xynergy_gateway_request_duration_seconds_count", {"route": "/api/v2/crm"}
    )
    assert count == 4
    metrics.cache_result("hit")
    metrics.cache_result("miss")
    assert _sample(metrics, "xynergy_gateway_cache_requests_total", {"result": "hit"}) == 1
    assert _sample(metrics, "xynergy_gateway_cache_hit_ratio", {}) == 0.5
