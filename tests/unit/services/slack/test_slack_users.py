"""Users and search routers against the fake Web API."""

from __future__ import annotations

from collections.abc import Callable

from fakes.slack import FakeSlack
from fakes.slack.tokens import StaticTokens
from fastapi.testclient import TestClient

Headers = Callable[..., dict[str, str]]


def test_users_list_and_lookup_by_email(
    client: TestClient, fake: FakeSlack, as_user: Headers
) -> None:
    ada = fake.state.add_user("ada", "ada@example.com")
    fake.state.add_user("bob", "bob@example.com")
    r = client.get("/api/v2/slack/users", headers=as_user())
    assert [u["name"] for u in r.json()["users"]] == ["ada", "bob"]
    found = client.get("/api/v2/slack/users/lookup?email=ADA@example.com", headers=as_user())
    assert found.status_code == 200
    assert found.json()["user"]["id"] == ada
    missing = client.get("/api/v2/slack/users/lookup?email=eve@example.com", headers=as_user())
    assert missing.status_code == 404
    assert missing.json()["error"] == "users_not_found"
    bad = client.get("/api/v2/slack/users/lookup?email=nope", headers=as_user())
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "email"


def test_search_without_a_user_token_names_the_user_scope_and_calls_nothing(
    client: TestClient, fake: FakeSlack, tokens: StaticTokens, as_user: Headers
) -> None:
    r = client.get("/api/v2/slack/search?q=deal", headers=as_user())
    assert r.status_code == 403
    assert r.json()["error"] == "missing_user_scope"
    message = r.json()["message"]
    assert "user token with the user scope search:read" in message
    assert "OAuthConnection team/slack-acme has no user token" in message
    assert "spec.userScopes" in message
    tokens.user["acme"] = ("xoxp-user-token", ("users:read",))
    r = client.get("/api/v2/slack/search?q=deal", headers=as_user())
    assert r.status_code == 403
    assert "has a user token without it" in r.json()["message"]
    assert fake.state.calls["search.messages"] == 0


def test_search_with_a_user_token_finds_messages(
    client: TestClient, fake: FakeSlack, tokens: StaticTokens, as_user: Headers
) -> None:
    tokens.user["acme"] = ("xoxp-user-token", ("search:read",))  # beside the bot token
    fake.grant("xoxp-user-token", scopes={"search:read"})
    cid = fake.state.add_channel("sales")
    fake.state.add_message(cid, "the Globex deal is signed")
    fake.state.add_message(cid, "lunch?")
    r = client.get("/api/v2/slack/search?q=deal", headers=as_user())
    assert r.status_code == 200, r.text
    assert [m["text"] for m in r.json()["matches"]] == ["the Globex deal is signed"]
    assert r.json()["total"] == 1
    assert r.json()["matches"][0]["channel"]["name"] == "sales"


def test_search_with_an_expired_user_token_is_a_409_naming_it_and_users_still_work(
    client: TestClient, fake: FakeSlack, tokens: StaticTokens, as_user: Headers
) -> None:
    """Search asks the reader for the user token (an expired one is its error); the other
    routes get the bot token as before."""
    tokens.user["acme"] = ("xoxp-user-token", ("search:read",))
    tokens.expired_user.add("acme")
    fake.state.add_user("ada", "ada@example.com")
    r = client.get("/api/v2/slack/search?q=deal", headers=as_user())
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "oauth_user_token_expired"
    assert "the user token of OAuthConnection team/slack-acme" in r.json()["message"]
    assert fake.state.calls["search.messages"] == 0
    users = client.get("/api/v2/slack/users", headers=as_user())
    assert users.status_code == 200, users.text
    assert [u["name"] for u in users.json()["users"]] == ["ada"]
