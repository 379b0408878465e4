"""The OAuth callback: ``GET /api/v2/oauth/{provider}/callback?code=...&state=...``.

The provider sends the user's browser back here (through the frontend, which adds the user's
``Authorization: Bearer`` token: the callback belongs to a signed-in user of the tenant that
owns the connection). The gateway does not talk to the provider: it checks the state and hands
the code to the operator, which holds the PKCE verifier and the client secret and exchanges it
(services never import controllers, and this keeps the client secret out of the gateway).

Checks, in order, each refusal in the gateway's one error shape: a verified caller (401); a
state that names an OAuthConnection of this provider (400); the caller's tenant is the
connection's (403, and the state stays usable); the connection's authorization Secret is the
operator's (its controller ownerReference is that OAuthConnection, as the services'
TokenReader checks the token Secret: else 500 ``oauth_secret_not_owned`` naming the Secret,
never its data, and nothing is written to it); the state equals the pending one in that
Secret and has not expired (400). Then the state is taken out and
the code put in, in one write under the Secret's resourceVersion: of two requests with the
same state only one write succeeds, so a replay is refused (400). The answer waits (up to
``XYNERGY_GATEWAY_OAUTH_WAIT_SECONDS``, 20) for the operator: 200 with the connection and its
account once Connected, 400 with the operator's reason and the new ``authorizationURL`` when
the provider refused the code, 202 when the exchange is still pending. A connection that is
already Connected (authorizing again for Slack's user token, `docs/oauthconnection.md`) is
answered once its status no longer carries this state: 200 when the URL is gone, else 400 with
its Degraded message and the new URL.

RBAC: get/watch ``oauthconnections``; get/update ``secrets``. Never logs a code or state.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from apis.conditions import READY, get_condition
from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.oauthconnection import (
    OAuthConnection,
    OAuthPhase,
    authorization_secret_name,
    decode_state,
)
from services.common.auth import AuthError, TokenVerifier, bearer_token
from services.common.oauth_tokens import controlled_by
from services.gateway.errors import error_code

__all__ = ["PREFIX", "CallbackRefused", "OAuthCallbackSettings", "oauth_router"]

log = logging.getLogger("xynergy.gateway.oauth")

PREFIX = "/api/v2/oauth/"
_PROVIDERS = {"slack": "slack", "gmail": "gmail", "google": "gmail"}


class OAuthCallbackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_GATEWAY_OAUTH_", extra="ignore")

    wait_seconds: float = Field(default=20.0, ge=0, le=120)


class CallbackRefused(Exception):  # noqa: N818 - a refusal, answered, not an error of ours
    def __init__(
        self,
        status: int,
        message: str,
        *,
        authorization_url: str | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.authorization_url = authorization_url
        self.error = error or error_code(status)

    def response(self) -> JSONResponse:
        body: dict[str, object] = {
            "error": self.error,
            "message": str(self),
            "status": self.status,
        }
        if self.authorization_url is not None:  # where to try again
            body["authorizationURL"] = self.authorization_url
        return JSONResponse(body, status_code=self.status)


def _resources() -> tuple[Any, Any]:
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.resources.core_v1 import Secret

    crd = OAuthConnection.crd
    return create_namespaced_resource(GROUP, VERSION, crd.kind, crd.plural), Secret


def _text(obj: Any, key: str) -> str:
    value = (obj.data or {}).get(key)
    return base64.b64decode(value).decode() if value else ""


class Callback:
    """The callback's work, on an injected lightkube ``AsyncClient`` (built on first use)."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        client: Any = None,
        settings: OAuthCallbackSettings | None = None,
    ) -> None:
        self.verifier = verifier
        self._client = client
        self.settings = settings or OAuthCallbackSettings()
        self._connections, self._secrets = _resources()

    @property
    def client(self) -> Any:
        if self._client is None:
            from lightkube import AsyncClient

            self._client = AsyncClient(field_manager="xynergy-gateway")
        return self._client

    async def handle(self, provider: str, request: Request) -> JSONResponse:
        try:
            return await self._handle(provider, request)
        except CallbackRefused as refused:
            log.log(
                logging.WARNING if refused.status >= 500 else logging.INFO,
                "oauth callback refused",
                extra={"fields": {"status": refused.status, "reason": str(refused)}},
            )
            return refused.response()

    async def _handle(self, provider: str, request: Request) -> JSONResponse:
        try:
            identity = await self.verifier.verify(
                bearer_token(request.headers.get("authorization"))
            )
        except AuthError as exc:
            raise CallbackRefused(401, f"authentication required: {exc}") from None
        kind = _PROVIDERS.get(provider)
        if kind is None:
            raise CallbackRefused(404, f"provider: expected slack or gmail, got {provider!r}")
        query = request.query_params
        state = query.get("state") or ""
        conn = await self._connection(state, kind)
        if conn.spec.tenant != identity.tenant_id:
            raise CallbackRefused(403, "state: issued for another tenant's connection")
        secret = await self._pending(conn, state)
        outcome = query.get("code"), query.get("error")
        if not any(outcome):
            raise CallbackRefused(400, "code: missing (and no error from the provider)")
        await self._consume(secret, code=outcome[0], error=outcome[1])
        return await self._answer(conn, state)

    async def _connection(self, state: str, provider: str) -> OAuthConnection:
        where = decode_state(state) if state else None
        if where is None:
            raise CallbackRefused(
                400, "state: missing or not an authorization state of this platform"
            )
        from lightkube import ApiError

        try:
            obj = await self.client.get(self._connections, where[1], namespace=where[0])
            conn = OAuthConnection.model_validate(obj.to_dict())
        except ApiError as exc:
            if exc.status.code == 404:
                raise CallbackRefused(400, "state: unknown or already used") from None
            raise
        except ValidationError:
            raise CallbackRefused(400, "state: its connection is not valid") from None
        if conn.spec.provider != provider:
            raise CallbackRefused(400, f"state: issued for a {conn.spec.provider} connection")
        return conn

    async def _pending(self, conn: OAuthConnection, state: str) -> Any:
        from lightkube import ApiError

        name = authorization_secret_name(str(conn.metadata.name))
        try:
            secret = await self.client.get(self._secrets, name, namespace=conn.metadata.namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                raise CallbackRefused(400, "state: unknown or already used") from None
            raise
        if not controlled_by(secret.to_dict().get("metadata") or {}, conn):
            where = f"{conn.metadata.namespace}/{name}"
            raise CallbackRefused(
                500,
                f"the authorization Secret {where} is not controlled by OAuthConnection "
                f"{conn.metadata.namespace}/{conn.metadata.name}; nothing was written to it "
                "(delete that Secret: the operator then makes its own)",
                error="oauth_secret_not_owned",
            )
        stored = _text(secret, "state")
        if not stored:
            raise CallbackRefused(400, "state: already used")
        if not secrets.compare_digest(stored.encode(), state.encode()):
            raise CallbackRefused(
                400, "state: does not match the connection's pending authorization"
            )
        expires = _text(secret, "expires_at")
        if not expires or dt.datetime.fromisoformat(
            expires.replace("Z", "+00:00")
        ) <= dt.datetime.now(dt.UTC):
            raise CallbackRefused(400, "state: expired; status.authorizationURL has a new one")
        return secret

    async def _consume(self, secret: Any, *, code: str | None, error: str | None) -> None:
        """State out, code (or error) in: one write under the read resourceVersion."""
        from lightkube import ApiError

        data = dict(secret.data or {})
        data.pop("state", None)
        key, value = ("code", code) if code else ("error", error or "")
        data[key] = base64.b64encode(value[:4096].encode()).decode()
        secret.data = data
        try:
            await self.client.replace(secret)
        except ApiError as exc:
            if exc.status.code in (404, 409):
                raise CallbackRefused(400, "state: already used") from None
            raise

    async def _answer(self, conn: OAuthConnection, state: str) -> JSONResponse:
        name = f"{conn.metadata.namespace}/{conn.metadata.name}"
        latest = await self._outcome(conn, state)
        if latest is None:
            body = {
                "connection": name,
                "phase": "Exchanging",
                "message": "the operator is exchanging the code",
            }
            return JSONResponse(body, status_code=202)
        status = latest.status
        assert status is not None
        if status.phase == OAuthPhase.CONNECTED and not status.authorization_url:
            account = (
                status.account.model_dump(by_alias=True, exclude_none=True)
                if status.account
                else {}
            )
            return JSONResponse(
                {"connection": name, "phase": str(status.phase), "account": account}
            )
        # still Connected with a new URL: authorizing again for Slack's user token failed
        why = get_condition(
            status.conditions, "Degraded" if status.phase == OAuthPhase.CONNECTED else READY
        )
        message = why.message if why else "the provider refused the authorization"
        raise CallbackRefused(
            400, f"authorization failed: {message}", authorization_url=status.authorization_url
        )

    async def _outcome(self, conn: OAuthConnection, state: str) -> OAuthConnection | None:
        """The connection once the operator has handled this state's code, or None."""
        try:
            async with asyncio.timeout(self.settings.wait_seconds):
                async for _, obj in self.client.watch(
                    self._connections,
                    namespace=conn.metadata.namespace,
                    fields={"metadata.name": str(conn.metadata.name)},
                ):
                    latest = OAuthConnection.model_validate(obj.to_dict())
                    if _handled(latest, state):
                        return latest
        except TimeoutError:
            return None
        return None


def _handled(conn: OAuthConnection, state: str) -> bool:
    """The operator has exchanged this state's code (Connected, no URL left) or given up on
    it (a URL with another state). A connection already Connected whose URL still carries
    this state (authorizing again for Slack's user token) has not been handled yet."""
    status = conn.status
    if status is None:
        return False
    if status.authorization_url is None:
        return status.phase == OAuthPhase.CONNECTED
    return state not in _unquoted(status.authorization_url)


def _unquoted(url: str) -> str:
    from urllib.parse import unquote

    return unquote(url)


def oauth_router(verifier: TokenVerifier, *, client: Any = None) -> APIRouter:
    """The callback route; the gateway includes it and dispatches ``/api/v2/oauth/`` to it."""
    router = APIRouter(prefix=PREFIX.rstrip("/"), tags=["oauth"])
    callback = Callback(verifier, client=client)

    @router.get("/{provider}/callback")
    async def oauth_callback(provider: str, request: Request) -> JSONResponse:
        """Where the provider sends the user back with the authorization code."""
        return await callback.handle(provider, request)

    return router
