"""The embedded store: DuckDB in a file (or in memory), no server.

One connection, used from one worker thread at a time (the base class holds a lock). Named
parameters are DuckDB's ``$name``; the shared SQL's ``@name`` is rewritten once per query.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

import duckdb

from services.analytics.stores.base import TABLES, SqlStore, Table

__all__ = ["DuckDBStore"]

_TYPES = {"STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMP", "FLOAT": "DOUBLE", "INTEGER": "BIGINT"}
log = logging.getLogger("xynergy.analytics")
_PARAM = re.compile(r"@([a-z_][a-z0-9_]*)")


def _naive(value: Any) -> Any:
    """Timestamps are kept as naive UTC (TIMESTAMPTZ would need pytz to read back)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _aware(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class DuckDBStore(SqlStore):
    engine = "duckdb"

    def __init__(self, path: str = ":memory:") -> None:
        super().__init__()
        self.path = path
        self._db: duckdb.DuckDBPyConnection | None = None

    def _conn(self) -> duckdb.DuckDBPyConnection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    def _open_sync(self) -> None:
        self._db = duckdb.connect(self.path)
        self._db.execute("SET TimeZone = 'UTC'")
        for t in TABLES:
            cols = ", ".join(f"{c.name} {_TYPES[c.type]}" for c in t.columns)
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {t.name} ({cols})")
            self._add_missing_columns(t)
            self._db.execute(
                f"CREATE INDEX IF NOT EXISTS {t.name}_tenant ON {t.name} ({t.cluster_by[0]})"
            )

    def _add_missing_columns(self, table: Table) -> None:
        """Migrate a table made by an older version in place: its columns this version
        added are added, nullable (its rows keep NULL there)."""
        db = self._conn()
        have = {
            r[0]
            for r in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                [table.name],
            ).fetchall()
        }
        missing = [c for c in table.columns if c.name not in have]
        if not missing:
            return
        for c in missing:
            db.execute(f"ALTER TABLE {table.name} ADD COLUMN {c.name} {_TYPES[c.type]}")
        log.info("analytics store: %s migrated, added %s", table.name, [c.name for c in missing])

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _table(self, name: str) -> str:
        return name

    def _hour(self, column: str) -> str:
        return f"date_trunc('hour', {column})"

    def _query_sync(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        args = {k: _naive(v) for k, v in params.items()}
        cur = self._conn().execute(_PARAM.sub(r"$\1", sql), args or None)
        names = [d[0] for d in cur.description or ()]
        return [{n: _aware(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]

    def _insert_sync(self, table: str, rows: list[dict[str, Any]]) -> None:
        names = list(rows[0])
        marks = ", ".join("?" for _ in names)
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})"
        conn = self._conn()
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.executemany(sql, [[_naive(r[n]) for n in names] for r in rows])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
