"""Unit tests of the per-request fast path parts: RESP packing and cached metric children."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import Proxy
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


async def _relayed(parts: list[bytes]) -> list[tuple[bytes, bool]]:
    """What Proxy._stream sends for an upstream body arriving in ``parts`` (the first sent
    before the rest arrive)."""
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(asyncio.Transport())  # an open connection to wait on
    content = aiohttp.StreamReader(protocol, 2**16, loop=loop)
    sent: list[tuple[bytes, bool]] = []
    first = asyncio.Event()

    async def send(message: Any) -> None:
        sent.append((message["body"], message["more_body"]))
        first.set()

    content.feed_data(parts[0])
    if len(parts) == 1:
        content.feed_eof()
    relay = asyncio.create_task(Proxy._stream(send, content))
    if len(parts) > 1:
        await first.wait()
        for part in parts[1:]:
            content.feed_data(part)
        content.feed_eof()
    await relay
    return sent


def test_whole_body_is_one_final_message() -> None:
    assert asyncio.run(_relayed([b'{"ok": true}'])) == [(b'{"ok": true}', False)]
    assert asyncio.run(_relayed([b""])) == [(b"", False)]


def test_body_in_parts_is_streamed_then_closed() -> None:
    sent = asyncio.run(_relayed([b"first", b"second"]))
    assert b"".join(body for body, _ in sent) == b"firstsecond"
    assert sent[0] == (b"first", True)
    assert sent[-1][1] is False
