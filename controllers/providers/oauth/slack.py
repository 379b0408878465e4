"""Slack OAuth v2: `oauth/v2/authorize`, `oauth.v2.access` (code and, with token rotation,
refresh), `auth.revoke`.

Slack's quirks: scopes are comma-separated; errors come as HTTP 200 (429 when rate limited)
with `{"ok": false, "error": "<code>"}`, which `normalise` turns into RFC 6749's `{"error"}`
for authlib; the account is `team.id` and `authed_user.id`; tokens expire (with `expires_in`
and a `refresh_token`) only when the app has token rotation on; `auth.revoke` revokes the
access token it is given.
"""

from __future__ import annotations

from typing import Any, ClassVar

from controllers.providers.oauth import Account, ClientCredentials, Endpoints, TokenSet
from controllers.providers.oauth.oauth2 import OAuth2Provider, httpx

__all__ = ["DEFAULT_ENDPOINTS", "SlackOAuth"]

DEFAULT_ENDPOINTS = Endpoints(
    authorize="https://slack.com/oauth/v2/authorize",
    token="https://slack.com/api/oauth.v2.access",
    revoke="https://slack.com/api/auth.revoke",
)


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

    def revoke_ok(self, response: httpx.Response) -> None:
        if not _ok(response):
            self._raise_status(self.normalise(response), "revoke")


def _ok(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return response.status_code == 200 and isinstance(body, dict) and bool(body.get("ok"))
