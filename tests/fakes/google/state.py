"""What the fake Gmail holds: mailboxes (messages as raw RFC 5322 bytes, labels, a history
log) and how the API methods answer. Pure data, guarded by one lock in the server.

Errors have Google's JSON shape, ``{"error": {"code", "message", "errors": [{"message",
"domain", "reason"}], "status"}}``: 401 UNAUTHENTICATED (``authError``), 403 PERMISSION_DENIED
(``forbidden``: another user's mailbox; ``insufficientPermissions``: a scope missing), 404
NOT_FOUND (``notFound``; also a ``startHistoryId`` older than the history kept), 400
INVALID_ARGUMENT (``invalidArgument``; ``Invalid To header`` for a recipient header that does
not parse, ``Invalid label: X``, ``Invalid pageToken``; ``badRequest`` for a body over the
server's ``payload_limit``), 409 ALREADY_EXISTS (a label name), 429 RESOURCE_EXHAUSTED
(``rateLimitExceeded``), 500 INTERNAL (``backendError``, "Internal error encountered.": an
exception in the fake itself, its traceback logged). Lists page with ``maxResults`` and an
opaque ``pageToken``; ``nextPageToken`` is absent on the last page. Search does not validate headers: one the parser
cannot read matches nothing, and ``messages.get`` shows it as written. Nor does it refuse a body
whose Content-Type does not parse (read as text/plain) or whose charset Python does not know
(read as UTF-8, undecodable bytes replaced): Gmail stores and searches such mail.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import itertools
import re
import time
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from typing import Any

__all__ = ["Mailbox", "Reply", "StoredMessage", "google_error"]

Reply = tuple[int, dict[str, Any], dict[str, str]]

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
SYSTEM_LABELS = ("INBOX", "SENT", "UNREAD", "STARRED", "IMPORTANT", "TRASH", "SPAM", "DRAFT")


def google_error(code: int, message: str, reason: str, **extra: str) -> Reply:
    err = {"message": message, "domain": "global", "reason": reason, **extra}
    body = {"error": {"code": code, "message": message, "errors": [err], "status": _STATUS[code]}}
    return code, body, {}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def page_token(offset: int) -> str:
    return b64url(f"o:{offset}".encode()).rstrip("=")


def page_offset(token: str) -> int | None:
    try:
        kind, _, n = (
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(":")
        )
        return int(n) if kind == "o" and int(n) >= 0 else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    labels: set[str]
    internal_date: int
    history_id: int

    @property
    def parsed(self) -> Message:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


@dataclass
class Mailbox:
    address: str
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            name: {"id": name, "name": name, "type": "system"} for name in SYSTEM_LABELS
        }
    )
    history: list[dict[str, Any]] = field(default_factory=list)
    history_id: int = 1000
    oldest_history: int = 1000
    """A startHistoryId below this is 404 (Gmail keeps about a week)."""
    sent: list[EmailMessage] = field(default_factory=list)
    """Every message users.messages.send took, parsed back."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(0x18C0000000))

    # -- writes (each one is a history record) ----------------------------------------------

    def _record(self, kind: str, msg: StoredMessage, label_ids: list[str] | None = None) -> None:
        self.history_id += 1
        msg.history_id = self.history_id
        ref = {"id": msg.id, "threadId": msg.thread_id, "labelIds": sorted(msg.labels)}
        entry: dict[str, Any] = {"id": str(self.history_id), "messages": [ref]}
        item: dict[str, Any] = {"message": ref}
        if label_ids is not None:
            item["labelIds"] = label_ids
        entry[kind] = [item]
        self.history.append(entry)

    def deliver(
        self,
        raw: bytes,
        *,
        labels: tuple[str, ...] = ("INBOX", "UNREAD"),
        thread: str | None = None,
    ) -> StoredMessage:
        mid = f"{next(self._ids):x}"
        msg = StoredMessage(mid, thread or mid, raw, set(labels), int(time.time() * 1000), 0)
        self.messages[mid] = msg
        self._record("messagesAdded", msg)
        return msg

    def delete(self, mid: str) -> None:
        msg = self.messages.pop(mid)
        self._record("messagesDeleted", msg)

    def relabel(self, msg: StoredMessage, add: list[str], remove: list[str]) -> None:
        added = [x for x in add if x not in msg.labels]
        removed = [x for x in remove if x in msg.labels]
        msg.labels |= set(added)
        msg.labels -= set(removed)
        if added:
            self._record("labelsAdded", msg, added)
        if removed:
            self._record("labelsRemoved", msg, removed)

    def forget_history(self) -> None:
        """History before now is gone (a startHistoryId from before is 404)."""
        self.oldest_history = self.history_id
        self.history.clear()

    # -- searching ----------------------------------------------------------------------------

    def matching(self, q: str, label_ids: list[str], spam_trash: bool) -> list[StoredMessage]:
        found = sorted(self.messages.values(), key=lambda m: (m.internal_date, m.id), reverse=True)
        if not spam_trash:
            found = [m for m in found if not m.labels & {"SPAM", "TRASH"}]
        found = [m for m in found if set(label_ids) <= m.labels]
        for term in q.split():
            found = [m for m in found if _matches(m, term)]
        return found


