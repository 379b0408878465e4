"""Users of the tenant's workspace: list and lookup by email."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.slack.deps import Slack
from services.slack.routers import PREFIX, answer, next_cursor

__all__ = ["router"]

router = APIRouter(prefix=f"{PREFIX}/users", tags=["users"])


@router.get("", summary="List users")
async def list_users(
    slack: Slack,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    data = await answer(slack, slack.client.users_list(limit=limit, cursor=cursor))
    return {"users": data.get("members", []), "next_cursor": next_cursor(data)}


@router.get("/lookup", summary="Find a user by email")
async def lookup(
    slack: Slack,
    email: Annotated[str, Query(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")],
) -> dict[str, Any]:
    data = await answer(slack, slack.client.users_lookupByEmail(email=email))
    return {"user": data.get("user")}
