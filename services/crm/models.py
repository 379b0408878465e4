"""The CRM's API models: what clients send and what they get back.

Request models reject unknown fields (``extra="forbid"``) and validate emails, E.164 phone
numbers, lengths and enum values, so every error is a 422 that names the field. Response
models carry the server's fields (``id``, ``version``, timestamps). Pure Pydantic, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

__all__ = [
    "CONTACT_STATUSES",
    "INTERACTION_TYPES",
    "TASK_STATUSES",
    "Contact",
    "ContactCreate",
    "ContactPatch",
    "ContactStatus",
    "Day",
    "ErrorBody",
    "FieldError",
    "Interaction",
    "InteractionCreate",
    "InteractionType",
    "Note",
    "NoteCreate",
    "Page",
    "Record",
    "Statistics",
    "Task",
    "TaskCreate",
    "TaskPatch",
    "TaskStatus",
    "WeekCount",
    "utcnow",
]

ContactStatus = Literal["lead", "prospect", "customer", "churned"]
InteractionType = Literal["call", "email", "meeting", "slack", "note"]
TaskStatus = Literal["open", "done"]
CONTACT_STATUSES: tuple[ContactStatus, ...] = ("lead", "prospect", "customer", "churned")
INTERACTION_TYPES: tuple[InteractionType, ...] = ("call", "email", "meeting", "slack", "note")
TASK_STATUSES: tuple[TaskStatus, ...] = ("open", "done")

# Deliberately plain: one @, a dotted domain, no spaces or control characters, no "..".
# Deliverability is not ours to judge; this catches typos and injection, not every RFC 5322
# corner. The validators match with these same patterns, which the OpenAPI publishes
# (ECMA-262 compatible), so a client's schema check and the server agree.
EMAIL_PATTERN = (
    r"^(?!.*\.\.)[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
# E.164 (+, country code, 7-15 digits in all) written with optional spaces, ( ) . and -.
PHONE_PATTERN = r"^[ ().-]*\+[ ().-]*[1-9](?:[ ().-]*[0-9]){6,14}[ ().-]*$"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
_EMAIL_RE, _PHONE_RE, _TAG_RE = (re.compile(p) for p in (EMAIL_PATTERN, PHONE_PATTERN, TAG_PATTERN))
_PHONE_SEPARATORS = re.compile(r"[ ().-]")
# Dates and times outside these years are typos or numbers read as seconds since 1970.
EARLIEST, LATEST = date(1900, 1, 1), date(2100, 12, 31)
_NUMBER_RE = re.compile(r"\s*[-+]?[0-9]+(?:\.[0-9]*)?\s*")


def _email(value: str) -> str:
    if not _EMAIL_RE.fullmatch(value):
        raise ValueError("not a valid email address (expected name@example.com)")
    local, _, domain = value.partition("@")
    return f"{local}@{domain.lower()}"


def _phone(value: str) -> str:
    if not _PHONE_RE.fullmatch(value):
        raise ValueError("not an E.164 phone number (expected + country code and digits)")
    return _PHONE_SEPARATORS.sub("", value)


def _tag(value: str) -> str:
    tag = value.strip()
    if not _TAG_RE.fullmatch(tag):
        raise ValueError("tags are 1-40 of a-z, 0-9, '_' and '-', starting with a letter or digit")
    return tag.lower()


def _tags(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))  # de-duplicated, order kept


def _not_a_number(expected: str) -> Any:
    """Pydantic reads 0 or "1700000000" as seconds since 1970; a date must be written out."""

    def check(value: Any) -> Any:
        if isinstance(value, int | float) or (
            isinstance(value, str) and _NUMBER_RE.fullmatch(value)
        ):
            raise ValueError(f"expected {expected}, not a number")
        return value

    return BeforeValidator(check)


def _plausible(value: date) -> None:
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"must be between {EARLIEST} and {LATEST}")


def _day(value: date) -> date:
    _plausible(value)
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps need a time zone (e.g. 2025-01-31T09:00:00Z)")
    value = value.astimezone(UTC)
    _plausible(value)
    return value


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("cannot be null (leave the field out to keep its value)")
    return value


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _kept() -> Any:
    """A PATCH field that may be left out (unchanged) but not sent as null."""
    return Field(default=None, json_schema_extra=_no_default)


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254),
    AfterValidator(_email),
    Field(json_schema_extra={"format": "email", "pattern": EMAIL_PATTERN}),
]
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=32),
    AfterValidator(_phone),
    Field(json_schema_extra={"pattern": PHONE_PATTERN}),
]
Tag = Annotated[
    str,
    StringConstraints(max_length=40),
    AfterValidator(_tag),
    Field(json_schema_extra={"pattern": TAG_PATTERN}),
]
Tags = Annotated[list[Tag], Field(max_length=20), AfterValidator(_tags)]
UserRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Day = Annotated[date, _not_a_number("a date as YYYY-MM-DD (e.g. 2025-01-31)"), AfterValidator(_day)]
Stamp = Annotated[
    datetime,
    _not_a_number("an ISO 8601 timestamp with a zone (e.g. 2025-01-31T09:00:00Z)"),
    AfterValidator(_aware),
]

_CONTACT_EXAMPLE: dict[str, Any] = {
    "name": "Ada Lovelace",
    "email": "ada@analytical.example",
    "phone": "+442071234567",
    "company": "Analytical Engines Ltd",
    "title": "CTO",
    "tags": ["vip", "pilot"],
    "owner": "u-42",
    "status": "prospect",
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Patch(_Request):
    def changes(self) -> dict[str, Any]:
        """The fields the client sent, as stored values."""
        return self.model_dump(include=self.model_fields_set)


class ContactCreate(_Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_CONTACT_EXAMPLE]})

    name: Name
    email: Email | None = None
    phone: Phone | None = None
    company: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    tags: Tags = Field(default_factory=list)
    owner: UserRef | None = None
    status: ContactStatus = "lead"


class ContactPatch(_Patch):
    """Only the fields sent change. ``null`` clears email, phone, company, title and owner;
    name, status and tags cannot be null (send ``[]`` to clear the tags)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "customer", "tags": ["vip"]}]},
    )

    name: Annotated[Name, BeforeValidator(_not_null)] = _kept()
    email: Email | None = None
    phone: Phone | None = None
    company: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    tags: Annotated[Tags, BeforeValidator(_not_null)] = _kept()
    owner: UserRef | None = None
    status: Annotated[ContactStatus, BeforeValidator(_not_null)] = _kept()