def _text_of(msg: Message) -> str:
    parts = []
    for part in msg.walk():
        if part.get_content_maintype() == "text" and not part.get_filename():
            parts.append(_decoded_text(part))
    return " ".join(parts)


def _decoded_text(part: Message) -> str:
    """A text part's content by its charset; as UTF-8 when it names none that reads (no
    Content-Type that parses, ``charset=""``, RFC 2231 bytes that are no name) or one Python
    does not know or that is no text encoding (``x-nonesuch``, ``base64``; ``idna`` refuses
    to replace): Gmail keeps, searches and shows such a message. Bytes the charset cannot
    decode are replaced (``get_content`` raised LookupError on an unknown charset: a 500)."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        return data.decode(part.get_content_charset() or "utf-8", errors="replace")
    except (LookupError, ValueError):  # unknown, not a text codec, or a NUL in the name
        return data.decode("utf-8", errors="replace")


def _header(msg: Message, name: str) -> str:
    """A header's value for search: "" when the standard library's parser cannot read it
    (``carol@`` makes it raise). Gmail's search does not validate headers: such a message is
    not refused, its value just matches nothing."""
    try:
        return str(msg.get(name, ""))
    except Exception:  # IndexError, AttributeError...: whatever the header parser raises
        return ""


def _header_fields(part: Message) -> list[dict[str, str]]:
    """The part's headers as Gmail shows them: decoded, or as written (unfolded) when the
    parser cannot read the value; Gmail keeps and shows whatever headers it received."""
    out = []
    for name, raw in part.raw_items():
        try:
            value = str(part.policy.header_fetch_parse(name, raw))
        except Exception:  # whatever the header parser raises on it
            value = re.sub(r"\r?\n(?=[ \t])", "", str(raw))
        out.append({"name": name, "value": value})
    return out


def _matches(msg: StoredMessage, term: str) -> bool:
    parsed = msg.parsed
    key, sep, value = term.partition(":")
    value = value.lower()
    if sep and key in ("from", "to", "cc", "subject"):
        return value in _header(parsed, key).lower()
    if sep and key in ("label", "in"):
        return value.upper() in msg.labels or value in {x.lower() for x in msg.labels}
    if sep and key == "is":
        return {
            "unread": "UNREAD" in msg.labels,
            "read": "UNREAD" not in msg.labels,
            "starred": "STARRED" in msg.labels,
        }.get(value, False)
    haystack = " ".join(_header(parsed, h) for h in ("from", "to", "subject"))
    return term.lower() in (haystack + " " + _text_of(parsed)).lower()


def message_resource(msg: StoredMessage, fmt: str, headers: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": msg.id,
        "threadId": msg.thread_id,
        "labelIds": sorted(msg.labels),
        "historyId": str(msg.history_id),
        "internalDate": str(msg.internal_date),
        "sizeEstimate": len(msg.raw),
        "snippet": re.sub(r"\s+", " ", _text_of(msg.parsed))[:200].strip(),
    }
    if fmt == "minimal":
        return out
    if fmt == "raw":
        return {**out, "raw": b64url(msg.raw)}
    payload = _part(msg.parsed, "", msg.id, full=fmt == "full")
    if fmt == "metadata":
        wanted = {h.lower() for h in headers}
        kept = [h for h in payload["headers"] if not wanted or h["name"].lower() in wanted]
        payload = {"mimeType": payload["mimeType"], "headers": kept}
    return {**out, "payload": payload}


def _part(part: Message, part_id: str, mid: str, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": _header_fields(part),
    }
    if part.is_multipart():
        subparts = part.get_payload()
        assert isinstance(subparts, list)
        prefix = f"{part_id}." if part_id else ""
        out["body"] = {"size": 0}
        out["parts"] = [_part(p, f"{prefix}{i}", mid, full=full) for i, p in enumerate(subparts)]
        return out
    data = part.get_payload(decode=True) or b""
    assert isinstance(data, bytes)
    if out["filename"]:
        out["body"] = {"size": len(data), "attachmentId": f"{mid}.{part_id or '0'}"}
    else:
        out["body"] = {"size": len(data), "data": b64url(data)} if full else {"size": len(data)}
    return out
