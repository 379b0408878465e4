"""The fake Gmail API itself: a bug in one of its methods is Google's 500, not a dropped
connection; a stored message with a header that does not parse is found and read as Gmail
finds and reads it."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from email.headerregistry import AddressHeader
from typing import cast

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


BODY = "café déjà vu at noon"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain; charset=x-nonesuch",  # a charset nobody knows
        'text/plain; charset=""',  # an empty one
        "text/plain; charset=base64",  # a codec that is no text encoding
        "text/plain; charset=idna",  # a text encoding that refuses errors="replace"
        "text/plain; charset*=utf-8''%FF%FE",  # RFC 2231, naming bytes that are no name
        ";;; garbage ===",  # no type at all: text/plain
    ],
)
def test_a_body_whose_content_type_or_charset_does_not_read_is_kept_searched_and_read(
    fake: FakeGmail,
    box: Mailbox,
    tokens: StaticTokens,
    client: TestClient,
    as_user: Headers,
    content_type: str,
) -> None:
    """Gmail stores mail with a malformed Content-Type or a charset it does not know and
    shows it; the fake's snippet and search read text parts with ``get_content()``, which
    raised LookupError on such a charset (Google's 500 for messages.get, messages.list with
    ``q`` and threads.list, a 502 at the service), and the service decoded the body with the
    part's charset (a 500). Both read it as UTF-8 now, as text/plain when the type does not
    parse."""
    mail = box.deliver(
        b"From: bob@example.com\r\nTo: ada@example.com\r\nSubject: lunch\r\n"
        + f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".encode()
        + BODY.encode()
        + b" \xff\r\n"  # and a byte that is no UTF-8: replaced, not an error
    )
    auth = {"Authorization": f"Bearer {tokens.access['acme']}"}
    with httpx.Client(base_url=fake.endpoint, timeout=10) as http:
        got = http.get(f"/gmail/v1/users/me/messages/{mail.id}", headers=auth)
        assert got.status_code == 200, got.text
        assert got.json()["snippet"] == f"{BODY} \ufffd"
        assert got.json()["payload"]["mimeType"] == "text/plain"
        listed = http.get("/gmail/v1/users/me/messages", params={"q": "déjà"}, headers=auth)
        assert listed.status_code == 200, listed.text
        assert [m["id"] for m in listed.json()["messages"]] == [mail.id]
        threads = http.get("/gmail/v1/users/me/threads", params={"q": "noon"}, headers=auth)
        assert threads.status_code == 200, threads.text
        assert [t["snippet"] for t in threads.json()["threads"]] == [f"{BODY} \ufffd"]
    r = client.get(f"/api/v2/gmail/messages/{mail.id}", headers=as_user())
    assert r.status_code == 200, r.text
    assert r.json()["text"].strip() == f"{BODY} \ufffd"
    found = client.get("/api/v2/gmail/messages", params={"q": "café"}, headers=as_user())
    assert found.status_code == 200, found.text
    assert [m["snippet"] for m in found.json()["messages"]] == [f"{BODY} \ufffd"]


def test_a_sent_message_is_kept_with_its_recipient_headers_as_written(
    fake: FakeGmail, box: Mailbox, client: TestClient, as_user: Headers
) -> None:
    """The fake keeps what messages.send took, less Bcc. It wrote the copy back with the
    standard library's folder, which on Python 3.11 drops the quotes of a quoted display name
    longer than a line: the kept To of ``"Doe, John, xxx…" <j@example.com>`` said three
    recipients, ``Doe``, ``John`` and ``xxx… <j@example.com>``."""
    name = "Doe, John, " + "x" * 80
    body = {"to": [f'"{name}" <j@example.com>'], "bcc": ["eve@example.com"]}
    r = client.post(
        "/api/v2/gmail/messages/send",
        json={**body, "subject": "s", "text": "x"},
        headers=as_user("editor"),
    )
    assert r.status_code == 201, r.text
    kept = box.messages[r.json()["id"]].parsed
    to = cast(AddressHeader, kept["to"])  # a header object: the kept message's policy is default
    assert [(a.display_name, a.addr_spec) for a in to.addresses] == [(name, "j@example.com")]
    assert "Bcc" not in kept
    got = client.get(f"/api/v2/gmail/messages/{r.json()['id']}", headers=as_user())
    assert got.json()["to"] == f'"{name}" <j@example.com>'


def test_non_ascii_display_names_and_idn_domains_are_taken_found_and_shown_decoded(
    fake: FakeGmail, box: Mailbox, tokens: StaticTokens
) -> None:
    """Deliberate, as Gmail: a display name in RFC 2047 encoded words or in raw UTF-8 (RFC
    6532) and a domain in its xn-- form are taken by messages.send, searched by the name
    they stand for and shown decoded; none is an "Invalid To header"."""
    raw = (
        "From: =?utf-8?b?w4lsb8Ovc2U=?= <eloise@example.com>\r\n"
        "To: 山田 太郎 <taro@xn--bcher-kva.example>, Zoë <zoe@example.com>\r\n"
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nhallo\r\n"
    ).encode()
    auth = {"Authorization": f"Bearer {tokens.access['acme']}"}
    with httpx.Client(base_url=fake.endpoint, timeout=10) as http:
        sent = http.post(
            "/gmail/v1/users/me/messages/send",
            json={"raw": base64.urlsafe_b64encode(raw).decode()},
            headers=auth,
        )
        assert sent.status_code == 200, sent.text
        for q in ("from:éloïse", "to:太郎", "to:zoë", "grüße"):
            r = http.get("/gmail/v1/users/me/messages", params={"q": q}, headers=auth)
            assert [m["id"] for m in r.json().get("messages", [])] == [sent.json()["id"]], q
        got = http.get(
            f"/gmail/v1/users/me/messages/{sent.json()['id']}",
            params={"format": "metadata", "metadataHeaders": ["From", "To", "Subject"]},
            headers=auth,
        )
    assert got.json()["payload"]["headers"] == [
        {"name": "From", "value": "Éloïse <eloise@example.com>"},
        {"name": "To", "value": "山田 太郎 <taro@xn--bcher-kva.example>, Zoë <zoe@example.com>"},
        {"name": "Subject", "value": "Grüße"},
    ]
