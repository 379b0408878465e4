"""Unit tests of the per-request fast path parts: RESP packing and cached metric children."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.metrics import GatewayMetrics
from services.gateway.redismux import pack_command


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
