"""The store's interface and the SQL both engines share.

Tables are declared once (:data:`TABLES`) with logical types; each engine maps them onto its
own DDL (DuckDB: plain tables; BigQuery: partitioned by day on ``ts``/``started`` and clustered
by tenant first). Every read takes the tenant and filters on it in SQL: there is no query
without ``tenant = @tenant``. A workflow run is one row with its steps nested (JSON), so it is
recorded whole or not at all in either engine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from services.analytics.records import (
    AiUsageRow,
    EventRow,
    RunRow,
    TableInfo,
    UsageHour,
    UsageRow,
)
from services.common.tenancy import valid_tenant_id

__all__ = ["REDELIVERY_WINDOW", "TABLES", "AnalyticsStore", "Column", "SqlStore", "Table"]

REDELIVERY_WINDOW = dt.timedelta(days=7)
"""How far back a redelivered event's first copy is looked for: Pub/Sub keeps an unacked
message at most 7 days, and a Redis bus message is redelivered within seconds."""
_IDS_PER_QUERY = 200


@dataclass(frozen=True)
class _Once:
    """A table whose rows are written once per (tenant, ``id_column``); an earlier copy of a
    row is looked for from ``since(row)`` on."""

    table: str
    id_column: str
    since: Callable[[dict[str, Any]], dt.datetime]


_EVENTS = _Once("events", "event_id", lambda r: r["ts"] - REDELIVERY_WINDOW)
_USAGE = _Once("usage", "sample_id", lambda r: r["ts"] - dt.timedelta(seconds=r["seconds"]))
"""A replayed sampler's copy of a sample is in its sampling interval: at most ``seconds``
older."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # STRING, TIMESTAMP, FLOAT, INTEGER


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    partition_by: str
    """The TIMESTAMP column the table is partitioned by (per day) in BigQuery."""
    cluster_by: tuple[str, ...]


def _cols(spec: str) -> tuple[Column, ...]:
    return tuple(Column(*item.split(":")) for item in spec.split())


TABLES: tuple[Table, ...] = (
    Table(
        "usage",
        _cols(
            "tenant:STRING service:STRING ts:TIMESTAMP profile:STRING instances:FLOAT "
            "seconds:FLOAT vcpu:FLOAT memory_gib:FLOAT sample_id:STRING"
        ),
        "ts",
        ("tenant", "service"),
    ),
    Table(
        "events",
        _cols("tenant:STRING topic:STRING ts:TIMESTAMP event_id:STRING seq:INTEGER payload:STRING"),
        "ts",
        ("tenant", "topic"),
    ),
    Table(
        "ai_usage",
        _cols(
            "tenant:STRING ts:TIMESTAMP provider:STRING model:STRING requests:INTEGER "
            "prompt_tokens:INTEGER completion_tokens:INTEGER cost_usd:FLOAT"
        ),
        "ts",
        ("tenant", "provider", "model"),
    ),
    Table(
        "workflow_runs",
        _cols(
            "tenant:STRING run_id:STRING workflow:STRING goal:STRING status:STRING "
            "started:TIMESTAMP finished:TIMESTAMP cost_usd:FLOAT predicted_cost_usd:FLOAT "
            "error:STRING steps:STRING"
        ),
        "started",
        ("tenant", "workflow"),
    ),
)


