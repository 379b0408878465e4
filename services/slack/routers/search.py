"""Message search (``search.messages``).

Slack allows it with a user token (``xoxp-``, scope ``search:read``) only; a connection
holding a bot token gets 403 ``not_allowed_token_type``, saying so.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.slack.deps import Slack
from services.slack.routers import PREFIX, answer

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["search"])


@router.get("/search", summary="Search messages")
async def search(
    slack: Slack,
    q: Annotated[str, Query(min_length=1, max_length=500, description="Slack search query.")],
    count: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[int, Query(ge=1, le=100)] = 1,
) -> dict[str, Any]:
    data = await answer(slack, slack.client.search_messages(query=q, count=count, page=page))
    found = data.get("messages") or {}
    return {
        "matches": found.get("matches", []),
        "total": found.get("total", 0),
        "paging": found.get("paging"),
    }
