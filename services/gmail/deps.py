"""FastAPI dependencies of the Gmail routers: the caller's tenant's Gmail (viewer reads,
editor sends and modifies; :mod:`services.common.roles`).

The token comes from the tenant's OAuthConnection through
:class:`services.common.oauth_tokens.TokenReader`, never from the request; until the
connection is usable the answer is 409 naming it and where to authorize it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from services.common.connections import tokens_for
from services.common.roles import Editor, Viewer
from services.gmail.gmailapi import GmailApi

__all__ = ["PROVIDER", "Editor", "Gmail", "Viewer"]

PROVIDER = "gmail"


async def _gmail(request: Request, identity: Viewer) -> GmailApi:
    state: Any = request.app.state
    tokens = await tokens_for(state.tokens, identity.tenant_id, PROVIDER)
    return GmailApi(
        tokens.access_token.get_secret_value(),
        api_url=state.settings.api_url,
        timeout=state.settings.request_timeout_seconds,
        connection=tokens.connection,
    )


Gmail = Annotated[GmailApi, Depends(_gmail)]
