"""tests/fakes/bigquery answers ``tables.patch`` (the real client's ``update_table``) with the
API's schema rules: adding NULLABLE or REPEATED fields and relaxing REQUIRED to NULLABLE are
applied (old rows read NULL, or an empty array); anything else is the API's 400 and leaves the
table as it was; a stale etag is 412."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fakes.bigquery import FakeBigQuery
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery as bq
from google.cloud.bigquery import SchemaField

pytestmark = pytest.mark.unit
BASE = [SchemaField("tenant", "STRING", mode="REQUIRED"), SchemaField("n", "INTEGER")]


@pytest.fixture
def table(bigquery: FakeBigQuery) -> Iterator[tuple[bq.Client, bq.Table]]:
    client = bq.Client(
        project="demo",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=bigquery.endpoint),
    )
    dataset = f"d{uuid.uuid4().hex}"
    client.create_dataset(f"demo.{dataset}")
    made = client.create_table(bq.Table(f"demo.{dataset}.t", schema=BASE))
    assert client.insert_rows_json(made, [{"tenant": "acme", "n": 1}]) == []
    yield client, made
    client.close()


def test_nullable_and_repeated_fields_are_added_and_read_empty_on_old_rows(
    table: tuple[bq.Client, bq.Table],
) -> None:
    client, made = table
    made.schema = [*BASE, SchemaField("note", "STRING"), SchemaField("tags", "STRING", "REPEATED")]
    patched = client.update_table(made, ["schema"])
    assert [(f.name, f.mode) for f in patched.schema][2:] == [
        ("note", "NULLABLE"),
        ("tags", "REPEATED"),
    ]
    assert patched.etag != made.etag
    new = {"tenant": "acme", "n": 2, "note": "hi", "tags": ["a", "b"]}
    assert client.insert_rows_json(patched, [new]) == []
    rows = client.query_and_wait(f"SELECT n, note, tags FROM `{made.full_table_id.replace(':', '.')}` ORDER BY n")  # fmt: skip
    assert [tuple(r.values()) for r in rows] == [(1, None, []), (2, "hi", ["a", "b"])]


def test_required_is_relaxed_to_nullable(table: tuple[bq.Client, bq.Table]) -> None:
    client, made = table
    assert client.insert_rows_json(made, [{"n": 5}]) != []  # tenant is REQUIRED
    made.schema = [SchemaField("tenant", "STRING"), BASE[1]]
    patched = client.update_table(made, ["schema"])
    assert patched.schema[0].mode == "NULLABLE"
    assert client.insert_rows_json(patched, [{"n": 5}]) == []


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            [*BASE, SchemaField("x", "STRING", mode="REQUIRED")],
            "Cannot add required columns to an existing schema. (field: x)",
        ),
        ([BASE[0]], "Field n is missing in new schema"),
        ([BASE[0], SchemaField("n", "STRING")], "Field n has changed type from INTEGER to STRING"),
        (
            [BASE[0], SchemaField("n", "INTEGER", mode="REQUIRED")],
            "Field n has changed mode from NULLABLE to REQUIRED",
        ),
        (
            [BASE[0], SchemaField("n", "INTEGER", mode="REPEATED")],
            "Field n has changed mode from NULLABLE to REPEATED",
        ),
    ],
)
def test_other_schema_changes_are_the_apis_400_and_change_nothing(
    table: tuple[bq.Client, bq.Table], schema: list[SchemaField], message: str
) -> None:
    client, made = table
    made.schema = schema
    with pytest.raises(exceptions.BadRequest) as err:
        client.update_table(made, ["schema"])
    error = err.value.errors[0]
    expected = f"Provided Schema does not match Table {made.full_table_id}. {message}"
    assert (error["reason"], error["message"]) == ("invalid", expected)
    after = client.get_table(made.reference)
    assert (after.schema, after.etag) == (BASE, made.etag)


def test_a_stale_etag_is_412(table: tuple[bq.Client, bq.Table]) -> None:
    client, made = table
    made.description = "first"
    client.update_table(made, ["description"])
    made.description = "second"  # made.etag is the table's before the first patch
    with pytest.raises(exceptions.PreconditionFailed):
        client.update_table(made, ["description"])
    assert client.get_table(made.reference).description == "first"
