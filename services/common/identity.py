"""The identity the gateway forwards to services, and how services verify it.

The gateway strips every identity header a client sends and adds one header,
``X-Xynergy-Identity``, holding a short-lived HS256 token signed with the internal key. A
service never trusts an unsigned identity: :class:`InternalIdentityVerifier` (or the FastAPI
dependency :func:`require_identity`) is the only way to read who is calling.
"""

from __future__ import annotations

import time
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request

from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity, valid_tenant_id

__all__ = [
    "IDENTITY_HEADER",
    "CurrentIdentity",
    "InternalIdentityError",
    "InternalIdentitySigner",
    "InternalIdentityVerifier",
    "require_identity",
]

IDENTITY_HEADER = "x-xynergy-identity"


class InternalIdentityError(Exception):
    """The internal identity token is missing, unsigned, tampered with or expired."""


def _key(settings: InternalIdentitySettings) -> str:
    key = settings.signing_key.get_secret_value()
    if len(key) < 32:
        raise ValueError("XYNERGY_INTERNAL_SIGNING_KEY must be at least 32 characters")
    return key


class InternalIdentitySigner:
    """Signs identities for upstreams; reuses a token until half of its lifetime is gone."""

    def __init__(self, settings: InternalIdentitySettings) -> None:
        self._key = _key(settings)
        self._ttl = settings.ttl_seconds
        self._issuer = settings.issuer
        self._audience = settings.audience
        self._cache: dict[Identity, tuple[float, str]] = {}

    def sign(self, identity: Identity) -> str:
        now = time.time()
        hit = self._cache.get(identity)
        if hit is not None and hit[0] > now:
            return hit[1]
        token = jwt.encode(
            {
                "iss": self._issuer,
                "aud": self._audience,
                "sub": identity.user_id,
                "tid": identity.tenant_id,
                "email": identity.email,
                "roles": list(identity.roles),
                "src": identity.source,
                "iat": int(now),
                "exp": int(now) + self._ttl,
            },
            self._key,
            algorithm="HS256",
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[identity] = (now + self._ttl / 2, token)
        return token


class InternalIdentityVerifier:
    """What a service uses to read the caller from ``X-Xynergy-Identity``."""

    def __init__(self, settings: InternalIdentitySettings) -> None:
        self._key = _key(settings)
        self._issuer = settings.issuer
        self._audience = settings.audience

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise InternalIdentityError("no internal identity")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "tid"]},
            )
        except jwt.InvalidTokenError as exc:
            raise InternalIdentityError(
                f"internal identity rejected: {type(exc).__name__}"
            ) from exc
        tenant = claims["tid"]
        if not valid_tenant_id(tenant):
            raise InternalIdentityError("internal identity has an invalid tenant")
        email = claims.get("email")
        roles = claims.get("roles") or []
        return Identity(
            user_id=str(claims["sub"]),
            tenant_id=tenant,
            email=email if isinstance(email, str) else None,
            roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
            source=str(claims.get("src", "internal")),
        )


def require_identity(request: Request) -> Identity:
    """FastAPI dependency for services: the verified caller, or 401.

    The service stores its verifier on ``app.state.identity_verifier`` at start-up.
    """
    verifier: InternalIdentityVerifier = request.app.state.identity_verifier
    try:
        return verifier.verify(request.headers.get(IDENTITY_HEADER))
    except InternalIdentityError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc


CurrentIdentity = Annotated[Identity, Depends(require_identity)]
