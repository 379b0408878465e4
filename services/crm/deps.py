"""FastAPI dependencies of the CRM routers: the store, the caller and their role, paging.

Roles come from the gateway's signed identity: ``viewer`` reads, ``editor`` also writes,
``admin`` also hard-deletes. A caller without any of them gets 403 on every route, before any
id is looked at, so a 403 never tells whether an id exists.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from services.common.roles import ROLE_LEVELS, Admin, Editor, Viewer, has_role
from services.crm.errors import field_error
from services.crm.events import ChangePublisher
from services.crm.store import CrmStore

__all__ = [
    "ROLE_LEVELS",
    "Admin",
    "Editor",
    "Events",
    "IdempotencyHeader",
    "IfMatch",
    "Limit",
    "Store",
    "Viewer",
    "etag",
    "has_role",
    "parse_if_match",
]

_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
_ETAG_RE = re.compile(r'\s*(W/)?"([^"]*)"\s*')


def _store(request: Request) -> CrmStore:
    store: CrmStore = request.app.state.store
    return store


def _events(request: Request) -> ChangePublisher:
    events: ChangePublisher = request.app.state.events
    return events


Store = Annotated[CrmStore, Depends(_store)]
Events = Annotated[ChangePublisher, Depends(_events)]


def _limit(request: Request, limit: Annotated[int | None, Query(ge=1, le=100)] = None) -> int:
    default: int = request.app.state.settings.default_page_size
    return limit if limit is not None else default


Limit = Annotated[int, Depends(_limit)]


def _idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retries with the same key return the first result (24 h).",
        ),
    ] = None,
) -> str | None:
    if key is not None and not _KEY_RE.match(key):
        raise field_error("Idempotency-Key", "1-255 printable ASCII characters")
    return key


IdempotencyHeader = Annotated[str | None, Depends(_idempotency_key)]


def parse_if_match(value: str | None) -> frozenset[int] | None:
    """The versions an ``If-Match`` header accepts; None when absent or ``*``.

    Strong comparison (RFC 9110): a weak ``W/"3"`` matches nothing, nor does garbage, so
    both end in 412 rather than in an unconditional write.
    """
    if value is None or value.strip() == "*":
        return None
    versions: set[int] = set()
    for part in value.split(","):
        m = _ETAG_RE.fullmatch(part)
        if m and not m.group(1) and m.group(2).isdigit():
            versions.add(int(m.group(2)))
    return frozenset(versions)


def _if_match(
    value: Annotated[
        str | None,
        Header(alias="If-Match", description='The ETag from a GET, e.g. "3"; 412 if stale.'),
    ] = None,
) -> frozenset[int] | None:
    return parse_if_match(value)


IfMatch = Annotated[frozenset[int] | None, Depends(_if_match)]


def etag(version: int) -> str:
    return f'"{version}"'
