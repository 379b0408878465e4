"""Channels router against the fake Web API: pages, history, posting, and the errors."""

from __future__ import annotations

from collections.abc import Callable

from fakes.slack import FakeSlack
from fakes.slack.tokens import AUTHORIZE_URL, StaticTokens
from fastapi.testclient import TestClient

Headers = Callable[..., dict[str, str]]


def test_channels_are_paged_with_slacks_cursor(
    client: TestClient, fake: FakeSlack, as_user: Headers
) -> None:
    for name in ("general", "random", "sales"):
        fake.state.add_channel(name)
    first = client.get("/api/v2/slack/channels?limit=2", headers=as_user())
    assert first.status_code == 200, first.text
    assert [c["name"] for c in first.json()["channels"]] == ["general", "random"]
    cursor = first.json()["next_cursor"]
    assert cursor
    rest = client.get("/api/v2/slack/channels", params={"cursor": cursor}, headers=as_user())
    assert [c["name"] for c in rest.json()["channels"]] == ["sales"]
    assert rest.json()["next_cursor"] is None


def test_a_bad_cursor_is_a_422_naming_slacks_code(
    client: TestClient, fake: FakeSlack, as_user: Headers
) -> None:
    r = client.get("/api/v2/slack/channels?cursor=zzz", headers=as_user())
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_cursor"


def test_history_is_newest_first_and_unknown_channels_are_404(
    client: TestClient, fake: FakeSlack, as_user: Headers
) -> None:
    cid = fake.state.add_channel("general")
    for text in ("one", "two", "three"):
        fake.state.add_message(cid, text)
    r = client.get(f"/api/v2/slack/channels/{cid}/messages?limit=2", headers=as_user())
    assert r.status_code == 200
    assert [m["text"] for m in r.json()["messages"]] == ["three", "two"]
    assert r.json()["has_more"] is True
    missing = client.get("/api/v2/slack/channels/C99999999/messages", headers=as_user())
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "channel_not_found",
        "message": "Slack: channel_not_found",
        "status": 404,
    }
    bad = client.get("/api/v2/slack/channels/not-an-id/messages", headers=as_user())
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "channel"


def test_editors_post_and_viewers_cannot(
    client: TestClient, fake: FakeSlack, as_user: Headers
) -> None:
    cid = fake.state.add_channel("general")
    denied = client.post(
        f"/api/v2/slack/channels/{cid}/messages", json={"text": "hi"}, headers=as_user("viewer")
    )
    assert denied.status_code == 403
    assert fake.state.posted == []
    r = client.post(
        f"/api/v2/slack/channels/{cid}/messages", json={"text": "hi"}, headers=as_user("editor")
    )
    assert r.status_code == 201, r.text
    assert fake.state.posted == [{"channel": cid, **r.json()["message"]}]
    assert r.json()["ts"] == fake.state.messages[cid][-1]["ts"]
    empty = client.post(
        f"/api/v2/slack/channels/{cid}/messages", json={"text": ""}, headers=as_user("editor")
    )
    assert empty.status_code == 422
    assert empty.json()["fields"][0]["field"] == "text"


def test_409_until_connected_and_slack_is_never_called(
    client: TestClient, fake: FakeSlack, as_user: Headers
) -> None:
    fake.state.add_channel("general")
    r = client.get("/api/v2/slack/channels", headers=as_user(tenant="globex"))
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "oauth_not_connected"
    assert body["connection"] == "team/slack-globex"
    assert body["authorizationURL"] == AUTHORIZE_URL
    assert body["status"] == 409
    assert AUTHORIZE_URL in body["message"]
    assert sum(fake.state.calls.values()) == 0


def test_rate_limit_is_429_with_slacks_retry_after(
    client: TestClient, fake: FakeSlack, as_user: Headers
) -> None:
    fake.fail("conversations.list", 429)
    r = client.get("/api/v2/slack/channels", headers=as_user())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"] == "rate_limited"
    assert client.get("/api/v2/slack/channels", headers=as_user()).status_code == 200


def test_a_refused_token_is_409_and_never_shown(
    client: TestClient, fake: FakeSlack, tokens: StaticTokens, as_user: Headers
) -> None:
    fake.state.grants.clear()  # the user removed the app
    r = client.get("/api/v2/slack/channels", headers=as_user())
    assert r.status_code == 409
    assert r.json()["error"] == "oauth_token_refused"
    assert "team/slack-acme" in r.json()["message"]
    assert tokens.access["acme"] not in r.text


def test_missing_scope_names_the_scope(
    client: TestClient, fake: FakeSlack, tokens: StaticTokens, as_user: Headers
) -> None:
    fake.grant(tokens.access["acme"], scopes={"channels:read"})
    r = client.get("/api/v2/slack/users", headers=as_user())
    assert r.status_code == 403
    assert "users:read" in r.json()["message"]


def test_identity_is_required(client: TestClient) -> None:
    r = client.get("/api/v2/slack/channels")
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
