"""Schedules, their last claimed due time and their run history, kept in Redis (the one store
every analytics replica shares: DuckDB is embedded per replica).

Keys, under ``xynergy:analytics:schedules``: ``tenants`` (a set), ``t:<tenant>`` (a hash of
schedule id -> JSON), and per schedule ``t:<tenant>:s:<id>:last`` (the last due time claimed),
``...:runs`` (a hash due -> run JSON) and ``...:order`` (a sorted set of due times).

:meth:`ScheduleStore.claim` is the compare-and-set that makes a due time run once: under
``WATCH`` of the last-run record and the tenant's schedules, it checks the schedule still
exists and is enabled and that the record is older than the due time, then sets it and adds
the run in one ``MULTI``/``EXEC``; a replica whose transaction saw a concurrent write re-reads
and then finds the due time taken.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from redis.exceptions import WatchError

from services.analytics.schedules.models import Schedule, ScheduleRun
from services.common.tenancy import valid_tenant_id

__all__ = ["ScheduleStore"]

PREFIX = "xynergy:analytics:schedules"
_CAS_ATTEMPTS = 5


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ScheduleStore:
    def __init__(self, redis: Any, *, history: int = 50) -> None:
        self.redis = redis
        self.history = history

    # -- keys -------------------------------------------------------------------------------
    def _tenant(self, tenant: str) -> str:
        if not valid_tenant_id(tenant):
            raise ValueError(f"tenant: expected a tenant id, got {tenant!r}")
        return f"{PREFIX}:t:{tenant}"

    def _key(self, tenant: str, sid: str, part: str) -> str:
        return f"{self._tenant(tenant)}:s:{sid}:{part}"

    # -- schedules --------------------------------------------------------------------------
    async def put(self, schedule: Schedule) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(f"{PREFIX}:tenants", schedule.tenant)
            pipe.hset(self._tenant(schedule.tenant), schedule.id, schedule.model_dump_json())
            await pipe.execute()

    async def get(self, tenant: str, sid: str) -> Schedule | None:
        raw = await self.redis.hget(self._tenant(tenant), sid)
        return None if raw is None else Schedule.model_validate_json(raw)

    async def of_tenant(self, tenant: str) -> list[Schedule]:
        raw = await self.redis.hgetall(self._tenant(tenant))
        out = [Schedule.model_validate_json(v) for v in raw.values()]
        return sorted(out, key=lambda s: (s.created, s.id))

    async def everyone(self) -> list[Schedule]:
        """Every tenant's schedules (for the scheduler)."""
        tenants = sorted(_text(t) for t in await self.redis.smembers(f"{PREFIX}:tenants"))
        return [s for t in tenants for s in await self.of_tenant(t)]

    async def delete(self, tenant: str, sid: str) -> bool:
        parts = ("last", "runs", "order")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._tenant(tenant), sid)
            pipe.delete(*(self._key(tenant, sid, p) for p in parts))
            gone, _ = await pipe.execute()
        return bool(gone)

    # -- the last-run record and history -----------------------------------------------------
    async def last_due(self, schedule: Schedule) -> dt.datetime | None:
        raw = await self.redis.get(self._key(schedule.tenant, schedule.id, "last"))
        return None if raw is None else dt.datetime.fromisoformat(_text(raw))

    async def claim(self, schedule: Schedule, run: ScheduleRun) -> bool:
        """Set the schedule's last due time to ``run.due`` and record ``run``, if no replica
        claimed that due time (or a later one) first and the schedule is still enabled."""
        last = self._key(schedule.tenant, schedule.id, "last")
        owner = self._tenant(schedule.tenant)
        for _ in range(_CAS_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(last, owner)
                    if not await self._claimable(pipe, schedule, last, owner, run.due):
                        return False
                    pipe.multi()
                    pipe.set(last, run.due.isoformat())
                    self._add(pipe, schedule, run)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue
        return False

    async def _claimable(
        self, pipe: Any, schedule: Schedule, last: str, owner: str, due: dt.datetime
    ) -> bool:
        current = await pipe.get(last)
        if current is not None and dt.datetime.fromisoformat(_text(current)) >= due:
            return False
        raw = await pipe.hget(owner, schedule.id)
        return raw is not None and Schedule.model_validate_json(raw).enabled

    def _add(self, pipe: Any, schedule: Schedule, run: ScheduleRun) -> None:
        due = run.due.isoformat()
        pipe.hset(self._key(schedule.tenant, schedule.id, "runs"), due, run.model_dump_json())
        pipe.zadd(self._key(schedule.tenant, schedule.id, "order"), {due: run.due.timestamp()})

    async def finish(self, schedule: Schedule, run: ScheduleRun) -> None:
        """Record how a claimed run ended and keep the last ``history`` runs."""
        order = self._key(schedule.tenant, schedule.id, "order")
        runs = self._key(schedule.tenant, schedule.id, "runs")
        if await self.redis.hget(self._tenant(schedule.tenant), schedule.id) is None:
            return  # deleted while it ran
        async with self.redis.pipeline(transaction=True) as pipe:
            self._add(pipe, schedule, run)
            pipe.zrange(order, 0, -self.history - 1)
            pipe.zremrangebyrank(order, 0, -self.history - 1)
            *_, old, _ = await pipe.execute()
        if old:
            await self.redis.hdel(runs, *old)

    async def runs(self, tenant: str, sid: str, *, limit: int = 50) -> list[ScheduleRun]:
        """The schedule's runs, newest due time first."""
        dues = await self.redis.zrevrange(self._key(tenant, sid, "order"), 0, limit - 1)
        if not dues:
            return []
        raw = await self.redis.hmget(self._key(tenant, sid, "runs"), dues)
        return [ScheduleRun.model_validate_json(r) for r in raw if r is not None]
