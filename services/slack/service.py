"""Plumbing the Slack and Gmail services share: the one error shape, roles, reading a
tenant's tokens through the OAuthConnection reader, and the health routes.

Every error is ``{"error", "message", "status"}`` (plus ``fields`` on 422), as the gateway and
the CRM answer; a tenant without a usable connection gets 409 with
:meth:`NotConnectedError.body` (the OAuthConnection and its authorization URL). Messages never
carry a token. (Generic, so it could live in ``services/common``; it is here because this is
where the two services were written.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any, Protocol

import httpx
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from lightkube import ApiError as KubeApiError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.oauthconnection import OAuthConnection, OAuthPhase, OAuthProvider
from services.common.identity import CurrentIdentity
from services.common.oauth_tokens import NotConnectedError, OAuthTokens
from services.common.tenancy import Identity

__all__ = [
    "ApiError",
    "Editor",
    "TokenSource",
    "Viewer",
    "error_body",
    "health_routes",
    "install_error_handlers",
    "tokens_for",
    "usable_connections",
]

log = logging.getLogger("xynergy.services")

_ROLE_LEVELS = {"viewer": 1, "editor": 2, "admin": 3}

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "validation_failed",
    429: "rate_limited",
    502: "upstream_error",
    503: "unavailable",
    504: "upstream_timeout",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        error: str | None = None,
        headers: dict[str, str] | None = None,
        fields: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error or _CODES.get(status, "error")
        self.message = message
        self.headers = headers
        self.fields = fields


def error_body(
    status: int, message: str, *, error: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"error": error or _CODES.get(status, "error"), "message": message, "status": status}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def _fields(exc: RequestValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        if err.get("type") == "json_invalid":
            out.append({"field": "body", "message": "invalid JSON"})
            continue
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"field": ".".join(loc) or "body", "message": msg})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        body = error_body(exc.status, exc.message, error=exc.error, fields=exc.fields)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(NotConnectedError)
    async def not_connected(_: Request, exc: NotConnectedError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=409)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _fields(exc)
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse(error_body(422, message, fields=fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = error_body(exc.status_code, str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


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


def health_routes(app: FastAPI, *, redis: Any, registry: CollectorRegistry, timeout: float) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        try:
            async with asyncio.timeout(timeout):
                await redis.ping()
            checks = {"redis": "ok"}
        except Exception as exc:
            checks = {"redis": f"unreachable ({type(exc).__name__})"}
        ready = checks["redis"] == "ok"
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def usable_connections(
    client: Any, provider: OAuthProvider, *, namespace: str | None = None
) -> list[OAuthConnection]:
    """The provider's OAuthConnections that are Connected (or Refreshing), read through the
    apis model (status only; tokens stay in their Secrets). Objects the model refuses are
    skipped."""
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
