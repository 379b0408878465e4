"""The Slack service's routers, one per domain; ``app.py`` only includes them."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from services.slack.deps import SlackCall
from services.slack.errors import ApiError, from_slack

__all__ = ["CHANNEL_ID", "PREFIX", "answer"]

PREFIX = "/api/v2/slack"
CHANNEL_ID = r"^[CGD][A-Z0-9]{2,20}$"


async def answer(slack: SlackCall, call: Awaitable[AsyncSlackResponse]) -> dict[str, Any]:
    """Slack's answer as data, or an :class:`ApiError` saying what went wrong."""
    try:
        response = await call
    except SlackApiError as exc:
        raise from_slack(exc, connection=slack.connection) from None
    except TimeoutError:
        raise ApiError(504, "Slack did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise ApiError(502, f"Slack unreachable ({type(exc).__name__})") from None
    data = response.data
    return data if isinstance(data, dict) else {}


def next_cursor(data: dict[str, Any]) -> str | None:
    return (data.get("response_metadata") or {}).get("next_cursor") or None
