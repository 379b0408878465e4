"""The BigQuery store migrates a usage table made before sample ids in place on open (a
schema patch adding ``sample_id``, NULLABLE): the old rows are kept and read NULL there, new
rows carry ids and are written once, and opening it again patches nothing. Driven through the
real client against tests/fakes/bigquery, which answers ``tables.patch`` as the API does."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from fakes.bigquery import FakeBigQuery
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from services.analytics.records import UsageRow
from services.analytics.stores.base import TABLES
from services.analytics.stores.bigquery import BigQueryStore

pytestmark = pytest.mark.unit
NOON = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
SINCE = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
USAGE = next(t for t in TABLES if t.name == "usage")


def _client(fake: FakeBigQuery) -> bigquery.Client:
    return bigquery.Client(
        project="demo",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=fake.endpoint),
    )


def _old_usage_table(client: bigquery.Client, dataset: str) -> str:
    """The usage table as the store made it before sample ids, with one row."""
    client.create_dataset(f"demo.{dataset}")
    ref = f"demo.{dataset}.usage"
    schema = [
        bigquery.SchemaField(c.name, c.type, mode="REQUIRED" if c.name == "tenant" else "NULLABLE")
        for c in USAGE.columns
        if c.name != "sample_id"
    ]
    table = bigquery.Table(ref, schema=schema)
    table.time_partitioning = bigquery.TimePartitioning(field="ts")
    table.clustering_fields = list(USAGE.cluster_by)
    client.create_table(table)
    old = {"tenant": "acme", "service": "crm", "ts": "2026-03-02T11:00:00+00:00",
           "profile": "api-service", "instances": 3, "seconds": 60, "vcpu": 1, "memory_gib": 0.5}  # fmt: skip
    assert client.insert_rows_json(ref, [old]) == []
    return ref


def _sample(instances: float) -> UsageRow:
    return UsageRow(
        "acme",
        "crm",
        NOON,
        "api-service",
        instances,
        60.0,
        1.0,
        0.5,
        "crm/2026-03-02T12:00:00+00:00",
    )


async def test_an_old_usage_table_is_migrated_in_place_once(bigquery: FakeBigQuery) -> None:
    client, dataset = _client(bigquery), f"d{uuid.uuid4().hex}"
    ref = _old_usage_table(client, dataset)
    etags = []
    for instances in (2, 7):  # the second open (a restart) finds the table migrated
        store = BigQueryStore(project="demo", dataset=dataset, endpoint=bigquery.endpoint)
        await store.open()
        try:
            etags.append(client.get_table(ref).etag)
            # the sample is new on the first open only: the replay is dropped by its id
            assert await store.add_usage([_sample(instances)]) == (1 if instances == 2 else 0)
            hours = await store.usage_hourly("acme", since=SINCE)
            assert sorted(h.instance_seconds for h in hours) == [2 * 60, 3 * 60]
        finally:
            await store.close()
    table = client.get_table(ref)
    field = next(f for f in table.schema if f.name == "sample_id")
    assert (field.field_type, field.mode) == ("STRING", "NULLABLE")
    assert [f.name for f in table.schema] == [c.name for c in USAGE.columns]
    assert table.clustering_fields == list(USAGE.cluster_by)
    assert etags[0] == etags[1] == table.etag  # the second open patched nothing
    rows = client.query_and_wait(f"SELECT instances, sample_id FROM `{ref}` ORDER BY ts")
    assert [tuple(r.values()) for r in rows] == [(3.0, None), (2.0, _sample(2).sample_id)]
    client.close()
