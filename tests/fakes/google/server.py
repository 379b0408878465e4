"""HTTP front of the fake Gmail API (``gmail/v1/users/{userId}/...`` under any root) on
127.0.0.1, in a thread of the test process or as a script
(``PYTHONPATH=tests python -m fakes.google --port 8088``).

Driven through google-api-python-client: ``build_from_document(doc, http=...,
client_options={"api_endpoint": fake.endpoint + "/"})``. Methods: messages list/get/send/
modify, threads list/get, labels list/create, history list, getProfile. Test controls:
``mailbox(address)``, ``grant(token, address, scopes)``, ``fail(method, *statuses)``,
``payload_limit``, ``calls`` per method, ``requests`` (method, path, query) in order.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import email
import email.policy
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.errors import InvalidHeaderDefect
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.serving import JsonHandler, ThreadedFake

from .state import Mailbox, Reply, google_error, message_resource, page_offset, page_token

__all__ = ["GMAIL_SCOPES", "FakeGmail"]

GMAIL_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/gmail.readonly",
        "https://www.googleapis.com/auth/gmail.send",
        "https://www.googleapis.com/auth/gmail.modify",
    }
)
_AS_RECEIVED = email.policy.default.clone(refold_source="none")
_READ = "https://www.googleapis.com/auth/gmail.readonly"
_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
_SEND = "https://www.googleapis.com/auth/gmail.send"

_ROUTES: list[tuple[str, re.Pattern[str], str, tuple[str, ...]]] = [
    (m, re.compile(r"^/gmail/v1/users/(?P<user>[^/]+)" + p + "$"), name, scopes)
    for m, p, name, scopes in (
        ("GET", "/profile", "getProfile", (_READ, _MODIFY)),
        ("GET", "/messages", "messages.list", (_READ, _MODIFY)),
        ("GET", r"/messages/(?P<id>[^/]+)", "messages.get", (_READ, _MODIFY)),
        ("POST", "/messages/send", "messages.send", (_SEND, _MODIFY)),
        ("POST", r"/messages/(?P<id>[^/]+)/modify", "messages.modify", (_MODIFY,)),
        ("GET", "/threads", "threads.list", (_READ, _MODIFY)),
        ("GET", r"/threads/(?P<id>[^/]+)", "threads.get", (_READ, _MODIFY)),
        ("GET", "/labels", "labels.list", (_READ, _MODIFY)),
        ("POST", "/labels", "labels.create", (_MODIFY,)),
        ("GET", "/history", "history.list", (_READ, _MODIFY)),
    )
]


@dataclass(frozen=True)
class _Call:
    box: Mailbox
    query: dict[str, list[str]]
    body: dict[str, Any]
    id: str | None

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]


class FakeGmail(ThreadedFake):
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.boxes: dict[str, Mailbox] = {}
        self.tokens: dict[str, tuple[str, frozenset[str]]] = {}
        self.token_check: Callable[[str], str | None] | None = None
        """Consulted for unknown tokens: the address they open (e.g. the fake OAuth's)."""
        self.calls: collections.Counter[str] = collections.Counter()
        self.requests: list[tuple[str, str, str]] = []
        self.faults: dict[str, list[int]] = {}
        self.payload_limit: int | None = None
        """A request body over this many bytes is Google's 400 "Request payload size exceeds
        the limit: N bytes." (``badRequest``), as its frontends answer a body too large for a
        non-upload call; the limit is undocumented, so None (no limit) unless a test sets it."""
        self.lock = threading.Lock()
        super().__init__(_handler(self), host=host, port=port)

    def mailbox(self, address: str) -> Mailbox:
        with self.lock:
            return self.boxes.setdefault(address, Mailbox(address))

    def grant(self, token: str, address: str, scopes: Iterable[str] = GMAIL_SCOPES) -> Mailbox:
        box = self.mailbox(address)
        with self.lock:
            self.tokens[token] = (address, frozenset(scopes))
        return box

    def fail(self, method: str, *statuses: int) -> None:
        with self.lock:
            self.faults.setdefault(method, []).extend(statuses)

    # -- dispatch -----------------------------------------------------------------------------

    def handle(self, method: str, url: str, raw: bytes, auth: str | None) -> Reply:
        parts = urlsplit(url)
        with self.lock:
            self.requests.append((method, parts.path, parts.query))
            for verb, pattern, name, scopes in _ROUTES:
                m = pattern.match(parts.path)
                if verb == method and m:
                    return self._call(name, scopes, m.groupdict(), parts.query, raw, auth)
        return google_error(404, "Not Found", "notFound")

    def _call(
        self,
        name: str,
        scopes: tuple[str, ...],
        path: dict[str, str],
        query: str,
        raw: bytes,
        auth: str | None,
    ) -> Reply:
        self.calls[name] += 1
        queued = self.faults.get(name)
        if queued:
            code = queued.pop(0)
            reason = "rateLimitExceeded" if code == 429 else "backendError"
            reply = google_error(code, "Simulated failure", reason)
            return (*reply[:2], {"Retry-After": "1"} if code == 429 else {})
        token = auth[7:] if auth and auth.lower().startswith("bearer ") else ""
        grant = self.tokens.get(token)
        if grant is None and token and self.token_check is not None:
            address = self.token_check(token)
            grant = (address, GMAIL_SCOPES) if address else None
        if grant is None:
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                "authError",
                location="Authorization",
                locationType="header",
            )
        address, granted = grant
        if path["user"] not in ("me", address):
            return google_error(403, f"Delegation denied for {address}", "forbidden")
        if not granted & set(scopes):
            return google_error(
                403, "Request had insufficient authentication scopes.", "insufficientPermissions"
            )
        if self.payload_limit is not None and len(raw) > self.payload_limit:
            message = f"Request payload size exceeds the limit: {self.payload_limit} bytes."
            return google_error(400, message, "badRequest")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return google_error(400, "Invalid JSON payload received.", "parseError")
        box = self.boxes.setdefault(address, Mailbox(address))
        call = _Call(box, parse_qs(query), body, path.get("id"))
        return _METHODS[name](self, call)

    # -- methods ------------------------------------------------------------------------------

    def profile(self, c: _Call) -> Reply:
        box = c.box
        threads = {m.thread_id for m in box.messages.values()}
        return (
            200,
            {
                "emailAddress": box.address,
                "messagesTotal": len(box.messages),
                "threadsTotal": len(threads),
                "historyId": str(box.history_id),
            },
            {},
        )

    def _paged(self, c: _Call, items: list[Any], key: str, default: int = 100) -> Reply:
        try:
            size = int(c.arg("maxResults", str(default)))
        except ValueError:
            return google_error(400, "Invalid value for maxResults", "invalidArgument")
        size = max(1, min(size, 500))
        start = 0
        if c.arg("pageToken"):
            found = page_offset(c.arg("pageToken"))
            if found is None:
                return google_error(400, "Invalid pageToken", "invalidArgument")
            start = found
        chunk = items[start : start + size]
        body: dict[str, Any] = {"resultSizeEstimate": len(items)}
        if chunk:
            body[key] = chunk
        if start + size < len(items):
            body["nextPageToken"] = page_token(start + size)
        return 200, body, {}

    def messages_list(self, c: _Call) -> Reply:
        spam = c.arg("includeSpamTrash") == "true"
        found = c.box.matching(c.arg("q"), c.query.get("labelIds", []), spam)
        return self._paged(c, [{"id": m.id, "threadId": m.thread_id} for m in found], "messages")

    def messages_get(self, c: _Call) -> Reply:
        msg = c.box.messages.get(c.id or "")
        if msg is None:
            return google_error(404, "Requested entity was not found.", "notFound")
        fmt = c.arg("format", "full")
        if fmt not in ("full", "metadata", "minimal", "raw"):
            return google_error(400, f"Invalid value for format: {fmt}", "invalidArgument")
        return 200, message_resource(msg, fmt, c.query.get("metadataHeaders", [])), {}

    def messages_send(self, c: _Call) -> Reply:
        try:
            raw = base64.urlsafe_b64decode(str(c.body.get("raw", "")) + "==")
        except (binascii.Error, ValueError):
            return google_error(400, "Invalid value for ByteString", "invalidArgument")
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        unreadable = _unreadable_recipients(parsed)
        if unreadable:
            return google_error(400, f"Invalid {unreadable} header", "invalidArgument")
        if not any(parsed.get(h) for h in ("to", "cc", "bcc")):
            return google_error(400, "Recipient address required", "invalidArgument")
        assert isinstance(parsed, EmailMessage)
        c.box.sent.append(parsed)
        # Gmail keeps the headers as they came, less Bcc (recipients do not get it): written
        # back without refolding, which on Python 3.11 dropped the quotes of a long quoted
        # display name ("Doe, John, ..." became two recipients in the stored copy)
        kept = email.message_from_bytes(raw, policy=_AS_RECEIVED)
        del kept["Bcc"]
        thread = c.body.get("threadId")
        if thread and not any(m.thread_id == thread for m in c.box.messages.values()):
            return google_error(404, "Requested entity was not found.", "notFound")
        msg = c.box.deliver(kept.as_bytes(), labels=("SENT",), thread=thread)
        return 200, {"id": msg.id, "threadId": msg.thread_id, "labelIds": ["SENT"]}, {}

    def messages_modify(self, c: _Call) -> Reply:
        msg = c.box.messages.get(c.id or "")
        if msg is None:
            return google_error(404, "Requested entity was not found.", "notFound")
        add, remove = c.body.get("addLabelIds") or [], c.body.get("removeLabelIds") or []
        for label in [*add, *remove]:
            if label not in c.box.labels:
                return google_error(400, f"Invalid label: {label}", "invalidArgument")
        c.box.relabel(msg, add, remove)
        return 200, message_resource(msg, "minimal", []), {}

    def threads_list(self, c: _Call) -> Reply:
        found = c.box.matching(c.arg("q"), c.query.get("labelIds", []), False)
        threads: dict[str, dict[str, Any]] = {}
        for m in found:
            threads.setdefault(m.thread_id, message_resource(m, "minimal", []))
        items = [
            {"id": tid, "snippet": m["snippet"], "historyId": m["historyId"]}
            for tid, m in threads.items()
        ]
        return self._paged(c, items, "threads")

    def threads_get(self, c: _Call) -> Reply:
        msgs = sorted(
            (m for m in c.box.messages.values() if m.thread_id == c.id),
            key=lambda m: (m.internal_date, m.id),
        )
        if not msgs:
            return google_error(404, "Requested entity was not found.", "notFound")
        fmt = c.arg("format", "full")
        out = [message_resource(m, fmt, c.query.get("metadataHeaders", [])) for m in msgs]
        return 200, {"id": c.id, "historyId": out[-1]["historyId"], "messages": out}, {}

    def labels_list(self, c: _Call) -> Reply:
        return 200, {"labels": list(c.box.labels.values())}, {}

    def labels_create(self, c: _Call) -> Reply:
        name = str(c.body.get("name") or "").strip()
        if not name:
            return google_error(400, "Invalid label name", "invalidArgument")
        if any(lab["name"].lower() == name.lower() for lab in c.box.labels.values()):
            return google_error(409, "Label name exists or conflicts", "duplicate")
        label = {"id": f"Label_{len(c.box.labels)}", "name": name, "type": "user"}
        c.box.labels[label["id"]] = label
        return 200, label, {}

    def history_list(self, c: _Call) -> Reply:
        start = c.arg("startHistoryId")
        if not start.isdigit():
            return google_error(400, "Invalid startHistoryId", "invalidArgument")
        if int(start) < c.box.oldest_history:
            return google_error(404, "Requested entity was not found.", "notFound")
        types = set(c.query.get("historyTypes", []))
        label = c.arg("labelId")
        records = []
        for rec in c.box.history:
            if int(rec["id"]) <= int(start):
                continue
            kinds = {k for k in rec if k not in ("id", "messages")}
            if types and not kinds & types:
                continue
            if label and label not in rec["messages"][0]["labelIds"]:
                continue
            records.append(rec)
        status, body, headers = self._paged(c, records, "history")
        if status == 200:
            body.pop("resultSizeEstimate", None)
            body["historyId"] = str(c.box.history_id)
        return status, body, headers


