"""Slowloris-style request bodies against the real gateway: a client that sends the head and
then stalls, or dribbles its body a byte at a time, is answered 408 with a clear error and its
connection closed once the body deadline (`body_timeout_seconds`, extended by the bytes
received at `body_min_rate_bytes` per second) has passed; nothing of it reaches the upstream.
A body that arrives at an honest rate goes through."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from gateway.conftest import GatewayFactory, Upstream, make_jwt

pytestmark = pytest.mark.integration

TOKEN = make_jwt(user_id="slow", tenant_id="acme")


class _Client(asyncio.Protocol):
    """Keeps every byte the gateway sent. A gateway that closes with the dribbled bytes
    unread makes its kernel send a reset; ours still hands over the bytes queued before it,
    but `asyncio.StreamReader` would raise the reset before its buffered bytes: a client that
    kept writing would lose a 408 it had received."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.head_in = asyncio.Event()
        self.closed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        if b"\r\n\r\n" in self.data:
            self.head_in.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_in.set()
        self.closed.set()


async def slow_request(url: str, path: str, *, length: int, dribble: bytes, pause: float,
                       chunked: bool = False) -> tuple[int, dict[str, object]]:  # fmt: skip
    """Send the head, then `dribble` one byte per `pause` seconds (the attack's own pace) and
    never the rest; return the status and the JSON body once the gateway has closed."""
    host, port = url.removeprefix("http://").split(":")
    _, client = await asyncio.get_running_loop().create_connection(_Client, host, int(port))
    assert client.transport is not None
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n")  # fmt: skip
    client.transport.write(head.encode())

    async def dribbling() -> None:
        for byte in dribble:
            if client.head_in.is_set():  # answered: stop sending
                return
            piece = bytes([byte])
            client.transport.write(b"1\r\n" + piece + b"\r\n" if chunked else piece)  # type: ignore[union-attr]
            await asyncio.sleep(pause)

    sender = asyncio.create_task(dribbling())
    try:
        await asyncio.wait_for(client.closed.wait(), timeout=30)  # EOF or reset: it closed
    finally:
        sender.cancel()
        client.transport.close()
    head_part, _, body = bytes(client.data).partition(b"\r\n\r\n")
    assert head_part, "the gateway closed without an answer"
    status = int(head_part.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_part.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return status, json.loads(body)


@pytest.mark.parametrize(
    ("case", "chunked", "dribble", "pause"),
    [
        ("stalled-buffered", False, b"{", 0.0),
        ("dribbling-buffered", False, b'{"a":' + b" " * 200, 0.2),
        ("stalled-streamed", True, b"{", 0.0),
    ],
)
async def test_a_slow_body_is_408_and_never_reaches_the_upstream(
    gateway_factory: GatewayFactory, upstream: Upstream, case: str, chunked: bool,
    dribble: bytes, pause: float,
) -> None:  # fmt: skip
    marker = f"slow-{uuid.uuid4().hex[:8]}"
    async with gateway_factory(body_timeout_seconds=1.0, body_min_rate_bytes=1000) as gw:
        status, body = await slow_request(
            gw.url, f"/api/v2/crm/{marker}", length=1000, dribble=dribble, pause=pause,
            chunked=chunked,
        )  # fmt: skip
    assert status == 408, (case, body)
    assert body["error"] == "body_timeout", body
    assert "request body" in str(body["message"])
    if not chunked:  # a streamed body may have started upstream; a buffered one never does
        assert upstream.count(f"/api/v2/crm/{marker}") == 0


async def test_a_body_at_an_honest_rate_goes_through(
    gateway_factory: GatewayFactory, upstream: Upstream
) -> None:
    async with gateway_factory(body_timeout_seconds=1.0, body_min_rate_bytes=1000) as gw:
        body = b"[" + b"1," * 20_000 + b"1]"
        r = await gw.http.post(
            "/api/v2/crm/honest",
            content=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
    assert r.status_code == 200, r.text
    assert r.json()["body_len"] == len(body)
