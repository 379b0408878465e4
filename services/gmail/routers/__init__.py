"""The Gmail service's routers, one per domain; ``app.py`` only includes them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

__all__ = ["PREFIX", "GmailId", "Limit", "PageToken"]

PREFIX = "/api/v2/gmail"

GmailId = Annotated[str, Path(pattern=r"^[0-9a-zA-Z_-]{1,64}$", description="A Gmail id.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Results per page.")]
PageToken = Annotated[
    str | None, Query(max_length=512, description="nextPageToken of the last page.")
]
