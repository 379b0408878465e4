"""The fake Gmail API itself: a bug in one of its methods is Google's 500, not a dropped
connection; a stored message with a header that does not parse is found and read as Gmail
finds and reads it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from fakes.crashes import assert_crash_logged, crash
from fakes.google import FakeGmail, Mailbox
from fakes.google import server as gmail_server
from fakes.slack.tokens import StaticTokens
from fastapi.testclient import TestClient

Headers = Callable[..., dict[str, str]]

INTERNAL = "Internal error encountered."


def test_an_exception_in_a_method_is_googles_500_and_the_fake_keeps_serving(
    fake: FakeGmail,
    box: Mailbox,
    tokens: StaticTokens,
    client: TestClient,
    as_user: Headers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Google's frontends answer an internal failure with 500 and the usual error body
    (``backendError``, ``INTERNAL``); the fake's base handler dropped the connection instead
    (clients saw RemoteDisconnected, the service a 502 "Gmail unreachable"). The traceback is
    logged at error level for whoever debugs the test."""

    monkeypatch.setitem(gmail_server._METHODS, "labels.list", crash)
    token = tokens.access["acme"]
    auth = {"Authorization": f"Bearer {token}"}
    with caplog.at_level(logging.ERROR), httpx.Client(base_url=fake.endpoint, timeout=10) as http:
        answer = http.get("/gmail/v1/users/me/labels", headers=auth)
        assert answer.status_code == 500
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == {
            "error": {
                "code": 500,
                "message": INTERNAL,
                "errors": [{"message": INTERNAL, "domain": "global", "reason": "backendError"}],
                "status": "INTERNAL",
            }
        }
        after = http.get("/gmail/v1/users/me/profile", headers=auth)  # the same connection
    assert after.status_code == 200
    assert after.json()["emailAddress"] == box.address
    assert_crash_logged(caplog, secrets=[token])
    # what the service makes of it: an upstream error naming Google's answer
    r = client.get("/api/v2/gmail/labels", headers=as_user())
    assert r.status_code == 502, r.text
    assert r.json()["message"] == "Gmail answered 500 backendError"


def test_a_stored_header_that_does_not_parse_is_searched_and_read_like_gmail(
    fake: FakeGmail, box: Mailbox, tokens: StaticTokens, client: TestClient, as_user: Headers
) -> None:
    """Gmail keeps whatever mail it received and its search does not validate headers: a
    message whose From is ``carol@`` (the standard library's parser raises on it) is still
    listed and read, its header as written. The fake's search raised on it (a dropped
    connection, now a 500); matching skips a header value that does not parse."""
    odd = box.deliver(
        b"From: carol@\r\nTo: <\r\nSubject: tacos\r\n\r\nlunch at noon\r\n", labels=("INBOX",)
    )
    plain = box.deliver(
        b"From: bob@example.com\r\nTo: ada@example.com\r\nSubject: report\r\n\r\nnumbers\r\n"
    )
    auth = {"Authorization": f"Bearer {tokens.access['acme']}"}
    with httpx.Client(base_url=fake.endpoint, timeout=10) as http:

        def found(q: str) -> list[str]:
            r = http.get("/gmail/v1/users/me/messages", params={"q": q}, headers=auth)
            assert r.status_code == 200, (q, r.text)
            return [m["id"] for m in r.json().get("messages", [])]

        assert found("from:bob") == [plain.id]
        assert found("from:carol") == []  # the unparsable From is skipped, not a crash
        assert found("to:ada") == [plain.id]
        assert found("lunch") == [odd.id]  # body and subject still match
        assert found("subject:tacos") == [odd.id]
        meta = http.get(
            f"/gmail/v1/users/me/messages/{odd.id}",
            params={"format": "metadata", "metadataHeaders": ["From", "To"]},
            headers=auth,
        )
        assert meta.status_code == 200, meta.text
        assert meta.json()["payload"]["headers"] == [
            {"name": "From", "value": "carol@"},
            {"name": "To", "value": "<"},
        ]
    r = client.get("/api/v2/gmail/messages", params={"q": "lunch"}, headers=as_user())
    assert r.status_code == 200, r.text
    assert [(m["from"], m["to"], m["subject"]) for m in r.json()["messages"]] == [
        ("carol@", "<", "tacos")
    ]