class AnalyticsStore(Protocol):
    """What the service needs of a store; every read is scoped to one tenant."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def add_usage(self, rows: Sequence[UsageRow]) -> int: ...
    async def add_events(self, rows: Sequence[EventRow]) -> None: ...
    async def add_events_once(self, rows: Sequence[EventRow]) -> int: ...
    async def add_ai_usage(self, rows: Sequence[AiUsageRow]) -> None: ...
    async def record_run(self, run: RunRow) -> None: ...
    async def usage_hourly(
        self, tenant: str, *, since: dt.datetime, service: str | None = None
    ) -> list[UsageHour]: ...
    async def events(
        self, tenant: str, *, since: dt.datetime, topic: str | None = None, limit: int = 100
    ) -> list[EventRow]: ...
    async def event_counts(self, tenant: str, *, since: dt.datetime) -> dict[str, int]: ...
    async def ai_usage(self, tenant: str, *, since: dt.datetime) -> list[AiUsageRow]: ...
    async def runs(
        self, tenant: str, *, workflow: str | None = None, limit: int = 50
    ) -> list[RunRow]: ...
    async def tables(self) -> list[TableInfo]: ...


def _tenant(tenant: str) -> str:
    if not valid_tenant_id(tenant):
        raise ValueError(f"tenant: expected a tenant id, got {tenant!r}")
    return tenant


class SqlStore(ABC):
    """The queries, written once with ``@name`` parameters; engines run them."""

    engine = "sql"

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    # -- what an engine provides ------------------------------------------------------------
    @abstractmethod
    def _table(self, name: str) -> str: ...

    @abstractmethod
    def _hour(self, column: str) -> str:
        """SQL truncating a TIMESTAMP column to the hour."""

    @abstractmethod
    def _query_sync(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _insert_sync(self, table: str, rows: list[dict[str, Any]]) -> None: ...

    @abstractmethod
    def _open_sync(self) -> None: ...

    def _close_sync(self) -> None:
        return None

    # -- plumbing ---------------------------------------------------------------------------
    async def _query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self._lock:
            return await asyncio.to_thread(self._query_sync, sql, params)

    async def _insert(self, table: str, rows: Sequence[Any]) -> None:
        if not rows:
            return
        data = [asdict(r) for r in rows]
        for row in data:
            _tenant(row["tenant"])
        async with self._lock:
            await asyncio.to_thread(self._insert_sync, table, data)

    async def open(self) -> None:
        await asyncio.to_thread(self._open_sync)

    async def close(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._close_sync)

    # -- writes -----------------------------------------------------------------------------
    async def add_usage(self, rows: Sequence[UsageRow]) -> int:
        """Insert the rows; one with a ``sample_id`` only when (tenant, sample_id) is not
        stored yet (looked for from one sampling interval before it). How many were new."""
        data = [asdict(r) for r in rows]
        for row in data:
            _tenant(row["tenant"])
        plain = [r for r in data if r["sample_id"] is None]
        identified = [r for r in data if r["sample_id"] is not None]
        async with self._lock:
            if plain:
                await asyncio.to_thread(self._insert_sync, "usage", plain)
            return len(plain) + await asyncio.to_thread(self._add_new_sync, _USAGE, identified)

    async def add_events(self, rows: Sequence[EventRow]) -> None:
        await self._insert("events", rows)

    async def add_events_once(self, rows: Sequence[EventRow]) -> int:
        """Insert the rows whose (tenant, event_id) is not stored yet; how many were new.
        The check and the insert hold the store's lock, so one process never doubles a row.
        The check reads only the :data:`REDELIVERY_WINDOW` before the rows (a few day
        partitions in BigQuery), so its cost does not grow with the history."""
        data = [asdict(r) for r in rows]
        for row in data:
            _tenant(row["tenant"])
        async with self._lock:
            return await asyncio.to_thread(self._add_new_sync, _EVENTS, data)

    def _add_new_sync(self, once: _Once, data: list[dict[str, Any]]) -> int:
        fresh: dict[tuple[str, str], dict[str, Any]] = {}
        for row in data:
            fresh.setdefault((row["tenant"], row[once.id_column]), row)
        keys = list(fresh)
        for start in range(0, len(keys), _IDS_PER_QUERY):
            for key in self._stored_sync(once, keys[start : start + _IDS_PER_QUERY], fresh):
                del fresh[key]
        if fresh:
            self._insert_sync(once.table, list(fresh.values()))
        return len(fresh)

    def _stored_sync(
        self, once: _Once, keys: list[tuple[str, str]], rows: dict[tuple[str, str], dict[str, Any]]
    ) -> list[tuple[str, str]]:
        """Which of these (tenant, id) keys are stored already, looked for from the earliest
        of their rows' windows on (one query per tenant)."""
        found = []
        for tenant in sorted({t for t, _ in keys}):
            ids = [e for t, e in keys if t == tenant]
            since = min(once.since(rows[(tenant, e)]) for e in ids)
            params: dict[str, Any] = {f"id{i}": e for i, e in enumerate(ids)}
            marks = ", ".join(f"@{name}" for name in params)
            sql = (
                f"SELECT DISTINCT {once.id_column} AS id FROM {self._table(once.table)} "
                f"WHERE tenant = @tenant AND ts >= @since AND {once.id_column} IN ({marks})"
            )
            hits = self._query_sync(sql, {**params, "tenant": tenant, "since": since})
            found += [(tenant, r["id"]) for r in hits]
        return found

    async def add_ai_usage(self, rows: Sequence[AiUsageRow]) -> None:
        await self._insert("ai_usage", rows)

    async def record_run(self, run: RunRow) -> None:
        row = asdict(run)
        row["steps"] = json.dumps(run.steps, default=str)
        _tenant(run.tenant)
        async with self._lock:
            await asyncio.to_thread(self._insert_sync, "workflow_runs", [row])

    # -- reads (tenant-scoped) --------------------------------------------------------------
    async def usage_hourly(
        self, tenant: str, *, since: dt.datetime, service: str | None = None
    ) -> list[UsageHour]:
        where = " AND service = @service" if service is not None else ""
        hour = self._hour("ts")
        sql = (
            f"SELECT service, {hour} AS hour, SUM(instances * seconds) AS instance_seconds, "
            "SUM(instances * seconds * vcpu) AS vcpu_seconds, "
            "SUM(instances * seconds * memory_gib) AS gib_seconds "
            f"FROM {self._table('usage')} WHERE tenant = @tenant AND ts >= @since{where} "
            "GROUP BY service, hour ORDER BY service, hour"
        )
        params: dict[str, Any] = {"tenant": _tenant(tenant), "since": since}
        if service is not None:
            params["service"] = service
        return [UsageHour(**r) for r in await self._query(sql, **params)]

    async def events(
        self, tenant: str, *, since: dt.datetime, topic: str | None = None, limit: int = 100
    ) -> list[EventRow]:
        where = " AND topic = @topic" if topic is not None else ""
        sql = (
            f"SELECT tenant, topic, ts, event_id, seq, payload FROM {self._table('events')} "
            f"WHERE tenant = @tenant AND ts >= @since{where} ORDER BY ts DESC LIMIT @limit"
        )
        params: dict[str, Any] = {"tenant": _tenant(tenant), "since": since, "limit": limit}
        if topic is not None:
            params["topic"] = topic
        return [EventRow(**r) for r in await self._query(sql, **params)]

    async def event_counts(self, tenant: str, *, since: dt.datetime) -> dict[str, int]:
        sql = (
            f"SELECT topic, COUNT(*) AS n FROM {self._table('events')} "
            "WHERE tenant = @tenant AND ts >= @since GROUP BY topic ORDER BY topic"
        )
        rows = await self._query(sql, tenant=_tenant(tenant), since=since)
        return {r["topic"]: int(r["n"]) for r in rows}

    async def ai_usage(self, tenant: str, *, since: dt.datetime) -> list[AiUsageRow]:
        """Each (provider, model)'s counters accrued since ``since`` (latest snapshot minus
        the last one before ``since``; the ledger's counters only grow)."""
        table = self._table("ai_usage")
        counters = ("requests", "prompt_tokens", "completion_tokens", "cost_usd")
        cols = ", ".join(f"MAX({c}) AS {c}" for c in counters)
        sql = (
            f"SELECT provider, model, ts >= @since AS recent, MAX(ts) AS ts, {cols} FROM {table} "
            "WHERE tenant = @tenant GROUP BY provider, model, recent"
        )
        rows = await self._query(sql, tenant=_tenant(tenant), since=since)
        before = {(r["provider"], r["model"]): r for r in rows if not r["recent"]}
        out = []
        for r in sorted(
            (r for r in rows if r["recent"]), key=lambda r: (r["provider"], r["model"])
        ):
            base = before.get((r["provider"], r["model"]), {})
            delta = {c: max(0, r[c] - base.get(c, 0)) for c in counters}
            out.append(
                AiUsageRow(
                    tenant=tenant, ts=r["ts"], provider=r["provider"], model=r["model"], **delta
                )
            )
        return out

    async def runs(
        self, tenant: str, *, workflow: str | None = None, limit: int = 50
    ) -> list[RunRow]:
        where = " AND workflow = @workflow" if workflow is not None else ""
        sql = (
            "SELECT tenant, run_id, workflow, goal, status, started, finished, cost_usd, "
            f"predicted_cost_usd, error, steps FROM {self._table('workflow_runs')} "
            f"WHERE tenant = @tenant{where} ORDER BY started DESC LIMIT @limit"
        )
        params: dict[str, Any] = {"tenant": _tenant(tenant), "limit": limit}
        if workflow is not None:
            params["workflow"] = workflow
        rows = await self._query(sql, **params)
        return [RunRow(**{**r, "steps": json.loads(r["steps"] or "[]")}) for r in rows]

    async def tables(self) -> list[TableInfo]:
        out = []
        for t in TABLES:
            rows = await self._query(f"SELECT COUNT(*) AS n FROM {self._table(t.name)}")
            out.append(TableInfo(t.name, int(rows[0]["n"]), f"DAY({t.partition_by})", t.cluster_by))
        return out
