"""Slack OAuth v2: `oauth/v2/authorize`, `oauth.v2.access` (code and, with token rotation,
refresh), `auth.revoke`.

Slack's quirks: scopes are comma-separated; errors come as HTTP 200 (429 when rate limited)
with `{"ok": false, "error": "<code>"}`, which `normalise` turns into RFC 6749's `{"error"}`
for authlib; the account is `team.id` and `authed_user.id`; tokens expire (with `expires_in`
and a `refresh_token`) only when the app has token rotation on; `auth.revoke` revokes the
access token it is given. User scopes (`user_scope=` on the authorize URL) give a user token
(xoxp-) beside the bot token, under `authed_user` (`access_token`, `scope`, `token_type:
user`, and with rotation `refresh_token`, `expires_in`); it is refreshed through the same
`oauth.v2.access` with its own refresh token (the answer then has it at the top level).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any, ClassVar

from pydantic import SecretStr

from controllers.providers.oauth import (
    Account,
    ClientCredentials,
    GrantRefusedError,
    TokenSet,
    UserToken,
    endpoints,
)
from controllers.providers.oauth.oauth2 import OAuth2Provider, httpx

__all__ = ["DEFAULT_ENDPOINTS", "SlackOAuth"]

DEFAULT_ENDPOINTS = endpoints.SLACK


class SlackOAuth(OAuth2Provider):
    name: ClassVar[str] = "slack"
    grant_errors: ClassVar[frozenset[str]] = frozenset(
        {
            "invalid_code",
            "code_already_used",
            "code_expired",
            "invalid_refresh_token",
            "invalid_grant",
            "token_revoked",
            "token_expired",
            "invalid_auth",
            "account_inactive",
        }
    )
    transient_errors: ClassVar[frozenset[str]] = frozenset(
        {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
    )
    scope_separator: ClassVar[str] = ","

    def normalise(self, response: httpx.Response) -> httpx.Response:
        try:
            body = response.json()
        except ValueError:
            return response
        if not isinstance(body, dict) or body.get("ok", True):
            return response
        status = response.status_code if response.status_code >= 400 else 400
        return httpx.Response(
            status,
            json={"error": str(body.get("error") or "unknown_error")},
            request=response.request,
        )

    def user_scope_params(self, user_scopes: list[str]) -> dict[str, str]:
        return {"user_scope": self.scope_separator.join(user_scopes)}

    def user_token(self, token: dict[str, Any]) -> UserToken | None:
        """`authed_user`'s token (present only when `user_scope` was asked for): its
        `access_token` (xoxp-, or xoxe.xoxp- with token rotation), `scope` (comma-separated)
        and, with token rotation, `refresh_token` and `expires_in`."""
        user = token.get("authed_user")
        if not isinstance(user, dict) or not user.get("access_token"):
            return None
        refresh = user.get("refresh_token")
        expires_in = user.get("expires_in")
        return UserToken(
            access_token=SecretStr(str(user["access_token"])),
            refresh_token=SecretStr(str(refresh)) if refresh else None,
            expires_at=(
                self._clock() + dt.timedelta(seconds=int(expires_in)) if expires_in else None
            ),
            scopes=tuple(str(user.get("scope") or "").replace(",", " ").split()),
        )

    def account(self, token: dict[str, Any]) -> Account:
        team = token.get("team") or {}
        user = token.get("authed_user") or {}
        return Account(team_id=team.get("id"), user_id=user.get("id"))

    async def revoke(self, client: ClientCredentials, *, tokens: TokenSet) -> None:
        # auth.revoke revokes the token it is called with: the access token
        access_only = TokenSet(
            access_token=tokens.access_token,
            refresh_token=None,
            expires_at=tokens.expires_at,
            token_type=tokens.token_type,
            scopes=tokens.scopes,
        )
        await super().revoke(client, tokens=access_only)
        if tokens.user is not None:  # the user token is a token of its own: revoked as well
            user_only = TokenSet(
                access_token=tokens.user.access_token,
                refresh_token=None,
                expires_at=tokens.user.expires_at,
                token_type="user",
                scopes=tokens.user.scopes,
            )
            with contextlib.suppress(GrantRefusedError):  # already revoked: nothing to do
                await super().revoke(client, tokens=user_only)

    def revoke_ok(self, response: httpx.Response) -> None:
        if not _ok(response):
            self._raise_status(self.normalise(response), "revoke")


def _ok(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return response.status_code == 200 and isinstance(body, dict) and bool(body.get("ok"))
