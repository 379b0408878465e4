"""The Events API webhook: ``POST /api/v2/slack/events``.

Verified before anything else (signature, timestamp, replay; :mod:`services.slack.signatures`);
answers the ``url_verification`` challenge; relays new messages to the tenants connected to
the event's workspace. Slack wants an answer within 3 s and retries otherwise, so the answer
is 200 once the event is handed to the publisher (which buffers while Redis stalls).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from lightkube import ApiError as KubeApiError
from redis.exceptions import RedisError

from services.common.errors import ApiError
from services.slack.routers import PREFIX

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["events"])


@router.post("/events", summary="Slack Events API request URL")
async def events(request: Request) -> JSONResponse:
    state: Any = request.app.state
    body = await request.body()
    await state.webhook_guard.check(body, request.headers)
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's limit
        raise ApiError(400, "body: expected the JSON of a Slack event") from None
    if not isinstance(envelope, dict):
        raise ApiError(400, "body: expected a JSON object")
    kind = envelope.get("type")
    if kind == "url_verification":
        return JSONResponse({"challenge": str(envelope.get("challenge", ""))})
    if kind == "event_callback":
        try:
            await state.relay.relay(envelope)
        except (httpx.HTTPError, KubeApiError, RedisError, OSError) as exc:
            # not taken: Slack retries with the same event_id
            msg = f"event not taken ({type(exc).__name__}); retry"
            raise ApiError(503, msg, headers={"Retry-After": "1"}) from None
    return JSONResponse({"ok": True})
