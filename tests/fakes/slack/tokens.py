"""A stand-in for :class:`services.common.oauth_tokens.TokenReader` in the Slack and Gmail
unit tests: a tenant with an access token is connected; any other tenant's connection is
PendingAuthorization with an authorization URL (the reader's NotConnectedError)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pydantic import SecretStr

from services.common.oauth_tokens import NotConnectedError, OAuthTokens

__all__ = ["AUTHORIZE_URL", "StaticTokens"]

AUTHORIZE_URL = "https://provider.example/authorize?client_id=1&state=s"


@dataclass
class StaticTokens:
    access: dict[str, str] = field(default_factory=dict)
    """tenant -> access token."""
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def tokens(self, tenant: str, provider: str) -> OAuthTokens:
        self.asked.append((tenant, provider))
        connection = f"team/{provider}-{tenant}"
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
        )
