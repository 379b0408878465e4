"""FastAPI dependencies of the Slack routers: a Slack client holding the caller's tenant's
token (viewer reads, editor posts: :mod:`services.common.roles`).

The token comes from :class:`services.common.oauth_tokens.TokenReader` (the tenant's
OAuthConnection and its Secret), never from the request. Until the connection is usable the
reader raises :class:`NotConnectedError`, answered as 409 naming the connection and where to
authorize it. The client shares the app's aiohttp session. `SlackUser` is for the routes that
need the user token (search): an expired one is a 409 `oauth_user_token_expired` there, while
the other routes keep the bot token (the expired user token left out).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from slack_sdk.web.async_client import AsyncWebClient

from services.common.connections import tokens_for
from services.common.roles import Editor, Viewer

__all__ = ["Editor", "Slack", "SlackCall", "SlackUser", "Viewer"]

PROVIDER = "slack"


@dataclass(frozen=True)
class SlackCall:
    """Slack clients for one request, and the connection they act for (for messages):
    `client` holds the bot token; `user` the user token (None when the connection has none),
    granted `user_scopes`."""

    client: AsyncWebClient
    connection: str
    user: AsyncWebClient | None = None
    user_scopes: tuple[str, ...] = ()


async def _slack(request: Request, identity: Viewer) -> SlackCall:
    return await _call(request, identity, user_token=False)


async def _slack_user(request: Request, identity: Viewer) -> SlackCall:
    return await _call(request, identity, user_token=True)


async def _call(request: Request, identity: Viewer, *, user_token: bool) -> SlackCall:
    state: Any = request.app.state
    tokens = await tokens_for(state.tokens, identity.tenant_id, PROVIDER, user_token=user_token)
    session = await state.http_session()

    def client(token: str) -> AsyncWebClient:
        return AsyncWebClient(
            token=token,
            base_url=state.settings.api_url,
            timeout=state.settings.request_timeout_seconds,
            session=session,
            logger=logging.getLogger("xynergy.slack.sdk"),
        )

    user = tokens.user_access_token.get_secret_value()
    return SlackCall(
        client=client(tokens.access_token.get_secret_value()),
        connection=tokens.connection,
        user=client(user) if user else None,
        user_scopes=tokens.user_scopes,
    )


Slack = Annotated[SlackCall, Depends(_slack)]
SlackUser = Annotated[SlackCall, Depends(_slack_user)]
"""A SlackCall whose user token, when the connection has one, is valid (search)."""
