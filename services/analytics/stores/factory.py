"""The store the settings ask for."""

from __future__ import annotations

from services.analytics.settings import AnalyticsSettings
from services.analytics.stores.base import SqlStore

__all__ = ["open_store"]


def open_store(settings: AnalyticsSettings) -> SqlStore:
    """An unopened store (``await store.open()`` creates its tables)."""
    if settings.store == "bigquery":
        from services.analytics.stores.bigquery import BigQueryStore

        if not settings.bigquery_project:
            raise ValueError("XYNERGY_ANALYTICS_BIGQUERY_PROJECT: expected a project id")
        return BigQueryStore(
            project=settings.bigquery_project,
            dataset=settings.bigquery_dataset,
            location=settings.bigquery_location,
            endpoint=settings.bigquery_endpoint or None,
            partition_expiration_days=settings.bigquery_partition_expiration_days,
        )
    from services.analytics.stores.duckdb import DuckDBStore

    return DuckDBStore(settings.duckdb_path)
