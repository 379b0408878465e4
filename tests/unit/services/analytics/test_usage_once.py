"""A usage sample is written once: each row the cluster sampler makes has a deterministic id
(service and the start of its sampling interval), so a sampler replayed in the same interval
(a restart, a second replica) adds nothing, in both stores (DuckDB: checked under the store's
lock; BigQuery: also the row's insertId). A DuckDB file made with the old usage schema (no
id column) is migrated in place on open: its rows are kept and new rows carry ids."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest

from services.analytics.collectors import usage_rows
from services.analytics.records import UsageRow
from services.analytics.stores import SqlStore
from services.analytics.stores.duckdb import DuckDBStore

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC).timestamp()
SINCE = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def _service(tenant: str, name: str, ready: int) -> Any:
    obj = SimpleNamespace(
        metadata=SimpleNamespace(labels={"xynergy.io/tenant": tenant}),
        spec=SimpleNamespace(
            profile="api-service",
            sizing=lambda: SimpleNamespace(cpu="1", memory="512Mi"),
        ),
        status=SimpleNamespace(ready_replicas=ready),
    )
    return SimpleNamespace(obj=obj, name=name)


def _sample(now: float, ready: int = 2) -> list[UsageRow]:
    services = [_service("acme", "crm", ready), _service("other", "crm", 1)]
    return usage_rows(services, now=now, seconds=60.0)


async def _instance_seconds(store: SqlStore, tenant: str) -> float:
    return sum(h.instance_seconds for h in await store.usage_hourly(tenant, since=SINCE))


def test_a_sample_id_is_the_service_and_the_start_of_its_interval() -> None:
    first, again, next_ = _sample(T0 + 5), _sample(T0 + 50), _sample(T0 + 65)
    assert [r.sample_id for r in first] == [r.sample_id for r in again]
    assert first[0].sample_id == "crm/2026-03-02T12:00:00+00:00"
    assert next_[0].sample_id == "crm/2026-03-02T12:01:00+00:00"


async def test_a_replayed_sampler_writes_each_sample_once(store: SqlStore) -> None:
    assert await store.add_usage(_sample(T0 + 5)) == 2
    # restarted (or a second replica) in the same interval: nothing new, whatever it saw
    assert await store.add_usage(_sample(T0 + 50, ready=7)) == 0
    assert await store.add_usage(_sample(T0 + 65) + _sample(T0 + 66)) == 2
    assert await _instance_seconds(store, "acme") == 2 * 60 + 2 * 60
    assert await _instance_seconds(store, "other") == 60 + 60
    # rows without an id (written by hand, or before ids existed) are all kept
    plain = UsageRow("acme", "crm", dt.datetime.fromtimestamp(T0, dt.UTC), "x", 1, 60, 1, 1)
    assert await store.add_usage([plain, plain]) == 2


async def test_a_usage_table_of_the_old_schema_is_migrated_in_place(tmp_path: Path) -> None:
    path = str(tmp_path / "old.duckdb")
    db = duckdb.connect(path)  # the usage table as the store made it before sample ids
    db.execute(
        "CREATE TABLE usage (tenant VARCHAR, service VARCHAR, ts TIMESTAMP, profile VARCHAR, "
        "instances DOUBLE, seconds DOUBLE, vcpu DOUBLE, memory_gib DOUBLE)"
    )
    db.execute("CREATE INDEX usage_tenant ON usage (tenant)")
    db.execute(
        "INSERT INTO usage VALUES ('acme', 'crm', TIMESTAMP '2026-03-02 11:00:00', "
        "'api-service', 3, 60, 1, 0.5)"
    )
    db.close()
    for _ in range(2):  # migrated once; opening it again changes nothing
        store = DuckDBStore(path)
        await store.open()
        try:
            await store.add_usage(_sample(T0 + 5))
            assert await _instance_seconds(store, "acme") == 3 * 60 + 2 * 60
        finally:
            await store.close()
    db = duckdb.connect(path)
    cols = db.execute("SELECT column_name, is_nullable FROM information_schema.columns "
                      "WHERE table_name = 'usage' AND column_name = 'sample_id'").fetchall()  # fmt: skip
    ids = db.execute("SELECT sample_id FROM usage ORDER BY ts").fetchall()
    db.close()
    assert cols == [("sample_id", "YES")]
    assert ids == [(None,), ("crm/2026-03-02T12:00:00+00:00",), ("crm/2026-03-02T12:00:00+00:00",)]
