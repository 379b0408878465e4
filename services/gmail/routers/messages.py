"""Messages: list and search, get (decoded), send (MIME with attachments), modify labels."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from services.common.errors import ApiError
from services.common.mail import ONE_LINE_PATTERN
from services.gmail.deps import Editor, Gmail
from services.gmail.gmailapi import Fields
from services.gmail.mime import Attachment, Draft, build_mime, decode_message, raw, recipient
from services.gmail.routers import PREFIX, GmailId, Limit, PageToken

__all__ = ["router"]

router = APIRouter(prefix=f"{PREFIX}/messages", tags=["messages"])

_SUMMARY_HEADERS = ["From", "To", "Subject", "Date"]
_LABEL = r"^[A-Za-z0-9_]{1,64}$"


def _recipient(value: str) -> str:
    recipient(value)  # ValueError: the 422 says what is wrong with it
    return value


Address = Annotated[
    str,
    Field(
        max_length=1000,
        description=(
            "An address (ada@example.com) or a display name and an address"
            " (Ada Lovelace <ada@example.com>; any script, quoted or RFC 2047 encoded words"
            " read as the name). The address is ASCII: an internationalized domain in its"
            " xn-- form; a non-ASCII mailbox (SMTPUTF8) is refused."
        ),
    ),
    AfterValidator(_recipient),
]


class NewAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255, pattern=r"^[^/\\\x00-\x1f]+$")
    content_type: str = Field(
        default="application/octet-stream", pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$"
    )
    data: str = Field(description="The content, base64.", min_length=1)

    @field_validator("data")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("expected base64") from None
        return value


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[Address] = Field(min_length=1, max_length=100)
    cc: list[Address] = Field(default_factory=list, max_length=100)
    bcc: list[Address] = Field(default_factory=list, max_length=100)
    subject: str = Field(max_length=998, pattern=ONE_LINE_PATTERN)
    text: str = Field(max_length=5_000_000)
    html: str | None = Field(default=None, max_length=5_000_000)
    attachments: list[NewAttachment] = Field(default_factory=list, max_length=50)
    thread_id: str | None = Field(default=None, pattern=r"^[0-9a-zA-Z_-]{1,64}$")
    # an RFC 5322 msg-id: printable ASCII (no control or separator characters) in <>
    in_reply_to: str | None = Field(default=None, max_length=998, pattern=r"^<[!-;=?-~]+>$")


class LabelChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[Annotated[str, Field(pattern=_LABEL)]] = Field(default_factory=list, max_length=100)
    remove: list[Annotated[str, Field(pattern=_LABEL)]] = Field(
        default_factory=list, max_length=100
    )


SEND_FIELDS: Fields = {
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "raw": "body",  # the message built from the whole body is over Gmail's payload limit
    "threadId": "thread_id",
}
"""The send body's fields Gmail's 400 on users.messages.send can be about."""


def label_field(**lists: list[str] | None) -> Callable[[str], str | None]:
    """The field (``add.0``) holding the label Gmail's ``Invalid label: X`` names."""

    def field(label: str) -> str | None:
        for name, values in lists.items():
            if values and label in values:
                return f"{name}.{values.index(label)}"
        return None

    return field


def _metadata(message_id: str) -> Callable[[Any], Any]:
    def request(users: Any) -> Any:
        return users.messages().get(
            userId="me", id=message_id, format="metadata", metadataHeaders=_SUMMARY_HEADERS
        )

    return request


@router.get("", summary="List or search messages (Gmail search syntax in q)")
async def list_messages(
    gmail: Gmail,
    q: Annotated[str | None, Query(max_length=1000)] = None,
    label: Annotated[list[str] | None, Query(max_length=20)] = None,
    limit: Limit = 20,
    page_token: PageToken = None,
) -> dict[str, Any]:
    """Each message with its From, To, Subject and Date (one metadata read per message)."""
    listed = await gmail.run(
        lambda u: u.messages().list(
            userId="me", q=q, labelIds=label, maxResults=limit, pageToken=page_token
        ),
        fields={
            "q": "q",
            "labelIds": label_field(label=label),
            "pageToken": "page_token",
            "maxResults": "limit",
        },
    )
    out = []
    for ref in listed.get("messages", []):
        meta = await gmail.run(_metadata(ref["id"]))
        summary = decode_message(meta)
        for key in ("text", "html", "attachments", "headers"):
            summary.pop(key)
        out.append(summary)
    return {
        "messages": out,
        "next_page_token": listed.get("nextPageToken"),
        "result_size_estimate": listed.get("resultSizeEstimate", 0),
    }


@router.get("/{message_id}", summary="A message with decoded headers and body")
async def get_message(gmail: Gmail, message_id: GmailId) -> dict[str, Any]:
    found = await gmail.run(
        lambda u: u.messages().get(userId="me", id=message_id, format="full"),
        fields={"id": "message_id"},
    )
    return decode_message(found)


@router.post("/send", status_code=201, summary="Send a message")
async def send(_: Editor, gmail: Gmail, body: NewMessage, request: Request) -> dict[str, Any]:
    draft = Draft(
        to=tuple(body.to),
        cc=tuple(body.cc),
        bcc=tuple(body.bcc),
        subject=body.subject,
        text=body.text,
        html=body.html,
        attachments=tuple(
            Attachment(a.filename, a.content_type, base64.b64decode(a.data))
            for a in body.attachments
        ),
        in_reply_to=body.in_reply_to,
    )
    encoded = raw(build_mime(draft))
    limit = request.app.state.settings.max_send_bytes
    if len(encoded) * 3 // 4 > limit:
        raise ApiError(413, f"the message is over {limit} bytes with its attachments")
    message: dict[str, Any] = {"raw": encoded}
    if body.thread_id:
        message["threadId"] = body.thread_id
    sent = await gmail.run(
        lambda u: u.messages().send(userId="me", body=message), fields=SEND_FIELDS
    )
    return {
        "id": sent.get("id"),
        "threadId": sent.get("threadId"),
        "labelIds": sent.get("labelIds"),
    }


@router.post("/{message_id}/modify", summary="Add and remove labels")
async def modify(_: Editor, gmail: Gmail, message_id: GmailId, body: LabelChange) -> dict[str, Any]:
    if not body.add and not body.remove:
        raise ApiError(
            422,
            "add, remove: name at least one label",
            fields=[{"field": "add", "message": "add or remove at least one label"}],
        )
    changed = await gmail.run(
        lambda u: u.messages().modify(
            userId="me",
            id=message_id,
            body={"addLabelIds": body.add, "removeLabelIds": body.remove},
        ),
        fields={"id": "message_id", "labelIds": label_field(add=body.add, remove=body.remove)},
    )
    return {"id": changed.get("id"), "labelIds": changed.get("labelIds", [])}
