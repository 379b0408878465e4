"""The Slack and Google OAuth providers (authlib) against the fake providers' wire format:
authorization URL with state and PKCE S256, exchange, refresh, revoke, and each error kind."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fakes.oauth import FakeOAuth, s256
from pydantic import SecretStr

from controllers.providers.oauth import (
    ClientCredentials,
    ClientRefusedError,
    Endpoints,
    GrantRefusedError,
    ProviderUnreachableError,
    TokenSet,
    UserToken,
)
from controllers.providers.oauth.google import GoogleOAuth
from controllers.providers.oauth.oauth2 import OAuth2Provider
from controllers.providers.oauth.slack import SlackOAuth

CREDS = ClientCredentials("fake-client-id", SecretStr("fake-client-secret"))
REDIRECT = "http://127.0.0.1:9/api/v2/oauth/slack/callback"
VERIFIER = "v" * 64


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOAuth]:
    with FakeOAuth() as fake:
        yield fake


def provider(fake: FakeOAuth, name: str) -> OAuth2Provider:
    ends = Endpoints(**fake.endpoints("slack" if name == "slack" else "google"))
    return SlackOAuth(ends) if name == "slack" else GoogleOAuth(ends)


def authorize(url: str) -> str:
    """Follow the authorization URL like a browser; the code the redirect carries."""
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return query["code"][0]


@pytest.mark.parametrize("name", ["slack", "google"])
def test_authorization_url_carries_state_and_s256_challenge(fake: FakeOAuth, name: str) -> None:
    url = provider(fake, name).authorization_url(
        CREDS, redirect_uri=REDIRECT, scopes=["a:b", "c:d"], state="st-1", code_verifier=VERIFIER
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["state"] == "st-1"
    assert query["code_challenge"] == s256(VERIFIER)
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == REDIRECT
    assert query["client_id"] == "fake-client-id"
    assert query["scope"] == ("a:b,c:d" if name == "slack" else "a:b c:d")
    if name == "google":
        assert query["access_type"] == "offline"


@pytest.mark.parametrize("name", ["slack", "google"])
async def test_exchange_refresh_revoke(fake: FakeOAuth, name: str) -> None:
    oauth = provider(fake, name)
    code = authorize(
        oauth.authorization_url(
            CREDS, redirect_uri=REDIRECT, scopes=["x:y"], state="s", code_verifier=VERIFIER
        )
    )
    tokens = await oauth.exchange(CREDS, code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT)
    assert tokens.access_token.get_secret_value() in fake.issued()
    assert tokens.refresh_token is not None
    assert tokens.expires_at is not None
    assert tokens.expires_at > dt.datetime.now(dt.UTC)
    assert tokens.scopes == ("x:y",)
    if name == "slack":
        assert (tokens.account.team_id, tokens.account.user_id) == ("T0FAKETEAM", "U0FAKEUSER")
        assert tokens.token_type == "bot"
    else:
        assert tokens.account.email == "someone@example.com"
    assert tokens.access_token.get_secret_value() not in repr(tokens)

    fresh = await oauth.refresh(CREDS, refresh_token=tokens.refresh_token.get_secret_value())
    assert fresh.access_token != tokens.access_token
    assert fresh.refresh_token is not None  # Google sends none: the old one is kept

    await oauth.revoke(CREDS, tokens=fresh)
    state = fake.state(name)
    assert fresh.access_token.get_secret_value() in state.revoked or (
        fresh.refresh_token.get_secret_value() in state.revoked
    )
    with pytest.raises(GrantRefusedError):  # revoked: its refresh token is dead
        await oauth.refresh(CREDS, refresh_token=fresh.refresh_token.get_secret_value())


@pytest.mark.parametrize("name", ["slack", "google"])
async def test_pkce_mismatch_and_code_reuse_are_grant_errors(fake: FakeOAuth, name: str) -> None:
    oauth = provider(fake, name)
    url = oauth.authorization_url(
        CREDS, redirect_uri=REDIRECT, scopes=["x:y"], state="s", code_verifier=VERIFIER
    )
    code = authorize(url)
    with pytest.raises(GrantRefusedError) as err:
        await oauth.exchange(CREDS, code=code, code_verifier="w" * 64, redirect_uri=REDIRECT)
    assert err.value.code == ("invalid_code" if name == "slack" else "invalid_grant")
    code = authorize(url)
    await oauth.exchange(CREDS, code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT)
    with pytest.raises(GrantRefusedError):
        await oauth.exchange(CREDS, code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT)


@pytest.mark.parametrize("name", ["slack", "google"])
async def test_bad_client_secret_is_a_client_error(fake: FakeOAuth, name: str) -> None:
    wrong = ClientCredentials("fake-client-id", SecretStr("nope"))
    with pytest.raises(ClientRefusedError) as err:
        await provider(fake, name).refresh(wrong, refresh_token="whatever")
    assert "nope" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "status"), [("slack", 429), ("google", 429), ("google", 503), ("slack", 503)]
)
async def test_rate_limits_and_5xx_are_unreachable(fake: FakeOAuth, name: str, status: int) -> None:
    fake.fail(name, "token", [status])
    with pytest.raises(ProviderUnreachableError):
        await provider(fake, name).refresh(CREDS, refresh_token="whatever")


async def test_a_rate_limited_exchange_is_unreachable_and_keeps_the_code_usable(
    fake: FakeOAuth,
) -> None:
    """Google answers a rate limit with 429 `{"error": "rate_limit_exceeded"}`: a retry, not
    a refused client (which would throw the user's valid code away)."""
    oauth = provider(fake, "google")
    url = oauth.authorization_url(
        CREDS, redirect_uri=REDIRECT, scopes=["x:y"], state="s", code_verifier=VERIFIER
    )
    code = authorize(url)
    fake.fail("google", "token", [429])
    with pytest.raises(ProviderUnreachableError) as err:
        await oauth.exchange(CREDS, code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT)
    assert err.value.step == "code exchange"
    tokens = await oauth.exchange(CREDS, code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT)
    assert tokens.access_token.get_secret_value() in fake.issued()


@pytest.mark.parametrize("name", ["slack", "google"])
async def test_an_answer_trickling_past_the_timeout_fails_within_it(
    fake: FakeOAuth, name: str
) -> None:
    """httpx's `timeout=` bounds each phase of a request (connecting, sending, each read), so
    a token answer whose pieces each come within it (0.4 s apart, timeout 1 s) held the
    refresh until its last piece (4 s): a refresh longer than the timeout the refresh claim
    is sized on. The whole call now ends at the timeout, as the transient error a timeout
    is (the refresh is retried; the claim is let go)."""
    ends = Endpoints(**fake.endpoints(name))
    oauth = SlackOAuth(ends, timeout=1) if name == "slack" else GoogleOAuth(ends, timeout=1)
    code = authorize(
        oauth.authorization_url(
            CREDS, redirect_uri=REDIRECT, scopes=["x:y"], state="s", code_verifier=VERIFIER
        )
    )
    tokens = await oauth.exchange(CREDS, code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT)
    assert tokens.refresh_token is not None
    fake.trickle(name, "token", seconds=4.0, pieces=10)
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(ProviderUnreachableError) as err:
        await oauth.refresh(CREDS, refresh_token=tokens.refresh_token.get_secret_value())

    took = loop.time() - start
    assert 1.0 <= took < 2.0, took
    assert (err.value.step, err.value.code) == ("refresh", "TimeoutError")
    assert "did not answer within 1 s" in str(err.value)
    assert tokens.refresh_token.get_secret_value() not in str(err.value)


async def test_connection_refused_is_unreachable() -> None:
    closed = Endpoints(authorize="http://127.0.0.1:9/a", token="http://127.0.0.1:9/t", revoke="x")
    with pytest.raises(ProviderUnreachableError) as err:
        await SlackOAuth(closed, timeout=2).refresh(CREDS, refresh_token="secret-refresh")
    assert "secret-refresh" not in str(err.value)


async def test_slack_user_scopes_give_a_user_token_beside_the_bot_token(fake: FakeOAuth) -> None:
    """`user_scope` on the authorize URL; the exchange's `authed_user` carries the user token
    (with rotation: its refresh token and expiry); it refreshes through oauth.v2.access with
    its own refresh token; revoke revokes both tokens."""
    oauth = provider(fake, "slack")
    url = oauth.authorization_url(
        CREDS,
        redirect_uri=REDIRECT,
        scopes=["chat:write"],
        state="s",
        code_verifier=VERIFIER,
        user_scopes=["search:read", "users:read"],
    )
    assert parse_qs(urlsplit(url).query)["user_scope"] == ["search:read,users:read"]
    code = authorize(url)

    tokens = await oauth.exchange(CREDS, code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT)

    assert tokens.token_type == "bot"
    assert tokens.scopes == ("chat:write",)
    user = tokens.user
    assert user is not None
    assert user.access_token.get_secret_value().startswith("xoxe.xoxp-")
    assert user.access_token != tokens.access_token
    assert user.scopes == ("search:read", "users:read")
    assert user.refresh_token is not None
    assert user.expires_at is not None
    assert user.expires_at > dt.datetime.now(dt.UTC)
    assert user.access_token.get_secret_value() not in repr(tokens)
    assert user.access_token.get_secret_value() not in repr(user)

    fresh = await oauth.refresh(CREDS, refresh_token=user.refresh_token.get_secret_value())
    assert fresh.token_type == "user"
    assert fresh.access_token.get_secret_value().startswith("xoxe.xoxp-")
    assert fresh.access_token != user.access_token
    assert fresh.scopes == ("search:read", "users:read")
    assert fresh.refresh_token is not None

    both = TokenSet(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        token_type="bot",
        scopes=tokens.scopes,
        user=UserToken(fresh.access_token, fresh.refresh_token, fresh.expires_at, fresh.scopes),
    )
    await oauth.revoke(CREDS, tokens=both)
    revoked = fake.state("slack").revoked
    assert tokens.access_token.get_secret_value() in revoked
    assert fresh.access_token.get_secret_value() in revoked

    # without user scopes none are asked for, and there is no user token
    url = oauth.authorization_url(
        CREDS, redirect_uri=REDIRECT, scopes=["chat:write"], state="s", code_verifier=VERIFIER
    )
    assert "user_scope" not in parse_qs(urlsplit(url).query)
    tokens = await oauth.exchange(
        CREDS, code=authorize(url), code_verifier=VERIFIER, redirect_uri=REDIRECT
    )
    assert tokens.user is None