class Record(BaseModel):
    """What every stored record has."""

    id: str
    version: int = Field(description="Increases on every change; the ETag is derived from it.")
    created_at: datetime
    updated_at: datetime
    created_by: str


class Contact(Record):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "c7Yd0m2LqkQpZ1sV3n8e",
                    **_CONTACT_EXAMPLE,
                    "version": 1,
                    "created_at": "2025-01-31T09:00:00Z",
                    "updated_at": "2025-01-31T09:00:00Z",
                    "created_by": "u-42",
                    "deleted": False,
                    "deleted_at": None,
                }
            ]
        }
    )

    name: str
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    title: str | None = None
    tags: list[str] = Field(default_factory=list)
    owner: str | None = None
    status: ContactStatus
    deleted: bool = False
    deleted_at: datetime | None = None


class InteractionCreate(_Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "meeting",
                    "occurred_at": "2025-01-31T09:00:00Z",
                    "summary": "Demo of the pilot; wants pricing by Friday.",
                    "source_message_id": "slack:C024BE91L:1706688000.000100",
                }
            ]
        },
    )

    type: InteractionType
    occurred_at: Stamp | None = Field(default=None, description="Defaults to now.")
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    source_message_id: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
        | None
    ) = Field(default=None, description="The Slack/Gmail message this came from, if any.")


class Interaction(Record):
    contact_id: str
    type: InteractionType
    occurred_at: datetime
    summary: str
    source_message_id: str | None = None


class NoteCreate(_Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"body": "Prefers email to calls."}]}
    )

    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]


class Note(Record):
    contact_id: str
    body: str


class TaskCreate(_Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"title": "Send pricing", "due_date": "2025-02-07", "assignee": "u-42"}]
        },
    )

    title: Name
    due_date: Day | None = None
    status: TaskStatus = "open"
    assignee: UserRef | None = None


class TaskPatch(_Patch):
    """Only the fields sent change. ``null`` clears due_date and assignee; title and status
    cannot be null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "done"}]})

    title: Annotated[Name, BeforeValidator(_not_null)] = _kept()
    due_date: Day | None = None
    status: Annotated[TaskStatus, BeforeValidator(_not_null)] = _kept()
    assignee: UserRef | None = None


class Task(Record):
    contact_id: str
    title: str
    due_date: date | None = None
    status: TaskStatus
    assignee: str | None = None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class WeekCount(BaseModel):
    week_start: date = Field(description="The Monday (UTC) that starts the ISO week.")
    count: int


class Statistics(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "as_of": "2025-01-31",
                    "contacts_total": 3,
                    "contacts_deleted": 1,
                    "contacts_by_status": {"lead": 1, "prospect": 1, "customer": 1, "churned": 0},
                    "contacts_by_tag": {"vip": 2},
                    "interactions_per_week": [{"week_start": "2025-01-27", "count": 4}],
                    "open_tasks": 2,
                    "overdue_tasks": 1,
                }
            ]
        }
    )

    as_of: date
    contacts_total: int
    contacts_deleted: int
    contacts_by_status: dict[str, int]
    contacts_by_tag: dict[str, int]
    interactions_per_week: list[WeekCount]
    open_tasks: int
    overdue_tasks: int


class FieldError(BaseModel):
    field: str = Field(
        description="The body field (`email`, `tags.1`), query parameter (`as_of`) or header "
        "(`Idempotency-Key`) at fault; `body` for the request body as a whole."
    )
    message: str = Field(description="What was expected.")


class ErrorBody(BaseModel):
    """Every error response of the CRM, and of the gateway in front of it, has this shape."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "validation_failed",
                    "message": "body: invalid JSON at position 8",
                    "status": 422,
                    "fields": [{"field": "body", "message": "invalid JSON at position 8"}],
                },
                {"error": "not_found", "message": "no such resource", "status": 404},
            ]
        }
    )

    error: str = Field(
        description="A stable code: bad_request, bad_path, unauthorized, forbidden, not_found, "
        "precondition_failed, too_large, validation_failed, idempotency_key_reused, "
        "rate_limited, storage_unavailable, ..."
    )
    message: str = Field(description="For people; names the field or parameter at fault.")
    status: int = Field(ge=400, le=599, description="The HTTP status, repeated.")
    fields: list[FieldError] | None = Field(
        default=None, description="On 422 only: every bad field, parameter or header."
    )
    check: str | None = Field(
        default=None, description="On the gateway's 401 only: which token check failed."
    )


def utcnow() -> datetime:
    return datetime.now(UTC)
