"""Pure: MIME messages to send (standard library ``email``) and Gmail's message resources
decoded for clients (headers by name, text and HTML bodies as strings, attachments listed).

No I/O. Gmail wants the whole RFC 5322 message base64url-encoded in ``raw``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

__all__ = ["Attachment", "Draft", "build_mime", "decode_message", "raw"]


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Draft:
    to: tuple[str, ...]
    subject: str
    text: str
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    in_reply_to: str | None = None
    """Message-ID of the message answered (sets In-Reply-To and References)."""
    sender: str | None = None


def build_mime(draft: Draft) -> EmailMessage:
    msg = EmailMessage()
    if draft.sender:
        msg["From"] = draft.sender
    msg["To"] = ", ".join(draft.to)
    if draft.cc:
        msg["Cc"] = ", ".join(draft.cc)
    if draft.bcc:
        msg["Bcc"] = ", ".join(draft.bcc)
    msg["Subject"] = draft.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="xynergy.local")
    if draft.in_reply_to:
        msg["In-Reply-To"] = draft.in_reply_to
        msg["References"] = draft.in_reply_to
    msg.set_content(draft.text)
    if draft.html is not None:
        msg.add_alternative(draft.html, subtype="html")
    for item in draft.attachments:
        maintype, _, subtype = item.content_type.partition("/")
        msg.add_attachment(item.data, maintype=maintype, subtype=subtype, filename=item.filename)
    return msg


def raw(msg: EmailMessage) -> str:
    """The message as Gmail's ``raw`` field."""
    return base64.urlsafe_b64encode(msg.as_bytes()).decode()


def _data(body: dict[str, Any]) -> bytes:
    text = str(body.get("data") or "")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""


def _charset(part: dict[str, Any]) -> str:
    for header in part.get("headers") or []:
        if header.get("name", "").lower() == "content-type":
            for param in str(header.get("value", "")).split(";")[1:]:
                key, _, value = param.strip().partition("=")
                if key.lower() == "charset":
                    return value.strip('"') or "utf-8"
    return "utf-8"


def _walk(part: dict[str, Any], out: dict[str, Any]) -> None:
    mime = str(part.get("mimeType") or "")
    body = part.get("body") or {}
    if part.get("filename"):
        out["attachments"].append(
            {
                "filename": part["filename"],
                "mimeType": mime,
                "size": body.get("size", 0),
                "attachmentId": body.get("attachmentId"),
            }
        )
    elif mime in ("text/plain", "text/html") and "data" in body:
        key = "text" if mime == "text/plain" else "html"
        if out[key] is None:
            out[key] = _data(body).decode(_charset(part), errors="replace")
    for sub in part.get("parts") or []:
        _walk(sub, out)


def decode_message(resource: dict[str, Any]) -> dict[str, Any]:
    """A Gmail message resource (format ``full`` or ``metadata``) for clients."""
    payload = resource.get("payload") or {}
    headers: dict[str, str] = {}
    for header in payload.get("headers") or []:
        headers.setdefault(str(header.get("name", "")).lower(), str(header.get("value", "")))
    out: dict[str, Any] = {
        "id": resource.get("id"),
        "threadId": resource.get("threadId"),
        "labelIds": resource.get("labelIds", []),
        "snippet": resource.get("snippet", ""),
        "internalDate": resource.get("internalDate"),
        "historyId": resource.get("historyId"),
        "from": headers.get("from"),
        "to": headers.get("to"),
        "cc": headers.get("cc"),
        "subject": headers.get("subject"),
        "date": headers.get("date"),
        "messageId": headers.get("message-id"),
        "headers": headers,
        "text": None,
        "html": None,
        "attachments": [],
    }
    _walk(payload, out)
    return out
