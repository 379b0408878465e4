"""OAuth providers (Slack, Google) behind one small interface, on authlib.

Each provider module knows one provider's endpoints and quirks; the protocol parts
(authorization URL with state and PKCE S256, code exchange, refresh, revoke) are authlib's
`AsyncOAuth2Client`. Errors come out in three kinds the controller can act on:
`GrantRefusedError` (the code or refresh token is no good: the user must authorize again),
`ClientRefusedError` (the provider refuses the client itself: a wrong client id or secret) and
`ProviderUnreachableError` (network, 5xx, rate limits: retry). No error message ever holds a
token: only the provider's error code and description and the endpoint.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import SecretStr

__all__ = [
    "Account",
    "ClientCredentials",
    "ClientRefusedError",
    "Endpoints",
    "GrantRefusedError",
    "OAuthError",
    "OAuthProvider",
    "ProviderUnreachableError",
    "TokenSet",
    "UserToken",
]


@dataclass(frozen=True)
class Endpoints:
    """Where a provider's authorize, token and revoke endpoints are (settings point tests at
    fakes)."""

    authorize: str
    token: str
    revoke: str


@dataclass(frozen=True, repr=False)
class ClientCredentials:
    """The OAuth client (from `spec.clientSecretRef`)."""

    client_id: str
    client_secret: SecretStr

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r})"


@dataclass(frozen=True)
class Account:
    """Who the tokens act as (never a token)."""

    team_id: str | None = None
    user_id: str | None = None
    email: str | None = None


@dataclass(frozen=True, repr=False)
class UserToken:
    """Slack's user token (`authed_user` of `oauth.v2.access`, for the `user_scope` asked),
    issued beside the bot token. `repr` shows no token."""

    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: dt.datetime | None
    scopes: tuple[str, ...]
    issued_at: dt.datetime | None = None
    """When the operator received it (None: with the access token)."""

    def __repr__(self) -> str:
        return f"UserToken(scopes={self.scopes!r}, expires_at={self.expires_at!r})"


@dataclass(frozen=True, repr=False)
class TokenSet:
    """Tokens from the provider. `repr` shows no token."""

    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: dt.datetime | None
    token_type: str
    scopes: tuple[str, ...]
    account: Account = field(default_factory=Account)
    user: UserToken | None = None
    """Slack: the user token, when user scopes were asked for and granted."""

    def __repr__(self) -> str:
        return f"TokenSet(token_type={self.token_type!r}, expires_at={self.expires_at!r})"


class OAuthError(Exception):
    """A provider call failed; `code` is the provider's error code (e.g. invalid_grant)."""

    def __init__(self, provider: str, step: str, code: str, description: str = "") -> None:
        self.provider, self.step, self.code = provider, step, code
        text = f"{provider} {step}: {code}"
        super().__init__(f"{text} ({description})" if description else text)


class GrantRefusedError(OAuthError):
    """The authorization code or refresh token is refused: the user must authorize again."""


class ClientRefusedError(OAuthError):
    """The provider refuses the OAuth client (id, secret or redirect URI)."""


class ProviderUnreachableError(OAuthError):
    """The provider could not be reached or answered 5xx/429: retry later."""


class OAuthProvider(Protocol):
    """One provider's OAuth endpoints."""

    @property
    def name(self) -> str: ...

    def authorization_url(
        self,
        client: ClientCredentials,
        *,
        redirect_uri: str,
        scopes: list[str],
        state: str,
        code_verifier: str,
        user_scopes: list[str] | None = None,
    ) -> str: ...

    async def exchange(
        self, client: ClientCredentials, *, code: str, code_verifier: str, redirect_uri: str
    ) -> TokenSet: ...

    async def refresh(self, client: ClientCredentials, *, refresh_token: str) -> TokenSet: ...

    async def revoke(self, client: ClientCredentials, *, tokens: TokenSet) -> None: ...
