"""Statistics of one tenant: contacts by status and tag, interactions per week, overdue tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.crm.deps import Store, Viewer
from services.crm.errors import EVERY_OPERATION, error_responses
from services.crm.models import Day, Statistics, utcnow
from services.crm.routers import PREFIX

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["statistics"], responses=error_responses(*EVERY_OPERATION))


@router.get("/statistics", response_model=Statistics, responses=error_responses(422))
async def statistics(
    identity: Viewer,
    store: Store,
    weeks: Annotated[int, Query(ge=1, le=52, description="ISO weeks of interactions.")] = 12,
    as_of: Annotated[
        Day | None,
        Query(description="The day the figures are for (UTC, YYYY-MM-DD); default today."),
    ] = None,
) -> Statistics:
    """Soft-deleted contacts, and their interactions and tasks, are left out of every figure
    except `contacts_deleted`. A task is overdue when open and due before `as_of`."""
    return await store.statistics(identity.tenant_id, as_of=as_of or utcnow().date(), weeks=weeks)
