"""Gmail's 400 is the service's 422 with Gmail's message, naming the request field Gmail's
message is about (``fields``), or saying it names none (``fields: []``); never a token."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httplib2
import pytest
from fakes.google import FakeGmail, Mailbox
from fakes.google import server as gmail_server
from fakes.google.state import google_error
from fakes.slack.tokens import StaticTokens
from fastapi.testclient import TestClient
from googleapiclient.errors import HttpError

from services.gmail.gmailapi import Fields, from_http_error
from services.gmail.routers.messages import SEND_FIELDS, label_field

Headers = Callable[..., dict[str, str]]
NAMES_NONE = "(names no field of this request)"


def _http_error(status: int, message: str | None, reason: str = "invalidArgument") -> HttpError:
    if message is None:  # a frontend's HTML page, no JSON error
        content = b"<HTML><TITLE>Bad Request</TITLE></HTML>"
    else:
        err = {"message": message, "domain": "global", "reason": reason}
        body = {"error": {"code": status, "message": message, "errors": [err]}}
        content = json.dumps(body).encode()
    return HttpError(httplib2.Response({"status": status}), content)


LIST_FIELDS: Fields = {
    "q": "q",
    "labelIds": label_field(label=["INBOX", "Label_7"]),
    "pageToken": "page_token",
}


@pytest.mark.parametrize(
    ("message", "fields", "field"),
    [
        ("Invalid To header", SEND_FIELDS, "to"),
        ("Invalid Bcc header", SEND_FIELDS, "bcc"),
        ("Recipient address required", SEND_FIELDS, "to"),
        ("Request payload size exceeds the limit: 5242880 bytes.", SEND_FIELDS, "body"),
        ("Invalid thread_id value", SEND_FIELDS, "thread_id"),
        ("Invalid id value", {"id": "message_id"}, "message_id"),
        ("Invalid label: Label_7", LIST_FIELDS, "label.1"),
        ("Invalid label: NOPE", {"labelIds": label_field(add=["A"], remove=["NOPE"])}, "remove.0"),
        ("Invalid pageToken", LIST_FIELDS, "page_token"),
        ("Invalid query", LIST_FIELDS, "q"),
        ("Invalid label name", {"name": "name"}, "name"),
    ],
)
def test_a_gmail_400_about_a_request_field_is_a_422_naming_it(
    message: str, fields: Fields, field: str
) -> None:
    err = from_http_error(_http_error(400, message), connection="team/gmail-acme", fields=fields)
    assert (err.status, err.error) == (422, "validation_failed")
    assert err.message == f"Gmail: {message}"
    assert err.fields == [{"field": field, "message": message}]


@pytest.mark.parametrize(
    ("message", "fields", "said"),
    [
        ("Precondition check failed.", SEND_FIELDS, "Precondition check failed."),
        ("Invalid id value", SEND_FIELDS, "Invalid id value"),  # send sends no id
        ("Invalid label: Label_9", LIST_FIELDS, "Invalid label: Label_9"),  # not one we sent
        ("Invalid To header", None, "Invalid To header"),  # a call with no fields (history)
        (
            'Invalid JSON payload received. Unknown name "x": Cannot bind query parameter.',
            LIST_FIELDS,  # "query parameter" is not the q parameter
            'Invalid JSON payload received. Unknown name "x": Cannot bind query parameter.',
        ),
        (None, SEND_FIELDS, "400 Bad Request, no message"),  # a frontend's HTML page
    ],
)
def test_a_gmail_400_about_no_request_field_says_so_with_empty_fields(
    message: str | None, fields: Fields | None, said: str
) -> None:
    err = from_http_error(_http_error(400, message), connection="team/gmail-acme", fields=fields)
    assert (err.status, err.error) == (422, "validation_failed")
    assert err.fields == []
    assert err.message == f"Gmail: {said} {NAMES_NONE}"


def test_gmails_message_never_carries_a_token_and_is_one_short_line() -> None:
    token, other = "opaque-connection-token-1234", "ya29.a0AfB_other-token.x"
    message = f"Invalid query {token} and {other}\nrefresh 1//0gAbCdEfGhIjKlMn " + "y" * 400
    err = from_http_error(
        _http_error(400, message), connection="c", fields={"q": "q"}, secrets=(token,)
    )
    assert err.fields is not None
    for text in (err.message, err.fields[0]["message"]):
        assert token not in text
        assert other not in text
        assert "1//0gAbCdEfGhIjKlMn" not in text
        assert "\n" not in text
        assert len(text) <= len("Gmail: ") + 300
    assert err.fields[0]["message"].startswith("Invalid query [redacted] and [redacted]")
    assert err.fields[0]["field"] == "q"


def _refused(r: Any, field: str | None, said: str) -> None:
    """The service's 422, in the shape of its own validation errors."""
    assert r.status_code == 422, r.text
    fields = [{"field": field, "message": said}] if field else []
    message = f"Gmail: {said}" if field else f"Gmail: {said} {NAMES_NONE}"
    assert r.json() == {
        "error": "validation_failed",
        "message": message,
        "status": 422,
        "fields": fields,
    }


def test_an_unknown_label_names_the_add_or_remove_entry(
    client: TestClient, box: Mailbox, as_user: Headers
) -> None:
    stored = box.deliver(b"From: bob@example.com\r\nSubject: s\r\n\r\nx\r\n")
    url = f"/api/v2/gmail/messages/{stored.id}/modify"
    r = client.post(url, json={"add": ["STARRED", "NO_SUCH"]}, headers=as_user("editor"))
    _refused(r, "add.1", "Invalid label: NO_SUCH")
    r = client.post(url, json={"remove": ["NOPE"]}, headers=as_user("editor"))
    _refused(r, "remove.0", "Invalid label: NOPE")
    assert stored.labels == {"INBOX", "UNREAD"}


def test_a_page_token_gmail_did_not_issue_names_page_token(
    client: TestClient, as_user: Headers
) -> None:
    for path in ("/api/v2/gmail/messages", "/api/v2/gmail/threads"):
        r = client.get(path, params={"page_token": "not-a-token"}, headers=as_user())
        _refused(r, "page_token", "Invalid pageToken")


def test_a_label_name_gmail_refuses_names_name(client: TestClient, as_user: Headers) -> None:
    r = client.post("/api/v2/gmail/labels", json={"name": "   "}, headers=as_user("editor"))
    _refused(r, "name", "Invalid label name")


def test_a_message_over_gmails_payload_limit_names_the_body(
    client: TestClient, fake: FakeGmail, box: Mailbox, as_user: Headers
) -> None:
    fake.payload_limit = 2000
    body = {"to": ["carol@example.com"], "subject": "s", "text": "x" * 3000}
    r = client.post("/api/v2/gmail/messages/send", json=body, headers=as_user("editor"))
    _refused(r, "body", "Request payload size exceeds the limit: 2000 bytes.")
    assert box.sent == []


def test_a_400_naming_nothing_of_the_request_says_so_and_shows_no_token(
    client: TestClient,
    fake: FakeGmail,
    tokens: StaticTokens,
    as_user: Headers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = tokens.access["acme"]
    fake.fail("labels.list", 400)
    _refused(client.get("/api/v2/gmail/labels", headers=as_user()), None, "Simulated failure")
    monkeypatch.setitem(
        gmail_server._METHODS,
        "labels.list",
        lambda _fake, _call: google_error(400, f"Bad token {token}", "invalidArgument"),
    )
    r = client.get("/api/v2/gmail/labels", headers=as_user())
    _refused(r, None, "Bad token [redacted]")
    assert token not in r.text
