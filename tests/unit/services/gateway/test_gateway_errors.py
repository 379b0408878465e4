"""The gateway's raw-ASGI JSON responses come from one responder (``errors.send_json``): the
proxy's refusals, a refused stream handshake and engine.io's rewritten plain-text errors put
the same headers in the same order, ``Content-Type`` and ``Content-Length`` last."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from test_gateway_proxy_stages import proxy
from test_gateway_stream_limits import Limiter, stream

from services.gateway.errors import error_body, json_errors, send_json

Message = MutableMapping[str, Any]


def recorder() -> tuple[list[Message], Any]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    return sent, send


def json_tail(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


async def test_send_json_is_one_start_and_one_body() -> None:
    sent, send = recorder()
    body = error_body(404, "not_found", "no route for this path")
    await send_json(send, 404, body, [(b"x-request-id", b"r1")])
    assert sent == [
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"x-request-id", b"r1"), *json_tail(body)],
        },
        {"type": "http.response.body", "body": body},
    ]


async def test_a_proxy_refusal_and_a_refused_handshake_answer_alike() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent, send = recorder()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v2/nowhere",
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer good"), (b"x-request-id", b"req-1")],
        "client": ("203.0.113.7", 5555),
    }
    await proxy()(scope, receive, send)
    start, body = sent
    assert start["headers"] == [(b"x-request-id", b"req-1"), *json_tail(body["body"])]

    sent, send = recorder()
    handshake = {
        "type": "http",
        "method": "GET",
        "query_string": b"EIO=4&transport=polling",
        "client": ("203.0.113.7", 5555),
        "headers": [],
    }
    await stream(Limiter("stream_ip")).app(handshake, receive, send)  # type: ignore[arg-type]
    start, body = sent
    assert start["status"] == 429
    assert start["headers"] == [(b"retry-after", b"12"), *json_tail(body["body"])]
    assert json.loads(body["body"])["limit"] == "stream_ip"


async def test_a_rewritten_plain_text_error_keeps_its_headers_then_the_json_ones() -> None:
    sent, send = recorder()
    wrapped = json_errors(send)
    plain = [(b"content-type", b"text/plain"), (b"x-engineio", b"1"), (b"content-length", b"15")]
    await wrapped({"type": "http.response.start", "status": 400, "headers": plain})
    await wrapped({"type": "http.response.body", "body": b"Invalid session"})
    start, body = sent
    assert json.loads(body["body"]) == {
        "error": "bad_request",
        "message": "Invalid session",
        "status": 400,
    }
    assert start["headers"] == [(b"x-engineio", b"1"), *json_tail(body["body"])]
