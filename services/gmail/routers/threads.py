"""Threads: list (search with q) and get with every message decoded."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.gmail.deps import Gmail
from services.gmail.mime import decode_message
from services.gmail.routers import PREFIX, GmailId, Limit, PageToken

__all__ = ["router"]

router = APIRouter(prefix=f"{PREFIX}/threads", tags=["threads"])


@router.get("", summary="List or search threads")
async def list_threads(
    gmail: Gmail,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Limit = 20,
    page_token: PageToken = None,
) -> dict[str, Any]:
    found = await gmail.run(
        lambda u: u.threads().list(userId="me", q=q, maxResults=limit, pageToken=page_token),
        fields={"q": "q", "pageToken": "page_token", "maxResults": "limit"},
    )
    return {
        "threads": found.get("threads", []),
        "next_page_token": found.get("nextPageToken"),
        "result_size_estimate": found.get("resultSizeEstimate", 0),
    }


@router.get("/{thread_id}", summary="A thread with its messages decoded, oldest first")
async def get_thread(gmail: Gmail, thread_id: GmailId) -> dict[str, Any]:
    found = await gmail.run(
        lambda u: u.threads().get(userId="me", id=thread_id, format="full"),
        fields={"id": "thread_id"},
    )
    return {
        "id": found.get("id"),
        "historyId": found.get("historyId"),
        "messages": [decode_message(m) for m in found.get("messages", [])],
    }
