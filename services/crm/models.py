"""The CRM's API models: what clients send and what they get back.

Request models reject unknown fields (``extra="forbid"``) and validate emails, E.164 phone
numbers, lengths and enum values, so every error is a 422 that names the field. Response
models carry the server's fields (``id``, ``version``, timestamps). Pure Pydantic, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "CONTACT_STATUSES",
    "INTERACTION_TYPES",
    "TASK_STATUSES",
    "Contact",
    "ContactCreate",
    "ContactPatch",
    "ContactStatus",
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

# Deliberately plain: one @, a dotted domain, no spaces or control characters. Deliverability
# is not ours to judge; this catches typos and injection, not every RFC 5322 corner.
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@"
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def _email(value: str) -> str:
    if not _EMAIL_RE.match(value) or ".." in value.split("@", 1)[0]:
        raise ValueError("not a valid email address (expected name@example.com)")
    local, _, domain = value.partition("@")
    return f"{local}@{domain.lower()}"


def _phone(value: str) -> str:
    compact = re.sub(r"[ ()\-.]", "", value)
    if not _E164_RE.match(compact):
        raise ValueError("not an E.164 phone number (expected + country code and digits)")
    return compact


def _tag(value: str) -> str:
    tag = value.strip().lower()
    if not _TAG_RE.match(tag):
        raise ValueError("tags are 1-40 of a-z, 0-9, '_' and '-', starting with a letter or digit")
    return tag


def _tags(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))  # de-duplicated, order kept


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps need a time zone (e.g. 2025-01-31T09:00:00Z)")
    return value.astimezone(UTC)


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_email)
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=32), AfterValidator(_phone)
]
Tag = Annotated[str, AfterValidator(_tag)]
Tags = Annotated[list[Tag], Field(max_length=20), AfterValidator(_tags)]
UserRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Stamp = Annotated[datetime, AfterValidator(_aware)]

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


class ContactPatch(_Request):
    """Only the fields sent change; ``null`` clears an optional field."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "customer", "tags": ["vip"]}]},
    )

    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    company: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    tags: Tags | None = None
    owner: UserRef | None = None
    status: ContactStatus | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, as stored values; ValueError for a null that can't be."""
        out = self.model_dump(include=self.model_fields_set)
        for required in ("name", "status", "tags"):
            if required in out and out[required] is None:
                raise ValueError(required)
        return out


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
    due_date: date | None = None
    status: TaskStatus = "open"
    assignee: UserRef | None = None


class TaskPatch(_Request):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "done"}]})

    title: Name | None = None
    due_date: date | None = None
    status: TaskStatus | None = None
    assignee: UserRef | None = None

    def changes(self) -> dict[str, Any]:
        out = self.model_dump(include=self.model_fields_set)
        for required in ("title", "status"):
            if required in out and out[required] is None:
                raise ValueError(required)
        return out


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


def utcnow() -> datetime:
    return datetime.now(UTC)
