"""The cost ledger: requests, tokens and cost per tenant, provider and model, in Redis.

One hash per tenant (``ai:u:<tenant>``), fields ``<provider>|<model>|<counter>`` incremented
atomically, so every replica adds to the same totals. Cost is kept in pico-USD integers
(tokens x price per 1M tokens x 1e6), exact for prices with up to six decimals.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from services.ai.providers import Usage
from services.common.tenancy import tenant_key

__all__ = ["Ledger"]

_PREFIX = "ai:u"
_COUNTERS = ("requests", "prompt_tokens", "completion_tokens", "cost_picousd")


class Ledger:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis: Any = redis  # redis-py types async calls as "Awaitable | value"

    @staticmethod
    def record_into(
        pipe: Any, tenant: str, *, provider: str, model: str, usage: Usage, cost_picousd: int
    ) -> None:
        """Queue one request's counters on a pipeline (written when it executes)."""
        name = f"{_PREFIX}:{tenant_key(tenant)}"
        base = f"{provider}|{model}|"
        pipe.hincrby(name, base + "requests", 1)
        pipe.hincrby(name, base + "prompt_tokens", usage.prompt_tokens)
        pipe.hincrby(name, base + "completion_tokens", usage.completion_tokens)
        pipe.hincrby(name, base + "cost_picousd", cost_picousd)

    async def record(
        self, tenant: str, *, provider: str, model: str, usage: Usage, cost_picousd: int
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        self.record_into(
            pipe, tenant, provider=provider, model=model, usage=usage, cost_picousd=cost_picousd
        )
        await pipe.execute()

    async def usage(self, tenant: str) -> dict[str, Any]:
        """``{"providers": [{provider, model, requests, ..., cost_usd}], "total": {...}}``."""
        raw = await self.redis.hgetall(f"{_PREFIX}:{tenant_key(tenant)}")
        rows: dict[tuple[str, str], dict[str, int]] = {}
        for field, value in raw.items():
            provider, rest = field.decode().split("|", 1)
            model, counter = rest.rsplit("|", 1)
            if counter in _COUNTERS:
                rows.setdefault((provider, model), dict.fromkeys(_COUNTERS, 0))[counter] = int(
                    value
                )
        out: list[dict[str, Any]] = [
            {"provider": p, "model": m, **c, "cost_usd": c["cost_picousd"] / 1e12}
            for (p, m), c in sorted(rows.items())
        ]
        total: dict[str, Any] = {k: sum(int(r[k]) for r in out) for k in _COUNTERS}
        total["cost_usd"] = total["cost_picousd"] / 1e12
        return {"providers": out, "total": total}
