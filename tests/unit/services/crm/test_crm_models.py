"""Validation of the CRM's request models: emails, E.164 phones, lengths, enums, unknown fields."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.crm.models import ContactCreate, ContactPatch, InteractionCreate, TaskPatch


def fields_of(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.value.errors()}


@pytest.mark.parametrize(
    ("email", "stored"),
    [
        ("ada@example.com", "ada@example.com"),
        ("Ada.Lovelace+crm@Mail.Example.CO.UK", "Ada.Lovelace+crm@mail.example.co.uk"),
        ("  o'brien@x-y.io ", "o'brien@x-y.io"),
    ],
)
def test_good_emails(email: str, stored: str) -> None:
    assert ContactCreate(name="x", email=email).email == stored


@pytest.mark.parametrize(
    "email",
    ["ada", "ada@", "@example.com", "a@b", "a b@example.com", "a@-x.com", "a..b@x.com", "a@x..com"],
)
def test_bad_emails(email: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ContactCreate(name="x", email=email)
    assert fields_of(exc) == {"email"}


@pytest.mark.parametrize(
    ("phone", "stored"),
    [("+442071234567", "+442071234567"), ("+1 (415) 555-0100", "+14155550100")],
)
def test_good_phones(phone: str, stored: str) -> None:
    assert ContactCreate(name="x", phone=phone).phone == stored


@pytest.mark.parametrize(
    "phone", ["02071234567", "+0123456789", "+12", "+1234567890123456", "+1-800-FLOWERS"]
)
def test_bad_phones_name_e164(phone: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ContactCreate(name="x", phone=phone)
    assert fields_of(exc) == {"phone"}
    assert "E.164" in str(exc.value)


def test_tags_are_normalised_and_bounded() -> None:
    assert ContactCreate(name="x", tags=["VIP", " vip ", "pilot"]).tags == ["vip", "pilot"]
    with pytest.raises(ValidationError) as exc:
        ContactCreate(name="x", tags=["ok", "not ok"])
    assert fields_of(exc) == {"tags.1"}
    with pytest.raises(ValidationError) as exc:
        ContactCreate(name="x", tags=[f"t{i}" for i in range(21)])
    assert fields_of(exc) == {"tags"}


def test_unknown_fields_lengths_and_enums() -> None:
    with pytest.raises(ValidationError) as exc:
        ContactCreate.model_validate({"name": "x", "nickname": "y"})
    assert fields_of(exc) == {"nickname"}
    with pytest.raises(ValidationError) as exc:
        ContactCreate(name="x" * 201)
    assert fields_of(exc) == {"name"}
    with pytest.raises(ValidationError) as exc:
        ContactCreate.model_validate({"name": "x", "status": "friend"})
    assert fields_of(exc) == {"status"}
    with pytest.raises(ValidationError) as exc:
        InteractionCreate.model_validate({"type": "fax", "summary": "x"})
    assert fields_of(exc) == {"type"}


def test_interaction_timestamps_need_a_zone() -> None:
    with pytest.raises(ValidationError) as exc:
        InteractionCreate.model_validate(
            {"type": "call", "summary": "x", "occurred_at": "2025-01-01T10:00:00"}
        )
    assert fields_of(exc) == {"occurred_at"}
    ok = InteractionCreate.model_validate(
        {"type": "call", "summary": "x", "occurred_at": "2025-01-01T10:00:00+02:00"}
    )
    assert ok.occurred_at == datetime(2025, 1, 1, 8, tzinfo=UTC)


def test_patch_changes_only_what_was_sent() -> None:
    assert ContactPatch.model_validate({"company": None}).changes() == {"company": None}
    assert ContactPatch.model_validate({}).changes() == {}
    with pytest.raises(ValueError, match="name"):
        ContactPatch.model_validate({"name": None}).changes()
    with pytest.raises(ValueError, match="status"):
        TaskPatch.model_validate({"status": None}).changes()
    assert TaskPatch.model_validate({"due_date": None}).changes() == {"due_date": None}
