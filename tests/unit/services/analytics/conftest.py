"""Fixtures of the analytics store tests: the BigQuery fake (one per module) and a store of
each engine (DuckDB in memory; BigQuery through the real client on a fresh dataset)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from fakes.bigquery import FakeBigQuery

from services.analytics.stores import SqlStore
from services.analytics.stores.bigquery import BigQueryStore
from services.analytics.stores.duckdb import DuckDBStore


@pytest.fixture(scope="module")
def bigquery() -> Iterator[FakeBigQuery]:
    with FakeBigQuery() as fake:
        yield fake


@pytest.fixture(params=["duckdb", "bigquery"])
async def store(request: pytest.FixtureRequest, bigquery: FakeBigQuery) -> AsyncIterator[SqlStore]:
    if request.param == "duckdb":
        s: SqlStore = DuckDBStore()
    else:
        s = BigQueryStore(
            project="demo", dataset=f"d{uuid.uuid4().hex}", endpoint=bigquery.endpoint
        )
    await s.open()
    yield s
    await s.close()
