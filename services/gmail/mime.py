"""Pure: MIME messages to send (standard library ``email``) and Gmail's message resources
decoded for clients (headers by name, text and HTML bodies as strings, attachments listed).

No I/O. Gmail wants the whole RFC 5322 message base64url-encoded in ``raw``.

A recipient is ``local@domain`` or ``Display Name <local@domain>`` (:func:`recipient`). The
display name is any text of one line, in any script; quoted (``"Doe, John"``) or in RFC 2047
encoded words (``=?utf-8?b?...?=``, as a received message's header may hold it) it is read as
the name it stands for. The address is :data:`services.common.mail.EMAIL_PATTERN`'s: ASCII,
because the message is 7-bit RFC 5322 and an addr-spec cannot hold an encoded word, so a
non-ASCII mailbox (RFC 6531 SMTPUTF8) cannot be written; an internationalized domain goes in
its ``xn--`` form. To, Cc and Bcc are written here, not by the ``email`` package's folder,
which on Python 3.11 drops the quotes of a long quoted display name (``"Doe, John..."`` folded
became two recipients) and splits encoded words mid-character: a name that is not plain ASCII
words is written as UTF-8 B encoded words, folded between words.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import re
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from services.common.mail import EMAIL_PATTERN

__all__ = [
    "Attachment",
    "Draft",
    "Recipient",
    "address_list",
    "build_mime",
    "decode_message",
    "raw",
    "recipient",
]

NAME_LIMIT = 200
"""Characters of a display name (after its quotes or encoded words are read)."""
_ADDRESS = re.compile(EMAIL_PATTERN)
_NAMED = re.compile(r"(?P<name>[^<>]*)<(?P<address>[^<>]*)>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_LINE = 78
_POLICY = email.policy.default.clone(refold_source="none")
"""Headers set with ``set_raw`` (To, Cc, Bcc: folded here) are written as they are."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str = ""


def _name(text: str) -> str:
    """The display name a client wrote, read: quotes and encoded words undone, whitespace
    runs one space."""
    name = text.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    elif "=?" in name:
        try:
            name = str(make_header(decode_header(name)))
        except (LookupError, UnicodeError, ValueError, HeaderParseError):
            raise ValueError(
                "the display name holds an encoded word that does not decode"
            ) from None
    if _CONTROL.search(name):  # an encoded word's, or a quoted-pair's
        raise ValueError("the display name holds a control character or line break")
    name = " ".join(name.split())
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the display name is not valid Unicode (a lone surrogate)") from None
    if len(name) > NAME_LIMIT:
        raise ValueError(f"the display name is over {NAME_LIMIT} characters")
    return name


def recipient(text: str) -> Recipient:
    """``local@domain`` or ``Name <local@domain>`` read, or ValueError saying what is wrong
    (the API's 422 for the field)."""
    if _CONTROL.search(text):
        raise ValueError("control characters and line breaks are not allowed")
    named = _NAMED.fullmatch(text.strip())
    address, name = (named["address"].strip(), _name(named["name"])) if named else (text, "")
    if len(address) <= 254 and _ADDRESS.fullmatch(address):
        return Recipient(address, name)
    local, at, domain = address.rpartition("@")
    if at and not local.isascii():
        raise ValueError(
            "the mailbox before @ must be ASCII: a non-ASCII mailbox (SMTPUTF8) cannot be sent"
        )
    if at and not domain.isascii():
        raise ValueError("an internationalized domain goes in its ASCII form (xn--...)")
    raise ValueError("expected an email address, local@domain or Name <local@domain>")


def _words(name: str) -> list[str]:
    """The display name as header words: ASCII words as they are, an ASCII name with other
    characters quoted, any other name as UTF-8 B encoded words (at most 75 characters each,
    split between characters: a reader joins adjacent encoded words, RFC 2047 6.2)."""
    if name.isascii() and "=?" not in name:
        words = name.split(" ")
        if all(_ATOM.fullmatch(w) for w in words):
            return words
        return ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    chunks, chunk = [], b""
    for char in name:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > 45:  # 60 base64 characters: a 72-character encoded word
            chunks.append(chunk)
            chunk = b""
        chunk += data
    chunks.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(c).decode()}?=" for c in chunks]


def address_list(header: str, recipients: list[Recipient]) -> str:
    """The header's value: the recipients comma-separated, folded between words at 78
    characters (a word longer than a line gets a line of its own)."""
    tokens: list[str] = []
    for i, r in enumerate(recipients):
        mailbox = [*_words(r.name), f"<{r.address}>"] if r.name else [r.address]
        if i < len(recipients) - 1:
            mailbox[-1] += ","
        tokens += mailbox
    lines, line, used = [], "", len(header) + 1
    for token in tokens:
        if line and used + 1 + len(token) > _LINE:
            lines.append(line)
            line, used = "", 0
        line += (" " if lines or line else "") + token
        used += 1 + len(token)
    lines.append(line)
    return "\n".join(lines)


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
    """The message; ValueError when a recipient does not read (:func:`recipient`)."""
    msg = EmailMessage(policy=_POLICY)
    if draft.sender:
        msg["From"] = draft.sender
    for header, written in (("To", draft.to), ("Cc", draft.cc), ("Bcc", draft.bcc)):
        if written:
            msg.set_raw(header, address_list(header, [recipient(r) for r in written]))
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


def _text(data: bytes, charset: str) -> str:
    """A body part's bytes as text by its charset; as UTF-8 when Python does not know the
    charset or it is no text encoding (``x-nonesuch``, ``base64``; ``idna`` refuses to
    replace): Gmail stores such a message and reading it is not a 500. Bytes the charset
    cannot decode are replaced."""
    try:
        return data.decode(charset, errors="replace")
    except (LookupError, ValueError):  # unknown, not a text codec, or a NUL in the name
        return data.decode("utf-8", errors="replace")


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
            out[key] = _text(_data(body), _charset(part))
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
