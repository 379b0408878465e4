"""``GET /usage``: the caller's tenant's requests, tokens and cost per provider and model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.ai.deps import Caller, LedgerDep
from services.ai.routers import PREFIX

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["usage"])


@router.get("/usage", summary="Requests, tokens and cost (USD) per provider and model")
async def usage(identity: Caller, ledger: LedgerDep) -> dict[str, Any]:
    return {"tenant": identity.tenant_id, **await ledger.usage(identity.tenant_id)}
