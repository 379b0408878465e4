"""The caller's tenant's cache: statistics, invalidation and warming."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.ai.deps import ApiError, Cache, Caller, Editor, Warm
from services.ai.engine import NoProviderError
from services.ai.routers import PREFIX

__all__ = ["InvalidateRequest", "WarmRequest", "router"]

router = APIRouter(prefix=f"{PREFIX}/cache", tags=["cache"])


class InvalidateRequest(BaseModel):
    """Which of the tenant's entries to delete: all of them when nothing is given."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, min_length=1, max_length=200)
    prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Prompt (last user message) prefix.",
    )


class WarmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    prompts: list[str] = Field(min_length=1)
    system: str | None = Field(default=None, max_length=20_000)
    route: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._/-]{1,100}$")
    max_tokens: int | None = Field(default=None, ge=1)


@router.get("/stats", summary="Hits, misses, and the tokens and money hits saved")
async def stats(identity: Caller, cache: Cache) -> dict[str, Any]:
    out = (await cache.stats(identity.tenant_id)).as_json()
    out["entries"] = await cache.entries(identity.tenant_id)
    return out


@router.post("/invalidate", summary="Delete the tenant's entries (by model, by prompt prefix)")
async def invalidate(request: InvalidateRequest, identity: Editor, cache: Cache) -> dict[str, Any]:
    deleted = await cache.invalidate(identity.tenant_id, model=request.model, prefix=request.prefix)
    return {"deleted": deleted}


@router.post("/warm", status_code=202, summary="Run prompts in the background to fill the cache")
async def warm(body: WarmRequest, identity: Editor, jobs: Warm, request: Request) -> JSONResponse:
    limit = request.app.state.settings.warm_max_prompts
    if len(body.prompts) > limit:
        msg = f"at most {limit} prompts per job"
        raise ApiError(422, f"prompts: {msg}", fields=[{"field": "prompts", "message": msg}])
    try:
        job = await jobs.start(
            identity,
            model=body.model,
            prompts=body.prompts,
            system=body.system,
            route=body.route,
            max_tokens=body.max_tokens,
        )
    except NoProviderError as exc:
        msg = f"no configured provider serves {exc.model!r}"
        raise ApiError(422, f"model: {msg}", fields=[{"field": "model", "message": msg}]) from exc
    location = f"{PREFIX}/cache/warm/{job}"
    return JSONResponse(
        {"id": job, "status": "running", "total": len(body.prompts), "progress": location},
        status_code=202,
        headers={"Location": location},
    )


@router.get("/warm/{job}", summary="A warm job's progress")
async def warm_progress(
    identity: Caller, jobs: Warm, job: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
) -> dict[str, Any]:
    progress = await jobs.progress(identity.tenant_id, job)
    if progress is None:
        raise ApiError(404, "no such warm job in your tenant")
    return progress
