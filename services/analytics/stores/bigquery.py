"""The production store: BigQuery through the official ``google-cloud-bigquery`` client.

Tables are partitioned by day on their time column (``ts``, or ``started`` for workflow runs;
queries filter on it, so a dashboard's window prunes to a few partitions) and clustered by
tenant first (every query filters on tenant, so it reads only that tenant's blocks).
Rows go in with the streaming API (``insertAll``, an ``insertId`` per row so a retried call
does not duplicate; an event's is its tenant and ``event_id``); a workflow run is one row, so
it lands whole or not at all. Queries are GoogleSQL with named parameters through ``jobs.query``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import bigquery

from services.analytics.stores.base import TABLES, SqlStore

__all__ = ["BigQueryStore"]

_PARAM_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "BOOL"),
    (int, "INT64"),
    (float, "FLOAT64"),
    (dt.datetime, "TIMESTAMP"),
    (str, "STRING"),
)


def _param(name: str, value: Any) -> bigquery.ScalarQueryParameter:
    for kind, type_ in _PARAM_TYPES:
        if isinstance(value, kind):
            return bigquery.ScalarQueryParameter(name, type_, value)  # type: ignore[arg-type]
    raise TypeError(f"query parameter {name}: unsupported type {type(value).__name__}")


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


class BigQueryStore(SqlStore):
    engine = "bigquery"

    def __init__(
        self,
        *,
        project: str,
        dataset: str,
        location: str = "US",
        endpoint: str | None = None,
        partition_expiration_days: int = 400,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__()
        self.project = project
        self.dataset = dataset
        self.location = location
        self.expiration_ms = partition_expiration_days * 86_400_000
        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        if endpoint and credentials is None:
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        self.client = bigquery.Client(
            project=project, credentials=credentials, client_options=options, location=location
        )

    def _table(self, name: str) -> str:
        return f"`{self.project}.{self.dataset}.{name}`"

    def _hour(self, column: str) -> str:
        return f"TIMESTAMP_TRUNC({column}, HOUR)"

    def _open_sync(self) -> None:
        ds = bigquery.Dataset(f"{self.project}.{self.dataset}")
        ds.location = self.location
        self.client.create_dataset(ds, exists_ok=True)
        for t in TABLES:
            schema = [
                bigquery.SchemaField(
                    c.name, c.type, mode="REQUIRED" if c.name == "tenant" else "NULLABLE"
                )
                for c in t.columns
            ]
            table = bigquery.Table(f"{self.project}.{self.dataset}.{t.name}", schema=schema)
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY,
                field=t.partition_by,
                expiration_ms=self.expiration_ms,
            )
            table.require_partition_filter = False
            table.clustering_fields = list(t.cluster_by)
            self._add_missing_fields(self.client.create_table(table, exists_ok=True), schema)

    def _add_missing_fields(self, table: bigquery.Table, schema: list[Any]) -> None:
        """Migrate a table made by an older version in place: the fields this version
        added are appended, NULLABLE (BigQuery's only allowed schema change of this kind;
        old rows read NULL there)."""
        have = {f.name for f in table.schema}
        missing = [f for f in schema if f.name not in have]
        if missing:
            table.schema = [*table.schema, *missing]
            self.client.update_table(table, ["schema"])

    def _close_sync(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    def _query_sync(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        config = bigquery.QueryJobConfig(query_parameters=[_param(k, v) for k, v in params.items()])
        rows = self.client.query_and_wait(sql, job_config=config)
        return [dict(row.items()) for row in rows]

    def _insert_sync(self, table: str, rows: list[dict[str, Any]]) -> None:
        ref = f"{self.project}.{self.dataset}.{table}"
        data = [{k: _json(v) for k, v in r.items()} for r in rows]
        # an event's (a usage sample's) insertId is its tenant and id, so BigQuery's
        # best-effort dedup also drops a retry or a replayed sample (and two tenants' rows
        # with one id are both kept)
        ids = [
            f"{r['tenant']}/{key}"
            if (key := r.get("event_id") or r.get("sample_id"))
            else uuid.uuid4().hex
            for r in data
        ]
        errors = self.client.insert_rows_json(ref, data, row_ids=ids)
        if errors:
            raise RuntimeError(f"BigQuery refused rows of {table}: {errors[:3]}")
