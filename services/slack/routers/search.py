"""Message search (``search.messages``).

Slack allows it with a user token (``xoxp-``, user scope ``search:read``) only, never with the
bot token. The OAuthConnection asks for user scopes in ``spec.userScopes`` and the operator
keeps the user token beside the bot token; a connection without one (or whose user token
lacks ``search:read``) gets 403 ``missing_user_scope`` naming the scope, and nothing is sent
to Slack; one whose user token expired and was not refreshed gets 409
``oauth_user_token_expired`` naming it and where to authorize again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.slack.deps import SlackUser
from services.slack.errors import ApiError
from services.slack.routers import PREFIX, answer

__all__ = ["SEARCH_SCOPE", "router"]

SEARCH_SCOPE = "search:read"
"""The user scope ``search.messages`` needs."""

router = APIRouter(prefix=PREFIX, tags=["search"])


@router.get("/search", summary="Search messages")
async def search(
    slack: SlackUser,
    q: Annotated[str, Query(min_length=1, max_length=500, description="Slack search query.")],
    count: Annotated[int, Query(ge=1, le=100)] = 20,
    page: Annotated[int, Query(ge=1, le=100)] = 1,
) -> dict[str, Any]:
    if slack.user is None or SEARCH_SCOPE not in slack.user_scopes:
        has = "no user token" if slack.user is None else "a user token without it"
        raise ApiError(
            403,
            f"Slack search needs a user token with the user scope {SEARCH_SCOPE}; "
            f"OAuthConnection {slack.connection} has {has}: add {SEARCH_SCOPE} to its "
            "spec.userScopes and authorize again",
            error="missing_user_scope",
        )
    user = slack.user
    data = await answer(slack, user.search_messages(query=q, count=count, page=page))
    found = data.get("messages") or {}
    return {
        "matches": found.get("matches", []),
        "total": found.get("total", 0),
        "paging": found.get("paging"),
    }
