"""A fake BigQuery REST API (v2) for the real ``google-cloud-bigquery`` client.

It speaks the wire format the client uses for what the analytics store does: datasets and
tables (``insert``/``get``, 409 on a duplicate, the schema, ``timePartitioning`` and
``clustering`` validated as BigQuery does: the partitioning column must be a TIMESTAMP or DATE
of the table, at most four clustering columns, each a column of the table),
``tabledata.insertAll`` (per-row ``insertErrors`` for unknown columns or a missing REQUIRED
value; ``insertId`` de-duplicates a retried row) and ``jobs.query`` with named parameters
(GoogleSQL run by DuckDB after rewriting the few constructs that differ: backquoted table
paths, ``TIMESTAMP_TRUNC``, ``@name``). Results come back as BigQuery's ``rows[].f[].v``
strings, TIMESTAMPs as int64 microseconds when ``formatOptions.useInt64Timestamp`` asks.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import duckdb

__all__ = ["FakeBigQuery"]

_DDL = {
    "STRING": "VARCHAR",
    "TIMESTAMP": "TIMESTAMP",
    "FLOAT": "DOUBLE",
    "FLOAT64": "DOUBLE",
    "INTEGER": "BIGINT",
    "INT64": "BIGINT",
    "BOOLEAN": "BOOLEAN",
    "BOOL": "BOOLEAN",
    "DATE": "DATE",
    "JSON": "VARCHAR",
}
_RESULT = {
    "VARCHAR": "STRING",
    "BIGINT": "INTEGER",
    "INTEGER": "INTEGER",
    "HUGEINT": "INTEGER",
    "DOUBLE": "FLOAT",
    "BOOLEAN": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMP",
    "DATE": "DATE",
}
_PATH = re.compile(r"^/bigquery/v2/projects/([^/]+)/(.*)$")
_TABLE_REF = re.compile(r"`([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)`")
_TRUNC = re.compile(r"TIMESTAMP_TRUNC\(\s*([A-Za-z0-9_.]+)\s*,\s*(HOUR|DAY|MINUTE)\s*\)", re.I)


class _Error(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def _timestamp(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace(" UTC", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _param_value(param: dict[str, Any]) -> Any:
    kind = param["parameterType"]["type"]
    raw = param.get("parameterValue", {}).get("value")
    if raw is None:
        return None
    if kind in ("INT64", "INTEGER"):
        return int(raw)
    if kind in ("FLOAT64", "FLOAT", "NUMERIC"):
        return float(raw)
    if kind in ("BOOL", "BOOLEAN"):
        return raw == "true"
    if kind == "TIMESTAMP":
        return _timestamp(raw)
    return raw


class FakeBigQuery:
    """``with FakeBigQuery() as bq: Client(..., client_options={"api_endpoint": bq.endpoint})``."""

    def __init__(self) -> None:
        self.db = duckdb.connect(":memory:")
        self.lock = threading.Lock()
        self.datasets: dict[tuple[str, str], dict[str, Any]] = {}
        self.tables: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.queries: list[str] = []
        self._insert_ids: set[str] = set()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- resources ------------------------------------------------------------------------
    def _create_dataset(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        ref = body["datasetReference"]
        key = (project, ref["datasetId"])
        if key in self.datasets:
            raise _Error(409, "duplicate", f"Already Exists: Dataset {project}:{key[1]}")
        self.db.execute(f'CREATE SCHEMA "{key[1]}"')
        self.datasets[key] = {**body, "id": f"{project}:{key[1]}", "kind": "bigquery#dataset"}
        return self.datasets[key]

    def _create_table(self, project: str, dataset: str, body: dict[str, Any]) -> dict[str, Any]:
        if (project, dataset) not in self.datasets:
            raise _Error(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        table = body["tableReference"]["tableId"]
        key = (project, dataset, table)
        if key in self.tables:
            raise _Error(409, "duplicate", f"Already Exists: Table {project}:{dataset}.{table}")
        fields = body.get("schema", {}).get("fields", [])
        types = {f["name"]: f["type"].upper() for f in fields}
        part = body.get("timePartitioning")
        if part and part.get("field") and types.get(part["field"]) not in ("TIMESTAMP", "DATE"):
            raise _Error(
                400,
                "invalid",
                f"partitioning field {part['field']} must be a "
                "TIMESTAMP or DATE column of the table",
            )
        cluster = body.get("clustering", {}).get("fields", [])
        if len(cluster) > 4 or any(c not in types for c in cluster):
            raise _Error(
                400, "invalid", f"clustering fields {cluster}: at most 4 columns of the table"
            )
        cols = ", ".join(f'"{n}" {_DDL[t]}' for n, t in types.items())
        self.db.execute(f'CREATE TABLE "{dataset}"."{table}" ({cols})')
        self.tables[key] = {**body, "id": f"{project}:{dataset}.{table}", "kind": "bigquery#table"}
        return self.tables[key]

    def _insert_all(
        self, project: str, dataset: str, table: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        meta = self.tables.get((project, dataset, table))
        if meta is None:
            raise _Error(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        fields = {f["name"]: f for f in meta["schema"]["fields"]}
        errors, good = [], []
        for i, row in enumerate(body.get("rows", [])):
            data, problem = row["json"], None
            unknown = [k for k in data if k not in fields]
            missing = [
                n for n, f in fields.items() if f.get("mode") == "REQUIRED" and data.get(n) is None
            ]
            if unknown:
                problem = f"no such field: {unknown[0]}."
            elif missing:
                problem = f"Missing required field: {missing[0]}."
            if problem:
                errors.append({"index": i, "errors": [{"reason": "invalid", "message": problem}]})
            elif row.get("insertId") not in self._insert_ids:
                good.append(row)
        if errors:  # BigQuery rejects the whole request's rows unless skipInvalidRows
            return {"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": errors}
        names = list(fields)
        for row in good:
            values = [self._cell(fields[n]["type"], row["json"].get(n)) for n in names]
            marks = ", ".join("?" for _ in names)
            self.db.execute(f'INSERT INTO "{dataset}"."{table}" VALUES ({marks})', values)
            if row.get("insertId"):
                self._insert_ids.add(row["insertId"])
        return {"kind": "bigquery#tableDataInsertAllResponse"}

    @staticmethod
    def _cell(kind: str, value: Any) -> Any:
        if value is not None and kind.upper() == "TIMESTAMP":
            return (
                _timestamp(value)
                if isinstance(value, str)
                else dt.datetime.fromtimestamp(value, dt.UTC).replace(tzinfo=None)
            )
        return value

    def _query(self, project: str, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("useLegacySql", True) is not False:
            raise _Error(400, "invalid", "legacy SQL is not supported by this fake")
        sql = body["query"]
        self.queries.append(sql)
        sql = _TABLE_REF.sub(lambda m: f'"{m.group(2)}"."{m.group(3)}"', sql)
        sql = _TRUNC.sub(lambda m: f"date_trunc('{m.group(2).lower()}', {m.group(1)})", sql)
        params = {p["name"]: _param_value(p) for p in body.get("queryParameters", [])}
        sql = re.sub(r"@([A-Za-z_][A-Za-z0-9_]*)", r"$\1", sql)
        try:
            cur = self.db.execute(sql, params or None)
        except duckdb.Error as exc:
            raise _Error(400, "invalidQuery", str(exc)) from exc
        desc = cur.description or []
        types = [_RESULT.get(str(d[1]).split("(")[0], "STRING") for d in desc]
        micros = body.get("formatOptions", {}).get("useInt64Timestamp", False)
        rows = [
            {"f": [{"v": self._encode(t, v, micros)} for t, v in zip(types, r, strict=True)]}
            for r in cur.fetchall()
        ]
        return {
            "kind": "bigquery#queryResponse",
            "schema": {
                "fields": [
                    {"name": d[0], "type": t, "mode": "NULLABLE"}
                    for d, t in zip(desc, types, strict=True)
                ]
            },
            "jobReference": {
                "projectId": project,
                "jobId": f"job_{len(self.queries)}",
                "location": "US",
            },
            "totalRows": str(len(rows)),
            "rows": rows,
            "jobComplete": True,
            "cacheHit": False,
        }

    @staticmethod
    def _encode(kind: str, value: Any, micros: bool) -> Any:
        if value is None:
            return None
        if kind == "TIMESTAMP":
            seconds = value.replace(tzinfo=dt.UTC).timestamp()
            return str(round(seconds * 1_000_000)) if micros else f"{seconds:.6f}"
        if kind == "BOOLEAN":
            return "true" if value else "false"
        return str(value)

    # -- HTTP -----------------------------------------------------------------------------
    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        m = _PATH.match(path.split("?")[0])
        if m is None:
            raise _Error(404, "notFound", f"no such path {path}")
        project, rest = m.groups()
        parts = rest.split("/")
        with self.lock:
            if method == "POST" and rest == "queries":
                return 200, self._query(project, body)
            if method == "POST" and rest == "datasets":
                return 200, self._create_dataset(project, body)
            if method == "GET" and len(parts) == 2 and parts[0] == "datasets":
                return 200, self._get(self.datasets, (project, parts[1]), "Dataset")
            if method == "POST" and len(parts) == 3 and parts[2] == "tables":
                return 200, self._create_table(project, parts[1], body)
            if method == "GET" and len(parts) == 4 and parts[2] == "tables":
                return 200, self._get(self.tables, (project, parts[1], parts[3]), "Table")
            if method == "POST" and len(parts) == 5 and parts[4] == "insertAll":
                return 200, self._insert_all(project, parts[1], parts[3], body)
        raise _Error(404, "notFound", f"no such method {method} {path}")

    @staticmethod
    def _get(store: dict[Any, dict[str, Any]], key: Any, kind: str) -> dict[str, Any]:
        if key not in store:
            raise _Error(404, "notFound", f"Not found: {kind} {':'.join(key)}")
        return store[key]

    def __enter__(self) -> FakeBigQuery:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    status, out = fake.handle(method, self.path, json.loads(raw) if raw else {})
                except _Error as exc:
                    status = exc.status
                    out = {
                        "error": {
                            "code": exc.status,
                            "message": str(exc),
                            "errors": [{"reason": exc.reason, "message": str(exc)}],
                        }
                    }
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, *_: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.db.close()