def _unreadable_recipients(parsed: EmailMessage) -> str | None:
    """The first of To, Cc and Bcc that Gmail answers with 400 "Invalid <name> header": one
    the header parser cannot read (``carol@`` makes the standard library raise), reads with
    an invalid-header defect, or holds an address that is not ``local@domain``. Deliberately
    not one with a display name in any script (RFC 2047 encoded words or raw UTF-8) or a
    domain in its xn-- form: Gmail takes those, and shows and searches the name decoded."""
    for name in ("To", "Cc", "Bcc"):
        try:
            header = parsed.get(name)
        except Exception:  # whatever the parser raises on it, Gmail could not parse it either
            return name
        if header is None:
            continue
        if any(isinstance(d, InvalidHeaderDefect) for d in header.defects) or any(
            not a.username or not a.domain for a in header.addresses
        ):
            return name
    return None


_METHODS: dict[str, Callable[[FakeGmail, _Call], Reply]] = {
    "getProfile": FakeGmail.profile,
    "messages.list": FakeGmail.messages_list,
    "messages.get": FakeGmail.messages_get,
    "messages.send": FakeGmail.messages_send,
    "messages.modify": FakeGmail.messages_modify,
    "threads.list": FakeGmail.threads_list,
    "threads.get": FakeGmail.threads_get,
    "labels.list": FakeGmail.labels_list,
    "labels.create": FakeGmail.labels_create,
    "history.list": FakeGmail.history_list,
}


def _handler(fake: FakeGmail) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def answer(self, raw: bytes) -> None:
            auth = self.headers.get("Authorization")
            self.send_json(*fake.handle(self.command, self.path, raw, auth))

        def internal_error(self, exc: Exception) -> Reply:
            return google_error(500, "Internal error encountered.", "backendError")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="fake Gmail API")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--token", action="append", default=[], help="token=address to accept")
    args = parser.parse_args()
    fake = FakeGmail(port=args.port)
    for entry in args.token:
        token, _, address = entry.partition("=")
        fake.grant(token, address or "someone@example.com")
    print(f"fake Gmail API on {fake.endpoint}/", flush=True)
    fake.serve_forever()
