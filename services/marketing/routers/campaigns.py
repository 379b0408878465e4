"""``POST /campaigns``: a brief in, copy per requested channel out; ``GET /channels``: the
channels and their length limits."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter

from services.common.engine import CallerDep, EngineDep, prompt
from services.marketing.models import CHANNEL_LIMITS, CampaignBrief, copy_model
from services.marketing.routers import PREFIX

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["campaigns"])
_PACKAGE = "services.marketing"


def _user_prompt(brief: CampaignBrief) -> str:
    limits = {c: CHANNEL_LIMITS[c] for c in brief.channels}
    return prompt(
        _PACKAGE,
        "campaign_user.md",
        channels=", ".join(brief.channels),
        product=brief.product,
        audience=brief.audience,
        goal=brief.goal,
        key_points="\n".join(f"- {p}" for p in brief.key_points) or "- (none given)",
        tone=brief.tone,
        call_to_action=brief.call_to_action or "(choose one that fits the goal)",
        language=brief.language,
        variants=brief.variants,
        limits=json.dumps(limits),
    )


@router.post("/campaigns", summary="Copy for each requested channel, within its limits")
async def campaign(brief: CampaignBrief, caller: CallerDep, engine: EngineDep) -> dict[str, Any]:
    answer = await engine.ask(
        copy_model(frozenset(brief.channels)),
        system=prompt(_PACKAGE, "campaign_system.md"),
        user=_user_prompt(brief),
        caller=caller,
        route="campaign",
    )
    return {
        "channels": answer.value.model_dump(),
        "limits": {c: CHANNEL_LIMITS[c] for c in brief.channels},
        "ai": answer.meta.model_dump(),
    }


@router.get("/channels", summary="The channels copy is written for, and their limits")
async def channels(_: CallerDep) -> dict[str, Any]:
    return {"channels": CHANNEL_LIMITS}
