"""End-user authentication: Firebase ID tokens first, then the platform's HS256 JWTs.

A verifier turns a bearer token into an :class:`~services.common.tenancy.Identity` or raises
:class:`AuthError` naming the check that failed (``expired``, ``issuer``...). Messages never
contain the token. Firebase verification is done by ``firebase-admin``; the Auth emulator's
unsigned tokens are accepted only when ``FIREBASE_AUTH_EMULATOR_HOST`` is set, which is
firebase-admin's own rule. HS256 verification is PyJWT with an explicit algorithm list, so
``alg: none`` and algorithm confusion are refused. The HS256 secret may rotate without a
restart (``JWT_SECRET_FILE``, services.common.signing_keys): tokens of a removed secret verify
for the overlap window, then no more.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jwt

from services.common.settings import AuthSettings
from services.common.signing_keys import KeyRing, key_ring
from services.common.tenancy import Identity, valid_tenant_id

__all__ = [
    "AuthError",
    "ChainVerifier",
    "FirebaseVerifier",
    "JwtVerifier",
    "TokenVerifier",
    "bearer_token",
    "build_verifier",
    "jwt_configured",
    "jwt_key_ring",
    "require_numeric_dates",
    "token_expiry",
]


class AuthError(Exception):
    """Authentication failed; ``check`` names the failed check for the client."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Identity: ...


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header, or AuthError(``missing``)."""
    if not authorization:
        raise AuthError("missing", "an Authorization: Bearer token is required")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("scheme", "the Authorization header must use the Bearer scheme")
    return token


def _roles(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(r) for r in value)
    return ()


def _identity_from_claims(
    claims: Mapping[str, Any], *, user_claim: str, tenant_claims: tuple[str, ...], source: str
) -> Identity:
    user_id = claims.get(user_claim) or claims.get("sub")
    if not isinstance(user_id, str) or not user_id:
        raise AuthError("subject", "the token names no user")
    tenant = next((claims[c] for c in tenant_claims if c in claims), None)
    if tenant is None:
        raise AuthError("tenant", "the token carries no tenant claim")
    if not valid_tenant_id(tenant):
        raise AuthError("tenant", "the token's tenant claim is not a valid tenant id")
    email = claims.get("email")
    return Identity(
        user_id=user_id,
        tenant_id=tenant,
        email=email if isinstance(email, str) else None,
        roles=_roles(claims.get("roles")),
        source=source,
    )


class _VerifiedCache:
    """A small LRU of already verified tokens, kept no longer than the token is valid."""

    def __init__(self, size: int = 4096, max_age: float = 60.0) -> None:
        self.generation = 0
        """The key ring's generation the entries were verified under (see JwtVerifier)."""
        self._size = size
        self._max_age = max_age
        self._items: OrderedDict[str, tuple[float, Identity]] = OrderedDict()

    def get(self, token: str) -> Identity | None:
        hit = self._items.get(token)
        if hit is None:
            return None
        if hit[0] <= time.time():
            self._items.pop(token, None)
            return None
        self._items.move_to_end(token)
        return hit[1]

    def put(self, token: str, identity: Identity, exp: object) -> None:
        until = time.time() + self._max_age
        if isinstance(exp, int | float):
            until = min(until, float(exp))
        self._items[token] = (until, identity)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


_TIME_CLAIMS = ("exp", "nbf", "iat")


def require_numeric_dates(claims: Mapping[str, Any]) -> None:
    """Refuse registered time claims that are not JSON numbers (RFC 7519 NumericDate)."""
    for claim in _TIME_CLAIMS:
        if claim not in claims:
            continue
        value = claims[claim]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AuthError(
                "claims",
                f"the token's {claim!r} claim must be a number (seconds since the epoch), "
                f"not {type(value).__name__}",
            )


_JWT_ERRORS: tuple[tuple[type[jwt.InvalidTokenError], str, str], ...] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet (nbf/iat)"),
    (jwt.InvalidIssuerError, "issuer", "the token's issuer is not accepted"),
    (jwt.InvalidAudienceError, "audience", "the token's audience is not accepted"),
    (jwt.InvalidAlgorithmError, "algorithm", "the token's algorithm is not accepted"),
    (jwt.InvalidSignatureError, "signature", "the token's signature does not verify"),
    (jwt.DecodeError, "malformed", "the token is not a well-formed JWT"),
)


