"""The identity the gateway forwards to services, and how services verify it.

The gateway strips every identity header a client sends and adds one header,
``X-Xynergy-Identity``, holding a short-lived HS256 token signed with the internal key. A
service never trusts an unsigned identity: :class:`InternalIdentityVerifier` (or the FastAPI
dependency :func:`require_identity`) is the only way to read who is calling.

The key may rotate without a restart (services.common.signing_keys): from a key file, the
signer uses the file's first key (named in the token's ``kid`` header by its fingerprint) and
verifiers accept every key of the file, plus a removed one for the overlap window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request

from services.common.settings import InternalIdentitySettings
from services.common.signing_keys import KeyRing, key_ring
from services.common.tenancy import Identity, valid_tenant_id

__all__ = [
    "IDENTITY_HEADER",
    "CurrentIdentity",
    "InternalIdentityError",
    "InternalIdentitySigner",
    "InternalIdentityVerifier",
    "internal_key_ring",
    "require_identity",
]

IDENTITY_HEADER = "x-xynergy-identity"


class InternalIdentityError(Exception):
    """The internal identity token is missing, unsigned, tampered with or expired."""


def internal_key_ring(
    settings: InternalIdentitySettings, *, clock: Callable[[], float] = time.monotonic
) -> KeyRing:
    """The internal key(s) from XYNERGY_INTERNAL_SIGNING_KEY or _SIGNING_KEY_FILE; a
    ValueError naming the variable when missing, shorter than 32 characters or both set."""
    return key_ring(
        name="internal identity",
        value=settings.signing_key,
        path=settings.signing_key_file,
        variables=("XYNERGY_INTERNAL_SIGNING_KEY", "XYNERGY_INTERNAL_SIGNING_KEY_FILE"),
        rotation=settings,
        min_length=32,
        clock=clock,
    )


class InternalIdentitySigner:
    """Signs identities for upstreams; reuses a token until half of its lifetime is gone
    (and never past a key rotation)."""

    def __init__(self, settings: InternalIdentitySettings, *, keys: KeyRing | None = None) -> None:
        self.keys = keys or internal_key_ring(settings)
        self._generation = self.keys.generation
        self._ttl = settings.ttl_seconds
        self._issuer = settings.issuer
        self._audience = settings.audience
        self._cache: dict[Identity, tuple[float, str]] = {}

    def sign(self, identity: Identity) -> str:
        key = self.keys.signing
        if self.keys.generation != self._generation:
            self._cache.clear()  # tokens of the previous key
            self._generation = self.keys.generation
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
            key.secret,
            algorithm="HS256",
            headers={"kid": key.kid},
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[identity] = (now + self._ttl / 2, token)
        return token


class InternalIdentityVerifier:
    """What a service uses to read the caller from ``X-Xynergy-Identity``."""

    def __init__(self, settings: InternalIdentitySettings, *, keys: KeyRing | None = None) -> None:
        self.keys = keys or internal_key_ring(settings)
        self._issuer = settings.issuer
        self._audience = settings.audience

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise InternalIdentityError("no internal identity")
        try:
            claims = self.keys.verify(lambda secret: self._decode(token, secret))
        except jwt.InvalidTokenError as exc:
            raise InternalIdentityError(
                f"internal identity rejected: {type(exc).__name__}"
            ) from exc
        return _identity(claims)

    def _decode(self, token: str, secret: str) -> dict[str, Any]:
        return jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=self._audience,
            issuer=self._issuer,
            options={"require": ["exp", "iat", "sub", "tid"]},
        )


def _identity(claims: dict[str, Any]) -> Identity:
    """The Identity of verified claims."""
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


async def current_identity(request: Request) -> Identity:
    """`require_identity` as an async dependency: FastAPI runs it on the event loop (a plain
    `def` dependency takes a trip through its thread pool on every request)."""
    return require_identity(request)


CurrentIdentity = Annotated[Identity, Depends(current_identity)]
