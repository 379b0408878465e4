"""The analytics store: one interface (:class:`AnalyticsStore`), DuckDB embedded by default,
BigQuery in production. :func:`open_store` picks one from the settings."""

from services.analytics.stores.base import TABLES, AnalyticsStore, Column, SqlStore, Table
from services.analytics.stores.factory import open_store

__all__ = ["TABLES", "AnalyticsStore", "Column", "SqlStore", "Table", "open_store"]
