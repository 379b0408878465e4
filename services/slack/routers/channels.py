"""Channels of the tenant's workspace: list, history, post a message."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from services.slack.deps import Editor, Slack
from services.slack.routers import CHANNEL_ID, PREFIX, answer, next_cursor

__all__ = ["router"]

router = APIRouter(prefix=f"{PREFIX}/channels", tags=["channels"])

ChannelId = Annotated[str, Path(pattern=CHANNEL_ID, description="A channel id, e.g. C0123ABCD.")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the last page.")]
Limit = Annotated[int, Query(ge=1, le=200)]
Ts = Annotated[str | None, Query(pattern=r"^\d{1,12}(\.\d{1,6})?$", description="A Slack ts.")]


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=40_000)
    thread_ts: str | None = Field(default=None, pattern=r"^\d{1,12}\.\d{1,6}$")


@router.get("", summary="List channels")
async def list_channels(
    slack: Slack,
    limit: Limit = 100,
    cursor: Cursor = None,
    private: Annotated[bool, Query(description="Include private channels.")] = False,
) -> dict[str, Any]:
    types = "public_channel,private_channel" if private else "public_channel"
    data = await answer(
        slack,
        slack.client.conversations_list(
            limit=limit, cursor=cursor, types=types, exclude_archived=True
        ),
    )
    return {"channels": data.get("channels", []), "next_cursor": next_cursor(data)}


@router.get("/{channel}/messages", summary="A channel's history, newest first")
async def history(
    slack: Slack,
    channel: ChannelId,
    limit: Limit = 50,
    cursor: Cursor = None,
    oldest: Ts = None,
    latest: Ts = None,
) -> dict[str, Any]:
    data = await answer(
        slack,
        slack.client.conversations_history(
            channel=channel, limit=limit, cursor=cursor, oldest=oldest, latest=latest
        ),
    )
    return {
        "messages": data.get("messages", []),
        "has_more": bool(data.get("has_more")),
        "next_cursor": next_cursor(data),
    }


@router.post("/{channel}/messages", status_code=201, summary="Post a message")
async def post_message(
    _: Editor, slack: Slack, channel: ChannelId, body: NewMessage
) -> dict[str, Any]:
    data = await answer(
        slack,
        slack.client.chat_postMessage(channel=channel, text=body.text, thread_ts=body.thread_ts),
    )
    return {"channel": data.get("channel"), "ts": data.get("ts"), "message": data.get("message")}
