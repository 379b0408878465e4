"""FastAPI dependencies of the AI router: the router, warm jobs, the caller and their role.

Any verified caller of a tenant may ask for completions and read the tenant's usage and cache
statistics; invalidating and warming the tenant's cache needs the ``editor`` role (or above).
The error shape and the role checks are the services' shared ones. The dependencies of the
chat path are ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a
thread hop per dependency and request (``Editor``, the shared one, guards only cache writes).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from services.ai.cache import AnswerCache
from services.ai.engine import AiRouter
from services.ai.ledger import Ledger
from services.ai.warm import WarmJobs
from services.common.errors import ApiError
from services.common.identity import require_identity
from services.common.roles import Editor
from services.common.tenancy import Identity

__all__ = ["ApiError", "Cache", "Caller", "Editor", "LedgerDep", "Router", "Warm"]


def _state(request: Request) -> Any:
    return request.app.state


async def _router(request: Request) -> AiRouter:
    router: AiRouter = _state(request).router
    return router


async def _cache(request: Request) -> AnswerCache:
    cache: AnswerCache = _state(request).router.cache
    return cache


async def _ledger(request: Request) -> Ledger:
    ledger: Ledger = _state(request).router.ledger
    return ledger


async def _warm(request: Request) -> WarmJobs:
    jobs: WarmJobs = _state(request).warm
    return jobs


async def _caller(request: Request) -> Identity:
    return require_identity(request)


Router = Annotated[AiRouter, Depends(_router)]
Cache = Annotated[AnswerCache, Depends(_cache)]
LedgerDep = Annotated[Ledger, Depends(_ledger)]
Warm = Annotated[WarmJobs, Depends(_warm)]
Caller = Annotated[Identity, Depends(_caller)]
