"""The CRM's OpenAPI says what its validators enforce: formats of emails, phones and tags,
which PATCH fields may be null, and dates that must be ISO strings in a plausible range."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from services.crm.models import (
    ContactCreate,
    ContactPatch,
    InteractionCreate,
    TaskCreate,
    TaskPatch,
)


def prop(model: type[BaseModel], name: str) -> dict[str, Any]:
    """A property's schema, without the ``null`` branch of an optional field."""
    schema = model.model_json_schema()["properties"][name]
    branches = [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]
    assert len(branches) == 1, schema
    return dict(branches[0])


def accepted_by_model(model: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


def accepted_by_schema(schema: dict[str, Any], value: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def test_formats_are_in_the_schema() -> None:
    email = prop(ContactCreate, "email")
    assert (email["format"], email["maxLength"]) == ("email", 254)
    assert email["pattern"].startswith("^")
    assert email["pattern"].endswith("$")
    phone = prop(ContactCreate, "phone")
    assert phone["maxLength"] == 32
    assert phone["pattern"]
    tag = prop(ContactCreate, "tags")["items"]
    assert tag["maxLength"] == 40
    assert tag["pattern"]
    assert prop(ContactCreate, "tags")["maxItems"] == 20
    # a PATCH documents the same formats as a create
    assert prop(ContactPatch, "email") == email
    assert prop(ContactPatch, "phone") == phone


_EMAILISH = st.one_of(
    st.emails(),
    st.text(alphabet="aZ9.-_+'@ !#", min_size=1, max_size=30),
    st.builds(lambda a, b: f"{a}@{b}", st.text("ab.-", max_size=8), st.text("ab.-9", max_size=12)),
)


@given(_EMAILISH)
def test_the_email_schema_accepts_exactly_what_the_validator_accepts(value: str) -> None:
    assume(value == value.strip())  # surrounding whitespace is trimmed first (documented)
    assert accepted_by_model(ContactCreate, {"name": "x", "email": value}) == accepted_by_schema(
        prop(ContactCreate, "email"), value
    )


@given(st.text(alphabet="+0123456789 ().-x", min_size=1, max_size=36))
def test_the_phone_schema_accepts_exactly_what_the_validator_accepts(value: str) -> None:
    assume(value == value.strip())
    assert accepted_by_model(ContactCreate, {"name": "x", "phone": value}) == accepted_by_schema(
        prop(ContactCreate, "phone"), value
    )


@given(st.text(alphabet="aZ09_- .\u212a\u00e9", min_size=0, max_size=44))
def test_the_tag_schema_accepts_exactly_what_the_validator_accepts(value: str) -> None:
    assume(value == value.strip())
    assert accepted_by_model(ContactCreate, {"name": "x", "tags": [value]}) == accepted_by_schema(
        prop(ContactCreate, "tags")["items"], value
    )


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (ContactPatch, "name"),
        (ContactPatch, "status"),
        (ContactPatch, "tags"),
        (TaskPatch, "title"),
        (TaskPatch, "status"),
    ],
)
def test_patch_fields_that_cannot_be_null_say_so_and_refuse_null(
    model: type[BaseModel], name: str
) -> None:
    schema = model.model_json_schema()
    assert name not in schema.get("required", [])  # may be left out: unchanged
    assert not accepted_by_schema(schema["properties"][name], None)
    with pytest.raises(ValidationError) as exc:
        model.model_validate({name: None})
    [err] = exc.value.errors()
    assert err["loc"] == (name,)
    assert "cannot be null" in err["msg"]


@pytest.mark.parametrize(
    ("model", "name"),
    [(ContactPatch, n) for n in ("email", "phone", "company", "title", "owner")]
    + [(TaskPatch, n) for n in ("due_date", "assignee")],
)
def test_patch_fields_that_can_be_cleared_accept_null(model: type[BaseModel], name: str) -> None:
    assert accepted_by_schema(model.model_json_schema()["properties"][name], None)
    assert model.model_validate({name: None}).changes() == {name: None}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "due", [0, 1_700_000_000, "0", "1700000000", 0.5, "0001-01-01", "9999-12-31"]
)
def test_due_dates_must_be_plausible_iso_days(due: Any) -> None:
    for model, extra in ((TaskCreate, {"title": "t"}), (TaskPatch, {})):
        with pytest.raises(ValidationError) as exc:
            model.model_validate({**extra, "due_date": due})
        [err] = exc.value.errors()
        assert err["loc"] == ("due_date",)
        assert "YYYY-MM-DD" in err["msg"] or "between" in err["msg"], err["msg"]
    assert TaskCreate.model_validate({"title": "t", "due_date": "1970-01-01"}).due_date


@pytest.mark.parametrize(
    "stamp", [0, 1_700_000_000, "0", "1700000000", "0001-01-01T00:00:00Z", "9999-01-01T00:00:00Z"]
)
def test_interaction_times_must_be_plausible_iso_timestamps(stamp: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        InteractionCreate.model_validate({"type": "call", "summary": "x", "occurred_at": stamp})
    [err] = exc.value.errors()
    assert err["loc"] == ("occurred_at",)
    assert "ISO 8601" in err["msg"] or "between" in err["msg"], err["msg"]