def _auth_error(exc: jwt.InvalidTokenError) -> AuthError:
    """The AuthError (failed check and message) for one of PyJWT's errors."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return AuthError("claims", f"the token lacks the {exc.claim!r} claim")
    for kind, check, message in _JWT_ERRORS:
        if isinstance(exc, kind):
            return AuthError(check, message)
    return AuthError("invalid", "the token is not valid")


def jwt_key_ring(settings: AuthSettings, *, clock: Callable[[], float] = time.monotonic) -> KeyRing:
    """The JWT secret(s) from JWT_SECRET or JWT_SECRET_FILE; a ValueError naming the variable
    when neither (or both) is set or the file cannot be read."""
    return key_ring(
        name="JWT",
        value=settings.jwt_secret,
        path=settings.jwt_secret_file,
        variables=("JWT_SECRET / XYNERGY_AUTH_JWT_SECRET", "JWT_SECRET_FILE"),
        rotation=settings,
        clock=clock,
    )


def jwt_configured(settings: AuthSettings) -> bool:
    """Whether HS256 JWTs are on: a secret or a secret file is set."""
    return settings.jwt_secret is not None or settings.jwt_secret_file is not None


class JwtVerifier:
    """HS256 JWTs signed with ``JWT_SECRET``: claims user_id, tenant_id, email, roles, exp."""

    def __init__(self, settings: AuthSettings, *, keys: KeyRing | None = None) -> None:
        self.keys = keys or jwt_key_ring(settings)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.leeway_seconds
        self._tenant_claims = settings.tenant_claims
        self._cache = _VerifiedCache()

    def _decode(self, token: str, secret: str, *, times: bool) -> dict[str, Any]:
        """PyJWT's checks: signature, ``iss``, ``aud``, required claims, and (``times``) the
        ``exp``/``nbf``/``iat`` values with the leeway."""
        return jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=self._audience,
            issuer=self._issuer,
            leeway=self._leeway,
            options={
                "require": ["exp", "iss", "aud"],
                "verify_exp": times,
                "verify_nbf": times,
                "verify_iat": times,
            },
        )

    def _claims(self, token: str, secret: str) -> dict[str, Any]:
        # PyJWT reads time claims with int(), so "9999999999" would pass: check their JSON
        # types on the verified payload first, then let PyJWT judge their values.
        require_numeric_dates(self._decode(token, secret, times=False))
        return self._decode(token, secret, times=True)

    async def verify(self, token: str) -> Identity:
        self.keys.refresh()
        if self._cache.generation != self.keys.generation:
            self._cache.clear()  # a key was added or retired: verify again
            self._cache.generation = self.keys.generation
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        try:
            claims = self.keys.verify(lambda secret: self._claims(token, secret))
        except jwt.InvalidTokenError as exc:
            raise _auth_error(exc) from exc
        identity = _identity_from_claims(
            claims, user_claim="user_id", tenant_claims=self._tenant_claims, source="jwt"
        )
        self._cache.put(token, identity, claims.get("exp"))
        return identity


class FirebaseVerifier:
    """Firebase ID tokens through firebase-admin; tenant and roles from custom claims."""

    def __init__(self, settings: AuthSettings, *, app_name: str = "xynergy-auth") -> None:
        import firebase_admin
        from firebase_admin import auth as fb_auth

        self._auth = fb_auth
        options = (
            {"projectId": settings.firebase_project_id} if settings.firebase_project_id else {}
        )
        try:
            self._app = firebase_admin.get_app(app_name)
        except ValueError:
            self._app = firebase_admin.initialize_app(
                credential=None,
                options=options,
                name=app_name,
            )
        self._tenant_claims = settings.tenant_claims
        self._cache = _VerifiedCache()

    def _verify_sync(self, token: str) -> Mapping[str, Any]:
        fb = self._auth
        try:
            return fb.verify_id_token(token, app=self._app)  # type: ignore[no-any-return]
        except fb.ExpiredIdTokenError as exc:
            raise AuthError("expired", "the Firebase ID token has expired") from exc
        except fb.RevokedIdTokenError as exc:
            raise AuthError("revoked", "the Firebase ID token was revoked") from exc
        except fb.InvalidIdTokenError as exc:
            raise AuthError("firebase", "the Firebase ID token is not valid") from exc
        except (ValueError, fb.CertificateFetchError) as exc:
            raise AuthError("firebase", "the Firebase ID token could not be verified") from exc

    async def verify(self, token: str) -> Identity:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        claims = await asyncio.to_thread(self._verify_sync, token)
        identity = _identity_from_claims(
            claims, user_claim="uid", tenant_claims=self._tenant_claims, source="firebase"
        )
        self._cache.put(token, identity, claims.get("exp"))
        return identity


def _emulated() -> bool:
    return bool(os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"))


def token_expiry(token: str) -> float | None:
    """The ``exp`` of a token that has just been verified (so its payload is trusted)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def _unverified_alg(token: str) -> str | None:
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError:
        return None
    return alg if isinstance(alg, str) else None


class ChainVerifier:
    """Firebase first, then HS256, as the issue asks, without wasting work on either.

    A token whose header says HS256 cannot be a Firebase ID token, so it goes straight to the
    JWT verifier; anything else is tried with Firebase and, when that fails, with the JWT
    verifier, whose error (which names the failed check) is the one reported.
    """

    def __init__(self, *, firebase: TokenVerifier | None, jwt_verifier: TokenVerifier | None):
        if firebase is None and jwt_verifier is None:
            raise ValueError("at least one verifier is needed")
        self._firebase = firebase
        self._jwt = jwt_verifier
        self._cache = _VerifiedCache()

    async def verify(self, token: str) -> Identity:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.source == "jwt" and self._jwt is not None:
                # its own cache answers, unless the token's key has been retired since
                return await self._jwt.verify(token)
            return cached
        identity = await self._verify(token)
        self._cache.put(token, identity, token_expiry(token))
        return identity

    async def _verify(self, token: str) -> Identity:
        alg = _unverified_alg(token)
        if alg is None:
            raise AuthError("malformed", "the token is not a well-formed JWT")
        if alg.lower() == "none" and not _emulated():
            raise AuthError("algorithm", "unsigned tokens (alg none) are not accepted")
        first_error: AuthError | None = None
        if self._firebase is not None and alg != "HS256":
            try:
                return await self._firebase.verify(token)
            except AuthError as exc:
                if exc.check in ("tenant", "expired", "revoked", "subject"):
                    raise
                first_error = exc
        if self._jwt is not None:
            return await self._jwt.verify(token)
        assert first_error is not None
        raise first_error


def build_verifier(settings: AuthSettings) -> TokenVerifier:
    """The verifier the settings ask for: Firebase and/or HS256 JWT."""
    firebase = FirebaseVerifier(settings) if settings.firebase_enabled else None
    jwt_verifier = JwtVerifier(settings) if jwt_configured(settings) else None
    return ChainVerifier(firebase=firebase, jwt_verifier=jwt_verifier)
