"""TokenReader over a token Secret whose `expires_at` a user edited by hand: an unreadable
value counts as expired (the reader asks the operator for a refresh), it never fails the
request with a 500; over a token Secret the connection does not control (planted by
someone who may create Secrets): refused, naming the Secret, logged once, never used; and over
Slack's user token, whose expiry is its own: an expired one holds up only its callers."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.common.connections import tokens_for
from services.common.errors import ApiError
from services.common.oauth_tokens import (
    NotConnectedError,
    OAuthTokenSettings,
    TokenReader,
    TokenSecretNotOwnedError,
    UserTokenExpiredError,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


CONNECTION = {
    "apiVersion": "xynergy.io/v1alpha1",
    "kind": "OAuthConnection",
    "metadata": {"name": "acme-gmail", "namespace": "default", "uid": "u1", "generation": 1},
    "spec": {
        "provider": "gmail",
        "clientSecretRef": {"name": "client"},
        "scopes": ["https://www.googleapis.com/auth/gmail.readonly"],
        "redirectURL": "https://app.example/cb",
        "tenant": "acme",
        "tokenSecretName": "acme-gmail-tokens",
    },
    "status": {"phase": "Connected"},
}


OWNER = {
    "apiVersion": "xynergy.io/v1alpha1",
    "kind": "OAuthConnection",
    "name": "acme-gmail",
    "uid": "u1",
    "controller": True,
    "blockOwnerDeletion": True,
}
LATER = "2026-03-01T13:00:00Z"
ACCESS, REFRESH = "AT-planted-9f3k", "RT-planted-9f3k"


@dataclass
class Kube:
    expires_at: str
    owners: list[dict[str, Any]] = field(default_factory=lambda: [OWNER])
    patches: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    """More keys of the token Secret (Slack's user token)."""
    connection: dict[str, Any] = field(default_factory=lambda: CONNECTION)
    refreshed: dict[str, str] | None = None
    """Keys the operator writes once a refresh was asked for (one watch event), else none."""

    async def _items(self) -> AsyncIterator[dict[str, Any]]:
        yield self.connection

    def list(self, res: Any, *, namespace: str | None = None) -> Any:
        return self._items()

    async def get(self, res: Any, name: str, *, namespace: str | None = None) -> Any:
        data = {"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": self.expires_at}
        data |= self.extra
        meta = {"name": name, "namespace": namespace, "uid": "s1", "ownerReferences": self.owners}
        return {"metadata": meta, "data": {k: _b64(v) for k, v in data.items()}}

    async def patch(self, res: Any, name: str, obj: Any, **_: Any) -> Any:
        self.patches.append(obj)

    async def _events(self) -> AsyncIterator[tuple[str, Any]]:
        if self.refreshed is not None and self.patches:
            self.extra |= self.refreshed
            yield "MODIFIED", {}

    def watch(self, res: Any, **_: Any) -> Any:
        return self._events()


@pytest.mark.parametrize("value", ["2000-01-01T00:00:00ZZ", "next tuesday"])
async def test_an_unreadable_expiry_asks_for_a_refresh(value: str) -> None:
    kube = Kube(expires_at=value)
    settings = OAuthTokenSettings(refresh_wait_seconds=0.01)
    reader = TokenReader(kube, settings=settings, clock=lambda: NOW)

    with pytest.raises(NotConnectedError) as err:
        await reader.tokens("acme", "gmail")

    assert err.value.phase == "Expired"  # the operator did not refresh in time
    assert len(kube.patches) == 1
    assert "xynergy.io/refresh-requested" in kube.patches[0]["metadata"]["annotations"]


async def test_the_connections_own_token_secret_is_used() -> None:
    reader = TokenReader(Kube(expires_at=LATER), clock=lambda: NOW)

    tokens = await reader.tokens("acme", "gmail")

    assert tokens.access_token.get_secret_value() == ACCESS


@pytest.mark.parametrize(
    "owners",
    [
        [],  # made by hand
        [OWNER | {"uid": "u-other"}],  # another (or an earlier) connection of that name
        [OWNER | {"name": "acme-slack", "uid": "u-other"}],
        [OWNER | {"kind": "XynergyService"}],
        [OWNER | {"apiVersion": "evil.example/v1alpha1"}],
        [OWNER | {"controller": False}],  # names the connection, but is not its controller
        [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "c", "controller": True},
            OWNER | {"controller": False},
        ],
    ],
)
async def test_a_token_secret_the_connection_does_not_control_is_refused(
    owners: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    kube = Kube(expires_at=LATER, owners=owners)
    reader = TokenReader(kube, clock=lambda: NOW)
    caplog.set_level(logging.WARNING)

    for _ in range(3):
        with pytest.raises(TokenSecretNotOwnedError) as err:
            await reader.tokens("acme", "gmail")

    message = str(err.value)
    assert "token Secret default/acme-gmail-tokens is not controlled by OAuthConnection" in message
    assert "default/acme-gmail" in message
    assert ACCESS not in message
    assert REFRESH not in message
    assert err.value.body()["status"] == 500
    assert err.value.body()["error"] == "oauth_secret_not_owned"
    assert kube.patches == []  # not even a refresh asked for on its behalf
    warned = [r for r in caplog.records if "not controlled" in r.getMessage()]
    assert len(warned) == 1  # logged once, refused every time
    assert all("planted" not in str(r.__dict__) for r in warned)


async def test_a_foreign_token_secret_is_a_500_naming_it_through_tokens_for() -> None:
    reader = TokenReader(Kube(expires_at=LATER, owners=[]), clock=lambda: NOW)

    with pytest.raises(ApiError) as err:
        await tokens_for(reader, "acme", "gmail")

    assert err.value.status == 500
    assert err.value.error == "oauth_secret_not_owned"
    assert "default/acme-gmail-tokens" in err.value.message


USER = {
    "user_access_token": "xoxe.xoxp-user-9f3k",
    "user_refresh_token": "xoxe-1-user",
    "user_scope": "search:read users:read",
}


async def test_the_slack_user_token_is_read_beside_the_bot_token() -> None:
    kube = Kube(expires_at=LATER, extra=USER | {"user_expires_at": LATER})
    reader = TokenReader(kube, clock=lambda: NOW)

    tokens = await reader.tokens("acme", "gmail")

    assert tokens.user_access_token.get_secret_value() == "xoxe.xoxp-user-9f3k"
    assert tokens.user_scopes == ("search:read", "users:read")
    assert tokens.user_expires_at == dt.datetime(2026, 3, 1, 13, 0, tzinfo=dt.UTC)
    assert "xoxp" not in repr(tokens)
    assert kube.patches == []


EXPIRED_USER = USER | {"user_expires_at": "2026-03-01T11:59:00Z"}
SHORT_WAIT = OAuthTokenSettings(refresh_wait_seconds=0.01)


async def test_an_expired_user_token_leaves_the_bot_token_to_its_callers() -> None:
    """The bot token is valid: channels and messages get it at once, without the expired user
    token, and nothing waits on a refresh."""
    kube = Kube(expires_at=LATER, extra=EXPIRED_USER)
    reader = TokenReader(kube, settings=SHORT_WAIT, clock=lambda: NOW)

    tokens = await reader.tokens("acme", "gmail")

    assert tokens.access_token.get_secret_value() == ACCESS
    assert tokens.user_access_token.get_secret_value() == ""
    assert tokens.user_scopes == ()
    assert kube.patches == []


async def test_a_caller_of_the_expired_user_token_gets_an_error_naming_it() -> None:
    """Search needs the user token: a refresh is asked for, and when none comes the error
    names the user token, its expiry and where to authorize again (a 409), no token value."""
    url = "https://slack.example/oauth/v2/authorize?user_scope=search%3Aread&state=s"
    degraded = CONNECTION | {"status": {"phase": "Connected", "authorizationURL": url}}
    kube = Kube(expires_at=LATER, extra=EXPIRED_USER, connection=degraded)
    reader = TokenReader(kube, settings=SHORT_WAIT, clock=lambda: NOW)

    with pytest.raises(UserTokenExpiredError) as err:
        await reader.tokens("acme", "gmail", user_token=True)

    message = str(err.value)
    assert message == (
        "the user token of OAuthConnection default/acme-gmail (tenant 'acme') expired at "
        "2026-03-01T11:59:00Z and was not refreshed; its bot token still works, but this "
        f"needs the user token: authorize again at {url}"
    )
    assert len(kube.patches) == 1  # the operator was asked to refresh it
    body = err.value.body()
    assert (body["error"], body["status"], body["authorizationURL"]) == (
        "oauth_user_token_expired", 409, url
    )  # fmt: skip
    assert all(v not in str(body) for v in (ACCESS, REFRESH, USER["user_access_token"]))
    with pytest.raises(UserTokenExpiredError):  # through tokens_for: the 409 handler's type
        await tokens_for(reader, "acme", "gmail", user_token=True)


async def test_a_caller_of_the_user_token_gets_it_once_refreshed() -> None:
    fresh = {"user_access_token": "xoxe.xoxp-user-fresh", "user_expires_at": LATER}
    kube = Kube(expires_at=LATER, extra=EXPIRED_USER, refreshed=fresh)
    reader = TokenReader(kube, clock=lambda: NOW)

    tokens = await reader.tokens("acme", "gmail", user_token=True)

    assert tokens.user_access_token.get_secret_value() == "xoxe.xoxp-user-fresh"
    assert len(kube.patches) == 1


async def test_an_expired_bot_token_still_holds_up_every_caller() -> None:
    kube = Kube(expires_at="2026-03-01T11:59:00Z", extra=USER | {"user_expires_at": LATER})
    reader = TokenReader(kube, settings=SHORT_WAIT, clock=lambda: NOW)

    for user_token in (False, True):
        with pytest.raises(NotConnectedError) as err:
            await reader.tokens("acme", "gmail", user_token=user_token)
        assert not isinstance(err.value, UserTokenExpiredError)
        assert err.value.phase == "Expired"
