"""Cache warming: a list of prompts run through the router in the background.

``start`` records a job in Redis (``ai:w:<tenant>:<id>``: total, done, warmed, cached,
failed, status; kept a day) and runs its prompts as deterministic requests (temperature 0),
``warm_concurrency`` at a time, through :meth:`AiRouter.complete`: an answer already cached
counts as ``cached``, a new one as ``warmed``, a failure as ``failed``. Any replica can read a
job's progress; the task runs in the replica that accepted it and stops with it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import redis.asyncio as aioredis

from services.ai.engine import AiRouter, RouteRequest
from services.common.tenancy import Identity, tenant_key

__all__ = ["WarmJobs"]

log = logging.getLogger("xynergy.ai.warm")
_TTL = 86_400


class WarmJobs:
    def __init__(self, router: AiRouter, redis: aioredis.Redis, *, concurrency: int) -> None:
        self.router = router
        self.redis: Any = redis  # redis-py types async calls as "Awaitable | value"
        self.concurrency = concurrency
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def _key(tenant: str, job: str) -> str:
        return f"ai:w:{tenant_key(tenant)}:{job}"

    async def start(
        self,
        identity: Identity,
        *,
        model: str,
        prompts: list[str],
        system: str | None = None,
        route: str | None = None,
        max_tokens: int | None = None,
    ) -> str:
        self.router.chain(model)  # NoProviderError now rather than in the background
        job = uuid.uuid4().hex
        key = self._key(identity.tenant_id, job)
        fields = {"total": len(prompts), "done": 0, "warmed": 0, "cached": 0, "failed": 0}
        await self.redis.hset(key, mapping={**fields, "status": "running", "model": model})
        await self.redis.expire(key, _TTL)
        bodies = []
        for prompt in prompts:
            messages = [{"role": "system", "content": system}] if system else []
            body: dict[str, Any] = {
                "model": model,
                "messages": [*messages, {"role": "user", "content": prompt}],
                "temperature": 0,
            }
            if max_tokens is not None:
                body["max_tokens"] = max_tokens
            bodies.append(RouteRequest(identity=identity, body=body, route=route))
        task = asyncio.create_task(self._run(key, bodies), name=f"warm-{job}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, key: str, requests: list[RouteRequest]) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(req: RouteRequest) -> None:
            async with gate:
                try:
                    answer = await self.router.complete(req)
                    if answer.written is not None:
                        await answer.written  # warmed means in the cache
                    outcome = "cached" if answer.cache in ("hit", "semantic_hit") else "warmed"
                except Exception as exc:
                    log.warning("warm prompt failed", extra={"fields": {"error": str(exc)[:200]}})
                    outcome = "failed"
                pipe = self.redis.pipeline(transaction=False)
                pipe.hincrby(key, outcome, 1)
                pipe.hincrby(key, "done", 1)
                await pipe.execute()

        try:
            await asyncio.gather(*(one(r) for r in requests))
            await self.redis.hset(key, "status", "done")
        except asyncio.CancelledError:
            await asyncio.shield(self.redis.hset(key, "status", "cancelled"))
            raise

    async def progress(self, tenant: str, job: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self._key(tenant, job))
        if not raw:
            return None
        out: dict[str, Any] = {"id": job}
        for k, v in raw.items():
            name, value = k.decode(), v.decode()
            out[name] = value if name in ("status", "model") else int(value)
        return out

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
