"""Threads and labels routers against the fake Gmail API."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

from fakes.google import Mailbox
from fastapi.testclient import TestClient

Headers = Callable[..., dict[str, str]]


def _mail(subject: str, text: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "bob@example.com", "ada@example.com", subject
    msg.set_content(text)
    return msg.as_bytes()


def test_a_thread_comes_back_with_every_message_decoded(
    client: TestClient, box: Mailbox, as_user: Headers
) -> None:
    first = box.deliver(_mail("plan", "first"))
    box.deliver(_mail("Re: plan", "second"), thread=first.thread_id)
    box.deliver(_mail("other", "third"))
    listed = client.get("/api/v2/gmail/threads", headers=as_user())
    assert len(listed.json()["threads"]) == 2
    r = client.get(f"/api/v2/gmail/threads/{first.thread_id}", headers=as_user())
    assert r.status_code == 200
    assert [m["text"].strip() for m in r.json()["messages"]] == ["first", "second"]


def test_labels_list_and_create(client: TestClient, box: Mailbox, as_user: Headers) -> None:
    made = client.post("/api/v2/gmail/labels", json={"name": "Clients"}, headers=as_user("editor"))
    assert made.status_code == 201, made.text
    names = [
        lab["name"]
        for lab in client.get("/api/v2/gmail/labels", headers=as_user()).json()["labels"]
    ]
    assert "Clients" in names
    assert "INBOX" in names
    again = client.post("/api/v2/gmail/labels", json={"name": "clients"}, headers=as_user("editor"))
    assert again.status_code == 409
    assert "exists" in again.json()["message"]
