"""Both stores behind one interface: tenant-scoped reads, hourly usage, AI ledger deltas,
whole-run records; BigQuery's tables partitioned by day and clustered by tenant (through the
real client against tests/fakes/bigquery)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
from fakes.bigquery import FakeBigQuery

from services.analytics.records import AiUsageRow, EventRow, RunRow, UsageRow
from services.analytics.stores import SqlStore
from services.analytics.stores.base import REDELIVERY_WINDOW
from services.analytics.stores.bigquery import BigQueryStore

NOW = dt.datetime(2026, 3, 2, 12, 30, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@dataclasses.dataclass
class _Bad:
    """A row with a column the usage table does not have."""

    tenant: str = "acme"
    colour: str = "red"


def _usage(tenant: str, service: str, at: dt.datetime, instances: float) -> UsageRow:
    return UsageRow(tenant, service, at, "api-service", instances, 60.0, 0.5, 1.0)


async def test_usage_is_summed_per_hour_and_scoped_to_the_tenant(store: SqlStore) -> None:
    await store.add_usage(
        [
            _usage("acme", "crm", NOW, 2),
            _usage("acme", "crm", NOW + dt.timedelta(minutes=10), 4),
            _usage("acme", "crm", NOW + HOUR, 1),
            _usage("other", "crm", NOW, 100),
        ]
    )
    hours = await store.usage_hourly("acme", since=NOW - HOUR)
    assert [(h.hour.hour, h.instance_seconds, h.vcpu_seconds) for h in hours] == [
        (12, 360.0, 180.0),
        (13, 60.0, 30.0),
    ]
    assert await store.usage_hourly("nobody", since=NOW - HOUR) == []
    with pytest.raises(ValueError, match="tenant"):
        await store.usage_hourly("a:b", since=NOW)


async def test_events_and_counts_per_topic(store: SqlStore) -> None:
    rows = [
        EventRow("acme", "crm-changes", NOW, "e1", 1, '{"op": "create"}'),
        EventRow("acme", "crm-changes", NOW, "e2", 2, '{"op": "update"}'),
        EventRow("acme", "slack-messages", NOW, "e3", 1, "{}"),
        EventRow("other", "crm-changes", NOW, "e4", 1, "{}"),
    ]
    await store.add_events(rows)
    assert await store.event_counts("acme", since=NOW - HOUR) == {
        "crm-changes": 2,
        "slack-messages": 1,
    }
    got = await store.events("acme", since=NOW - HOUR, topic="crm-changes")
    assert sorted(e.event_id for e in got) == ["e1", "e2"]


async def test_ai_usage_is_what_accrued_since_the_window_start(store: SqlStore) -> None:
    def snap(at: dt.datetime, requests: int, cost: float) -> AiUsageRow:
        return AiUsageRow("acme", at, "openai", "gpt", requests, requests * 10, requests, cost)

    await store.add_ai_usage([snap(NOW - 3 * HOUR, 5, 1.0), snap(NOW, 9, 1.75)])
    [row] = await store.ai_usage("acme", since=NOW - HOUR)
    assert (row.requests, row.prompt_tokens, row.cost_usd) == (4, 40, 0.75)


async def test_a_run_is_one_row_with_its_steps(store: SqlStore) -> None:
    steps = [{"name": "draft", "cost_usd": 0.25}, {"name": "review", "cost_usd": 0.5}]
    await store.record_run(
        RunRow(
            "acme", "r1", "content_generation", "cost", "succeeded", NOW, NOW, 0.75, 0.7, "", steps
        )
    )
    [run] = await store.runs("acme", workflow="content_generation")
    assert run.steps == steps
    assert await store.runs("other") == []


async def test_bigquery_tables_are_partitioned_by_day_and_clustered_by_tenant(
    bigquery: FakeBigQuery,
) -> None:
    store = BigQueryStore(project="demo", dataset="layout", endpoint=bigquery.endpoint)
    await store.open()
    await store.open()  # idempotent: existing dataset and tables are kept
    usage = bigquery.tables[("demo", "layout", "usage")]
    assert usage["timePartitioning"]["type"] == "DAY"
    assert usage["timePartitioning"]["field"] == "ts"
    assert usage["clustering"]["fields"][0] == "tenant"
    runs = bigquery.tables[("demo", "layout", "workflow_runs")]
    assert runs["timePartitioning"]["field"] == "started"
    assert all("tenant = @tenant" in q for q in bigquery.queries if "@tenant" in q)


async def test_bigquery_refused_rows_raise(bigquery: FakeBigQuery) -> None:
    store = BigQueryStore(project="demo", dataset="refuse", endpoint=bigquery.endpoint)
    await store.open()
    with pytest.raises(RuntimeError, match="refused rows of usage"):
        await store._insert("usage", [_Bad()])


async def test_events_once_per_tenant_and_id_within_the_redelivery_window(store: SqlStore) -> None:
    # ids of this test only: the fake, like BigQuery, remembers insertIds across calls
    e1, e2 = f"e1-{uuid.uuid4().hex}", f"e2-{uuid.uuid4().hex}"
    twice = EventRow("acme", "crm-changes", NOW, e1, 1, "{}")
    assert await store.add_events_once([twice, twice]) == 1
    # another tenant's event with the same id is its own (BigQuery: its own insertId)
    assert await store.add_events_once([EventRow("other", "crm-changes", NOW, e1, 1, "{}")]) == 1
    later = NOW + REDELIVERY_WINDOW - dt.timedelta(minutes=1)
    again = [
        EventRow("acme", "crm-changes", later, e1, 1, "{}"),
        EventRow("acme", "crm-changes", later, e2, 2, "{}"),
    ]
    assert await store.add_events_once(again) == 1
    rows = await store.events("acme", since=NOW - HOUR)
    assert sorted(r.event_id for r in rows) == [e1, e2]
    assert [r.event_id for r in await store.events("other", since=NOW - HOUR)] == [e1]
