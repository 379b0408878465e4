"""A stand-in for :class:`services.common.oauth_tokens.TokenReader` in the Slack and Gmail
unit tests: a tenant with an access token is connected; any other tenant's connection is
PendingAuthorization with an authorization URL (the reader's NotConnectedError)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pydantic import SecretStr

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.oauth_tokens import NotConnectedError, OAuthTokens, UserTokenExpiredError
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity

__all__ = ["AUTHORIZE_URL", "StaticTokens", "identity_headers"]

AUTHORIZE_URL = "https://provider.example/authorize?client_id=1&state=s"


@dataclass
class StaticTokens:
    access: dict[str, str] = field(default_factory=dict)
    """tenant -> access token."""
    user: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    """tenant -> (Slack user token, its user scopes)."""
    expired_user: set[str] = field(default_factory=set)
    """Tenants whose user token expired (left out, or UserTokenExpiredError for a caller that
    needs it), as the reader does."""
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def tokens(self, tenant: str, provider: str, *, user_token: bool = False) -> OAuthTokens:
        self.asked.append((tenant, provider))
        connection = f"team/{provider}-{tenant}"
        if tenant in self.expired_user and user_token:
            raise UserTokenExpiredError(
                tenant=tenant,
                provider=provider,
                connection=connection,
                phase="Connected",
                authorization_url=AUTHORIZE_URL,
                expired_at=dt.datetime(2026, 3, 1, 11, 59, tzinfo=dt.UTC),
            )
        user = ("", ()) if tenant in self.expired_user else self.user.get(tenant, ("", ()))
        if tenant not in self.access:
            raise NotConnectedError(
                tenant=tenant,
                provider=provider,
                connection=connection,
                phase="PendingAuthorization",
                authorization_url=AUTHORIZE_URL,
            )
        return OAuthTokens(
            connection=connection,
            tenant=tenant,
            provider=provider,
            access_token=SecretStr(self.access[tenant]),
            refresh_token=SecretStr(""),
            token_type="bearer",
            scopes=(),
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
            user_access_token=SecretStr(user[0]),
            user_scopes=user[1],
        )


def identity_headers(
    internal: InternalIdentitySettings, *roles: str, tenant: str = "acme"
) -> dict[str, str]:
    """The gateway's signed identity header for a caller of ``tenant`` (viewer by default)."""
    identity = Identity(user_id="u-1", tenant_id=tenant, roles=roles or ("viewer",))
    return {IDENTITY_HEADER: InternalIdentitySigner(internal).sign(identity)}
