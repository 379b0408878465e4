"""``POST /suggestions``: a listing in, keywords and titles out, each with the model's
relevance and the scores :mod:`services.aso.scoring` computes; ``GET /limits``: the stores'
metadata limits."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from services.aso import scoring
from services.aso.models import STORE_LIMITS, AppListing, ModelSuggestions
from services.aso.routers import PREFIX
from services.common.engine import CallerDep, EngineDep, prompt

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["suggestions"])
_PACKAGE = "services.aso"


def _user_prompt(listing: AppListing) -> str:
    return prompt(
        _PACKAGE,
        "suggest_user.md",
        store="Apple App Store" if listing.store == "apple" else "Google Play",
        title=listing.title,
        subtitle=listing.subtitle or "(none)",
        category=listing.category,
        keywords=",".join(listing.keywords) or "(none)",
        competitors=", ".join(listing.competitors) or "(none given)",
        language=listing.language,
        description=listing.description,
        max_keywords=listing.max_keywords,
        max_titles=listing.max_titles,
    )


@router.post("/suggestions", summary="Keyword and title suggestions with scores")
async def suggestions(listing: AppListing, caller: CallerDep, engine: EngineDep) -> dict[str, Any]:
    limit = STORE_LIMITS[listing.store]["title"]
    answer = await engine.ask(
        ModelSuggestions,
        system=prompt(_PACKAGE, "suggest_system.md", title_limit=limit),
        user=_user_prompt(listing),
        caller=caller,
        route="suggestions",
    )
    keywords = scoring.score_keywords(listing, answer.value.keywords)
    titles = scoring.score_titles(
        listing.store, answer.value.titles, keywords, most=listing.max_titles
    )
    field = scoring.pack_keyword_field(listing, keywords) if listing.store == "apple" else None
    return {
        "store": listing.store,
        "keywords": [asdict(k) for k in keywords],
        "titles": [asdict(t) for t in titles],
        "keyword_field": field,
        "audit": scoring.audit(listing, keywords),
        "ai": answer.meta.model_dump(),
    }


@router.get("/limits", summary="The stores' metadata limits (characters)")
async def limits(_: CallerDep) -> dict[str, Any]:
    return {"stores": STORE_LIMITS}
