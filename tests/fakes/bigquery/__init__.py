"""A fake BigQuery REST API (v2) for the real ``google-cloud-bigquery`` client.

It speaks the wire format the client uses for what the analytics store does: datasets and
tables (``insert``/``get``, 409 on a duplicate, the schema, ``timePartitioning`` and
``clustering`` validated as BigQuery does: the partitioning column must be a TIMESTAMP or DATE
of the table, at most four clustering columns, each a column of the table; ``patch`` with the
API's schema rules: a new field must be NULLABLE or REPEATED, a field may only be relaxed from
REQUIRED to NULLABLE, never dropped nor retyped, else 400 "Provided Schema does not match
Table"; old rows read NULL in an added field (an empty array if REPEATED); an ``etag`` per
table, checked against ``If-Match`` (412 when stale)),
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
import uuid
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
_SAME_TYPE = {"FLOAT64": "FLOAT", "INT64": "INTEGER", "BOOL": "BOOLEAN"}
_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}
_STATUS[412] = "FAILED_PRECONDITION"
_PATCHABLE = {"schema", "clustering", "description", "friendlyName", "labels", "expirationTime"}
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


def _mode(duck_type: str) -> str:
    return "REPEATED" if duck_type.endswith("[]") else "NULLABLE"


def _etag() -> str:
    return uuid.uuid4().hex[:16]


def _check_clustering(body: dict[str, Any], types: dict[str, str]) -> None:
    cluster = (body.get("clustering") or {}).get("fields", [])
    if len(cluster) > 4 or any(c not in types for c in cluster):
        raise _Error(400, "invalid", f"clustering fields {cluster}: at most 4 columns of the table")


def _schema_change(
    table: str, old: list[dict[str, Any]], new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The fields ``new`` adds to ``old``, or the API's 400 for a change it refuses."""
    given = {f["name"]: f for f in new}
    for field in old:
        name, mode = field["name"], field.get("mode") or "NULLABLE"
        after = given.get(name)
        problem = None
        if after is None:
            problem = f"Field {name} is missing in new schema"
        elif _SAME_TYPE.get(t := field["type"].upper(), t) != _SAME_TYPE.get(
            u := after["type"].upper(), u
        ):
            problem = f"Field {name} has changed type from {t} to {u}"
        elif (to := after.get("mode") or "NULLABLE") not in (mode, "NULLABLE") or (
            mode == "REPEATED" and to != mode
        ):
            problem = f"Field {name} has changed mode from {mode} to {to}"
        if problem:
            raise _Error(400, "invalid", f"Provided Schema does not match Table {table}. {problem}")
    have = {f["name"] for f in old}
    added = [f for f in new if f["name"] not in have]
    for field in added:
        if field.get("mode") == "REQUIRED":
            raise _Error(
                400,
                "invalid",
                f"Provided Schema does not match Table {table}. Cannot add required columns "
                f"to an existing schema. (field: {field['name']})",
            )
        if field["type"].upper() not in _DDL:
            raise _Error(400, "invalid", f"this fake does not model {field['type']} fields")
    return added


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
        _check_clustering(body, types)
        cols = ", ".join(f'"{n}" {_DDL[t]}' for n, t in types.items())
        self.db.execute(f'CREATE TABLE "{dataset}"."{table}" ({cols})')
        self.tables[key] = {
            **body,
            "id": f"{project}:{dataset}.{table}",
            "kind": "bigquery#table",
            "etag": _etag(),
        }
        return self.tables[key]

    def _patch_table(
        self, key: tuple[str, str, str], body: dict[str, Any], if_match: str | None
    ) -> dict[str, Any]:
        """``tables.patch``: the given fields replace the table's; a schema only as the API
        allows (see the module's docstring), the added columns made in DuckDB."""
        meta = self._get(self.tables, key, "Table")
        if if_match is not None and if_match != meta["etag"]:
            raise _Error(412, "conditionNotMet", "Precondition check failed.")
        unknown = sorted(set(body) - _PATCHABLE - {"tableReference", "id", "kind", "etag"})
        if unknown:
            raise _Error(400, "invalid", f"this fake does not patch {unknown}")
        fields = body.get("schema", meta["schema"]).get("fields", [])
        added = _schema_change(f"{key[0]}:{key[1]}.{key[2]}", meta["schema"]["fields"], fields)
        _check_clustering({**meta, **body}, {f["name"]: f["type"] for f in fields})
        for field in added:
            repeated = field.get("mode") == "REPEATED"
            kind = _DDL[field["type"].upper()] + ("[]" if repeated else "")
            default = " DEFAULT []" if repeated else ""
            self.db.execute(
                f'ALTER TABLE "{key[1]}"."{key[2]}" ADD COLUMN "{field["name"]}" {kind}{default}'
            )
        meta.update({k: v for k, v in body.items() if k in _PATCHABLE}, etag=_etag())
        return meta

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
            cols = ", ".join(f'"{n}"' for n in names)
            self.db.execute(f'INSERT INTO "{dataset}"."{table}" ({cols}) VALUES ({marks})', values)
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
        types = [_RESULT.get(str(d[1]).split("(")[0].removesuffix("[]"), "STRING") for d in desc]
        micros = body.get("formatOptions", {}).get("useInt64Timestamp", False)
        rows = [
            {"f": [{"v": self._encode(t, v, micros)} for t, v in zip(types, r, strict=True)]}
            for r in cur.fetchall()
        ]
        return {
            "kind": "bigquery#queryResponse",
            "schema": {
                "fields": [
                    {"name": d[0], "type": t, "mode": _mode(str(d[1]))}
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
        if isinstance(value, list):  # a REPEATED value: an array of cells
            return [{"v": FakeBigQuery._encode(kind, v, micros)} for v in value]
        if kind == "TIMESTAMP":
            seconds = value.replace(tzinfo=dt.UTC).timestamp()
            return str(round(seconds * 1_000_000)) if micros else f"{seconds:.6f}"
        if kind == "BOOLEAN":
            return "true" if value else "false"
        return str(value)

    # -- HTTP -----------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, body: dict[str, Any], *, if_match: str | None = None
    ) -> tuple[int, dict[str, Any]]:
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
            if method == "PATCH" and len(parts) == 4 and parts[2] == "tables":
                return 200, self._patch_table((project, parts[1], parts[3]), body, if_match)
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
                    status, out = fake.handle(
                        method,
                        self.path,
                        json.loads(raw) if raw else {},
                        if_match=self.headers.get("If-Match"),
                    )
                except _Error as exc:
                    status = exc.status
                    out = {
                        "error": {
                            "code": exc.status,
                            "message": str(exc),
                            "errors": [
                                {"message": str(exc), "domain": "global", "reason": exc.reason}
                            ],
                            "status": _STATUS.get(exc.status, "UNKNOWN"),
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

            def do_PATCH(self) -> None:
                self._serve("PATCH")

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
