"""FastAPI dependencies of the Slack routers: a Slack client holding the caller's tenant's
token (viewer reads, editor posts: :mod:`services.common.roles`).

The token comes from :class:`services.common.oauth_tokens.TokenReader` (the tenant's
OAuthConnection and its Secret), never from the request. Until the connection is usable the
reader raises :class:`NotConnectedError`, answered as 409 naming the connection and where to
authorize it. The client shares the app's aiohttp session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from slack_sdk.web.async_client import AsyncWebClient

from services.common.connections import tokens_for
from services.common.roles import Editor, Viewer

__all__ = ["Editor", "Slack", "SlackCall", "Viewer"]

PROVIDER = "slack"


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
