"""FastAPI dependencies of the Slack routers: the caller (viewer reads, editor posts) and a
Slack client holding the caller's tenant's token.

The token comes from :class:`services.common.oauth_tokens.TokenReader` (the tenant's
OAuthConnection and its Secret), never from the request. Until the connection is usable the
reader raises :class:`NotConnectedError`, answered as 409 naming the connection and where to
authorize it. The client shares the app's aiohttp session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import httpx
from fastapi import Depends, Request
from lightkube import ApiError as KubeApiError
from slack_sdk.web.async_client import AsyncWebClient

from services.common.identity import CurrentIdentity
from services.common.oauth_tokens import NotConnectedError, OAuthTokens
from services.common.tenancy import Identity
from services.slack.errors import ApiError

__all__ = ["Editor", "Slack", "SlackCall", "TokenSource", "Viewer", "tokens_for"]

log = logging.getLogger("xynergy.slack")

PROVIDER = "slack"
_ROLE_LEVELS = {"viewer": 1, "editor": 2, "admin": 3}


class TokenSource(Protocol):
    """What :class:`services.common.oauth_tokens.TokenReader` offers."""

    async def tokens(self, tenant: str, provider: str) -> OAuthTokens: ...


def _role(minimum: str) -> Callable[[Identity], Identity]:
    def check(identity: CurrentIdentity) -> Identity:
        level = max((_ROLE_LEVELS.get(r, 0) for r in identity.roles), default=0)
        if level < _ROLE_LEVELS[minimum]:
            raise ApiError(403, f"this needs the {minimum} role")
        return identity

    return check


Viewer = Annotated[Identity, Depends(_role("viewer"))]
Editor = Annotated[Identity, Depends(_role("editor"))]


async def tokens_for(source: TokenSource | None, tenant: str, provider: str) -> OAuthTokens:
    """The tenant's tokens, or an error naming what is wrong (never a token)."""
    if source is None:
        raise ApiError(503, "no access to OAuthConnections (no Kubernetes configuration)")
    try:
        return await source.tokens(tenant, provider)
    except NotConnectedError:
        raise
    except (httpx.HTTPError, KubeApiError, OSError) as exc:
        log.warning("token read failed", extra={"fields": {"error": type(exc).__name__}})
        msg = "could not read the OAuthConnection; retry"
        raise ApiError(503, msg, headers={"Retry-After": "1"}) from exc


@dataclass(frozen=True)
class SlackCall:
    """A Slack client for one request, and the connection it acts for (for messages)."""

    client: AsyncWebClient
    connection: str


async def _slack(request: Request, identity: Viewer) -> SlackCall:
    state: Any = request.app.state
    tokens = await tokens_for(state.tokens, identity.tenant_id, PROVIDER)
    client = AsyncWebClient(
        token=tokens.access_token.get_secret_value(),
        base_url=state.settings.api_url,
        timeout=state.settings.request_timeout_seconds,
        session=await state.http_session(),
        logger=logging.getLogger("xynergy.slack.sdk"),
    )
    return SlackCall(client=client, connection=tokens.connection)


Slack = Annotated[SlackCall, Depends(_slack)]
