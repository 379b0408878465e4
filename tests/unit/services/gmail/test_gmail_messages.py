"""Messages router against the fake Gmail API: search, decoded bodies, send, modify, errors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from email.message import EmailMessage

import httpx
import pytest
from fakes.google import FakeGmail, Mailbox
from fakes.slack.tokens import AUTHORIZE_URL, StaticTokens
from fastapi.testclient import TestClient

from services.common.errors import ApiError
from services.gmail.gmailapi import GmailApi
from services.gmail.routers.messages import SEND_FIELDS

Headers = Callable[..., dict[str, str]]


def _mail(subject: str, text: str, *, sender: str = "bob@example.com", html: str = "") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "ada@example.com", subject
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def test_list_pages_and_summarises(client: TestClient, box: Mailbox, as_user: Headers) -> None:
    for n in range(3):
        box.deliver(_mail(f"report {n}", "numbers"))
    first = client.get("/api/v2/gmail/messages?limit=2", headers=as_user())
    assert first.status_code == 200, first.text
    page = first.json()
    assert [m["subject"] for m in page["messages"]] == ["report 2", "report 1"]
    assert page["messages"][0]["from"] == "bob@example.com"
    assert "text" not in page["messages"][0]
    rest = client.get(
        "/api/v2/gmail/messages", params={"page_token": page["next_page_token"]}, headers=as_user()
    )
    assert [m["subject"] for m in rest.json()["messages"]] == ["report 0"]
    assert rest.json()["next_page_token"] is None


def test_search_uses_gmail_query_syntax(client: TestClient, box: Mailbox, as_user: Headers) -> None:
    box.deliver(_mail("invoice 42", "pay me", sender="billing@globex.com"))
    box.deliver(_mail("lunch", "tacos?"))
    r = client.get("/api/v2/gmail/messages", params={"q": "from:globex"}, headers=as_user())
    assert [m["subject"] for m in r.json()["messages"]] == ["invoice 42"]
    r = client.get("/api/v2/gmail/messages", params={"q": "tacos"}, headers=as_user())
    assert [m["subject"] for m in r.json()["messages"]] == ["lunch"]


def test_get_decodes_headers_bodies_and_lists_attachments(
    client: TestClient, box: Mailbox, as_user: Headers
) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "bob@example.com", "ada@example.com", "Grüße"
    msg.set_content("plain ünïcode")
    msg.add_alternative("<p>html</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="q3.pdf")
    stored = box.deliver(msg.as_bytes())
    r = client.get(f"/api/v2/gmail/messages/{stored.id}", headers=as_user())
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["subject"] == "Grüße"
    assert got["text"].strip() == "plain ünïcode"
    assert got["html"].strip() == "<p>html</p>"
    assert got["attachments"] == [
        {
            "filename": "q3.pdf",
            "mimeType": "application/pdf",
            "size": 8,
            "attachmentId": got["attachments"][0]["attachmentId"],
        }
    ]
    assert got["headers"]["to"] == "ada@example.com"
    missing = client.get("/api/v2/gmail/messages/ffff", headers=as_user())
    assert missing.status_code == 404
    assert missing.json()["status"] == 404


def test_send_builds_a_mime_message_gmail_can_parse(
    client: TestClient, box: Mailbox, as_user: Headers
) -> None:
    pdf = b"%PDF-1.4 binary \x00\xff"
    r = client.post(
        "/api/v2/gmail/messages/send",
        json={
            "to": ["carol@example.com"],
            "cc": ["dan@example.com"],
            "bcc": ["eve@example.com"],
            "subject": "Quarterly numbers",
            "text": "See attached.",
            "html": "<b>See attached.</b>",
            "attachments": [
                {
                    "filename": "q3.pdf",
                    "content_type": "application/pdf",
                    "data": base64.b64encode(pdf).decode(),
                }
            ],
        },
        headers=as_user("editor"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["labelIds"] == ["SENT"]
    [sent] = box.sent
    assert sent["To"] == "carol@example.com"
    assert sent["Cc"] == "dan@example.com"
    assert sent["Bcc"] == "eve@example.com"
    assert sent["Subject"] == "Quarterly numbers"
    assert sent["Message-ID"]
    plain, html = sent.get_body(("plain",)), sent.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().strip() == "See attached."
    assert html.get_content().strip() == "<b>See attached.</b>"
    [attachment] = list(sent.iter_attachments())
    assert attachment.get_filename() == "q3.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == pdf
    assert box.messages[r.json()["id"]].labels == {"SENT"}


def test_send_needs_an_editor_and_valid_fields(
    client: TestClient, box: Mailbox, as_user: Headers
) -> None:
    body = {"to": ["carol@example.com"], "subject": "hi", "text": "x"}
    assert (
        client.post("/api/v2/gmail/messages/send", json=body, headers=as_user()).status_code == 403
    )
    bad = client.post(
        "/api/v2/gmail/messages/send",
        json={**body, "to": ["not-an-address"], "attachments": [{"filename": "a", "data": "%%%"}]},
        headers=as_user("editor"),
    )
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["fields"]} == {"to.0", "attachments.0.data"}
    injected = client.post(
        "/api/v2/gmail/messages/send",
        json={**body, "subject": "hi\r\nBcc: eve@example.com"},
        headers=as_user("editor"),
    )
    assert injected.status_code == 422
    assert box.sent == []


def test_an_address_that_is_no_addr_spec_is_a_422_naming_it(
    client: TestClient, box: Mailbox, as_user: Headers
) -> None:
    """Found by fuzzing: a recipient the old pattern let through (a control character, a
    bracket, a second `@` in the domain's place) went into the To header, and Gmail could not
    parse it (the fake dropped the connection: a 502). Now the field is refused, and nothing
    is sent."""
    body = {"subject": "hi", "text": "x"}
    for address in ("a\x11b@example.com", "a]b@example.com", "ada@exa]mple.com", "é@é.é"):
        for field in ("to", "cc", "bcc"):
            r = client.post(
                "/api/v2/gmail/messages/send",
                json={"to": ["carol@example.com"], **body, field: [address]},
                headers=as_user("editor"),
            )
            assert r.status_code == 422, (address, field, r.text)
            assert [f["field"] for f in r.json()["fields"]] == [f"{field}.0"], r.text
    assert box.sent == []
    ok = {"to": ["o'brien+tag@mail.example.co.uk"], "cc": ["X_Y@EXAMPLE.com"], **body}
    r = client.post("/api/v2/gmail/messages/send", json=ok, headers=as_user("editor"))
    assert r.status_code == 201, r.text


def test_a_subject_with_any_line_break_is_a_422_naming_it(
    client: TestClient, box: Mailbox, as_user: Headers
) -> None:
    """Found by fuzzing: a subject with a line break other than CR or LF (NEL, a line or
    paragraph separator, a vertical tab, a form feed) passed the old pattern, and the MIME
    header refused it: a 500."""
    for brk in ("\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"):
        body = {"to": ["carol@example.com"], "subject": f"hi{brk}Bcc: eve@example.com", "text": "x"}
        r = client.post("/api/v2/gmail/messages/send", json=body, headers=as_user("editor"))
        assert r.status_code == 422, (brk, r.text)
        assert [f["field"] for f in r.json()["fields"]] == ["subject"], r.text
    assert box.sent == []


def test_an_in_reply_to_that_is_no_message_id_is_a_422_naming_it(
    client: TestClient, box: Mailbox, as_user: Headers
) -> None:
    """Found by the soak fuzz: a file, group or record separator (not whitespace to the
    pattern's regex, a line break to the MIME header) in `in_reply_to` was a 500."""
    for value in ("<a\x1cb@example.com>", "<a\x1eb@example.com>", "<é@example.com>"):
        body = {"to": ["carol@example.com"], "subject": "s", "text": "x", "in_reply_to": value}
        r = client.post("/api/v2/gmail/messages/send", json=body, headers=as_user("editor"))
        assert r.status_code == 422, (value, r.text)
        assert [f["field"] for f in r.json()["fields"]] == ["in_reply_to"], r.text
    assert box.sent == []


def test_modify_labels(client: TestClient, box: Mailbox, as_user: Headers) -> None:
    stored = box.deliver(_mail("hello", "x"))
    r = client.post(
        f"/api/v2/gmail/messages/{stored.id}/modify",
        json={"add": ["STARRED"], "remove": ["UNREAD"]},
        headers=as_user("editor"),
    )
    assert r.status_code == 200, r.text
    assert stored.labels == {"INBOX", "STARRED"}
    bad = client.post(
        f"/api/v2/gmail/messages/{stored.id}/modify",
        json={"add": ["NO_SUCH"]},
        headers=as_user("editor"),
    )
    assert bad.status_code == 422
    assert "Invalid label" in bad.json()["message"]


def test_409_until_connected_and_gmail_is_never_called(
    client: TestClient, fake: FakeGmail, as_user: Headers
) -> None:
    r = client.get("/api/v2/gmail/messages", headers=as_user(tenant="globex"))
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "oauth_not_connected"
    assert body["connection"] == "team/gmail-globex"
    assert body["authorizationURL"] == AUTHORIZE_URL
    assert fake.requests == []


def test_a_refused_token_is_409_and_never_shown(
    client: TestClient, fake: FakeGmail, tokens: StaticTokens, as_user: Headers
) -> None:
    fake.tokens.clear()
    r = client.get("/api/v2/gmail/labels", headers=as_user())
    assert r.status_code == 409
    assert r.json()["error"] == "oauth_token_refused"
    assert tokens.access["acme"] not in r.text


def test_rate_limit_is_429_with_retry_after(
    client: TestClient, fake: FakeGmail, as_user: Headers
) -> None:
    fake.fail("labels.list", 429)
    r = client.get("/api/v2/gmail/labels", headers=as_user())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("To", "carol@"),
        ("To", "not an address"),
        ("To", "a@b@example.com"),
        ("Cc", "dan@"),
        ("Bcc", "eve@"),
    ],
)
async def test_a_recipient_header_gmail_cannot_parse_is_its_400_and_a_422_here(
    fake: FakeGmail, box: Mailbox, tokens: StaticTokens, header: str, value: str
) -> None:
    """Gmail's users.messages.send answers a To (Cc, Bcc) header it cannot parse with 400
    "Invalid To header" in its usual error body; the fake dropped the connection (or, for
    some, sent the message), which GmailApi turned into a 502 "Gmail unreachable". The send
    route validates addresses before building headers, so this sends a raw message. The 422
    names the field, as every 422 of the service does (it had no ``fields``)."""
    recipients = f"To: {value}" if header == "To" else f"To: carol@example.com\r\n{header}: {value}"
    mime = f"From: ada@example.com\r\n{recipients}\r\nSubject: s\r\n\r\nx\r\n".encode()
    message = {"raw": base64.urlsafe_b64encode(mime).decode()}
    token = tokens.access["acme"]
    async with httpx.AsyncClient(base_url=fake.endpoint, timeout=10) as http:
        answer = await http.post(
            "/gmail/v1/users/me/messages/send",
            json=message,
            headers={"Authorization": f"Bearer {token}"},
        )
    problem = f"Invalid {header} header"
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "code": 400,
            "message": problem,
            "errors": [{"message": problem, "domain": "global", "reason": "invalidArgument"}],
            "status": "INVALID_ARGUMENT",
        }
    }
    api = GmailApi(token, api_url=fake.endpoint + "/", timeout=10, connection="team/gmail-acme")
    with pytest.raises(ApiError) as refused:
        await api.run(lambda u: u.messages().send(userId="me", body=message), fields=SEND_FIELDS)
    assert (refused.value.status, refused.value.error) == (422, "validation_failed")
    assert refused.value.message == f"Gmail: {problem}"
    assert refused.value.fields == [{"field": header.lower(), "message": problem}]
    assert box.sent == []
