"""A tenant's OAuth tokens and the usable OAuthConnections of a provider, for services.

:func:`tokens_for` reads a tenant's tokens through a :class:`TokenSource` (the
:class:`services.common.oauth_tokens.TokenReader`) and turns failures into the one error
shape, never carrying a token; :func:`usable_connections` lists the provider's connections
that can be used now (status only; tokens stay in their Secrets).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import httpx
from lightkube import ApiError as KubeApiError

from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.oauthconnection import OAuthConnection, OAuthPhase, OAuthProvider
from services.common.errors import ApiError
from services.common.oauth_tokens import (
    NotConnectedError,
    OAuthTokens,
    TokenSecretNotOwnedError,
)

__all__ = ["TokenSource", "tokens_for", "usable_connections"]

log = logging.getLogger("xynergy.services")


class TokenSource(Protocol):
    """What :class:`services.common.oauth_tokens.TokenReader` offers."""

    async def tokens(
        self, tenant: str, provider: str, *, user_token: bool = False
    ) -> OAuthTokens: ...


async def tokens_for(
    source: TokenSource | None, tenant: str, provider: str, *, user_token: bool = False
) -> OAuthTokens:
    """The tenant's tokens, or an error naming what is wrong (never a token). ``user_token``:
    the caller needs Slack's user token (an expired one is then an error, not left out)."""
    if source is None:
        raise ApiError(503, "no access to OAuthConnections (no Kubernetes configuration)")
    try:
        return await source.tokens(tenant, provider, user_token=user_token)
    except NotConnectedError:
        raise
    except TokenSecretNotOwnedError as exc:  # logged once by the reader; never its data
        raise ApiError(exc.status, str(exc), error="oauth_secret_not_owned") from None
    except (httpx.HTTPError, KubeApiError, OSError) as exc:
        log.warning("token read failed", extra={"fields": {"error": type(exc).__name__}})
        msg = "could not read the OAuthConnection; retry"
        raise ApiError(503, msg, headers={"Retry-After": "1"}) from exc


async def usable_connections(
    client: Any, provider: OAuthProvider, *, namespace: str | None = None
) -> list[OAuthConnection]:
    """The provider's OAuthConnections that are Connected (or Refreshing), read through the
    apis model. Objects the model refuses are skipped."""
    from lightkube.generic_resource import create_namespaced_resource
    from pydantic import ValidationError

    crd = OAuthConnection.crd
    resource = create_namespaced_resource(GROUP, VERSION, crd.kind, crd.plural)
    out: list[OAuthConnection] = []
    async for item in client.list(resource, namespace=namespace or "*"):
        try:
            conn = OAuthConnection.model_validate(
                item if isinstance(item, dict) else item.to_dict()
            )
        except ValidationError:
            continue
        phase = conn.status.phase if conn.status else None
        if conn.spec.provider == provider and phase in (
            OAuthPhase.CONNECTED,
            OAuthPhase.REFRESHING,
        ):
            out.append(conn)
    return out
