"""The one way a service gets a tenant's OAuth tokens for a provider (Slack, Gmail).

Services never receive tokens in requests: they ask :class:`TokenReader` for the tenant's
connection and get an :class:`OAuthTokens` whose ``repr`` hides the tokens, or a
:class:`NotConnectedError` naming the OAuthConnection and where to authorize it (answer 409 with
``exc.body()``).

How the operator keeps the tokens (the layout this module reads; constants in
``apis.v1alpha1.oauthconnection``):

- The OAuthConnection (``spec.tenant``, ``spec.provider``: ``slack`` or ``gmail``) is the
  source of truth for whether a connection is usable: ``status.phase`` is ``Connected`` (or
  ``Refreshing``, while a new token is fetched and the Secret still holds a valid one). A
  Connected connection may carry a Degraded condition (a refresh that cannot be made yet, or
  Slack's user token lost): its tokens still work and are used.
  Anything else (``PendingAuthorization``, ``ReauthRequired``, ``Revoked``, ``Error``) means
  the user must authorize at ``status.authorizationURL``.
- The tokens live in the Secret ``spec.tokenSecretName`` in the connection's namespace, owned
  by the OAuthConnection, type Opaque, labelled ``xynergy.io/tenant=<tenant>``,
  ``xynergy.io/provider=<slack|gmail>``, ``xynergy.io/oauth-connection=<name>`` and
  ``xynergy.io/oauth-secret=tokens``, with the keys ``access_token``, ``refresh_token``,
  ``expires_at`` (RFC 3339, UTC), ``token_type`` (``bearer``; Slack: ``bot``) and ``scope``
  (space separated, as granted), plus ``issued_at`` (RFC 3339, when the operator received
  the token). ``refresh_token`` and ``expires_at`` are empty for tokens that never expire
  (Slack without token rotation). For Slack the access token is the bot token
  (``xoxb-``/``xoxe.xoxb-``); with ``spec.userScopes`` the user token is kept beside it
  under ``user_access_token``, ``user_refresh_token``, ``user_expires_at``, ``user_scope``
  and ``user_issued_at`` (:attr:`OAuthTokens.user_access_token`). Expiry is per token: an
  expired user token does not hold up the bot token (callers of the bot token get it, without
  the user token); a caller that needs the user token (``user_token=True``: Slack search) asks
  for a refresh as for an expired access token and, when none comes, gets
  :class:`UserTokenExpiredError` naming the user token and where to authorize again.
- The operator refreshes ``refreshBeforeExpirySeconds`` ahead of expiry (at most half the
  token's lifetime ahead). An ``expires_at`` that is not RFC 3339 counts as expired. Should a
  reader still see an expired token, it sets the annotation ``xynergy.io/refresh-requested``
  on the Secret and waits for the operator's refresh (one per connection, however many
  readers ask).
- The reader trusts a token Secret only when its controller ownerReference is the connection
  it resolved (kind ``OAuthConnection`` of ``xynergy.io``, that name and UID), as the operator
  does: a Secret of that name made by anyone else (anyone who may create Secrets in the
  namespace could plant a token) raises :class:`TokenSecretNotOwnedError`, logged once per
  Secret, and its data is never used.

The Secret is read through the Kubernetes API (RBAC: get/list/watch ``oauthconnections``;
get/watch/patch ``secrets``) or, with ``XYNERGY_OAUTH_TOKENS_DIR`` set, from a mounted copy
at ``<dir>/<tokenSecretName>/<key>`` (a mounted copy carries no ownerReferences: the Pod spec
that mounts it is trusted, and the ownership check is the API path's only). Settings (prefix
``XYNERGY_OAUTH_``): ``namespace`` (where the connections are; every namespace when unset),
``tokens_dir``, ``refresh_wait_seconds`` (10), ``expiry_skew_seconds`` (15).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.oauthconnection import (
    REFRESH_REQUESTED_ANNOTATION,
    OAuthConnection,
    OAuthPhase,
    token_expiry,
)

__all__ = [
    "NotConnected",
    "NotConnectedError",
    "OAuthTokenSettings",
    "OAuthTokens",
    "TokenReader",
    "TokenSecretNotOwnedError",
    "UserTokenExpiredError",
    "controlled_by",
]

log = logging.getLogger("xynergy.services")

_USABLE = (OAuthPhase.CONNECTED, OAuthPhase.REFRESHING)


class OAuthTokenSettings(BaseSettings):
    """Where and how services read tokens (env prefix ``XYNERGY_OAUTH_``)."""

    model_config = SettingsConfigDict(env_prefix="XYNERGY_OAUTH_", extra="ignore")

    namespace: str | None = None
    tokens_dir: Path | None = None
    refresh_wait_seconds: float = Field(default=10.0, gt=0)
    expiry_skew_seconds: float = Field(default=15.0, ge=0)


@dataclass(frozen=True, slots=True, repr=False)
class OAuthTokens:
    """A connection's current tokens. ``repr`` and ``str`` never show a token."""

    connection: str
    """``namespace/name`` of the OAuthConnection."""
    tenant: str
    provider: str
    access_token: SecretStr
    refresh_token: SecretStr
    token_type: str
    scopes: tuple[str, ...]
    expires_at: dt.datetime | None
    user_access_token: SecretStr = field(default_factory=lambda: SecretStr(""))
    """Slack: the user token (``xoxp-``) issued for ``spec.userScopes``; empty when none."""
    user_scopes: tuple[str, ...] = ()
    """Slack: the user scopes granted with ``user_access_token``."""
    user_expires_at: dt.datetime | None = None

    def __repr__(self) -> str:
        return (
            f"OAuthTokens(connection={self.connection!r}, tenant={self.tenant!r}, "
            f"provider={self.provider!r}, token_type={self.token_type!r}, "
            f"scopes={self.scopes!r}, expires_at={self.expires_at!r}, "
            f"user_scopes={self.user_scopes!r})"
        )

    __str__ = __repr__

    def expired(self, now: dt.datetime, skew: float = 0.0) -> bool:
        """True when the access token (Slack: the bot token) expires within ``skew`` seconds
        of ``now``. The user token's expiry is :meth:`user_expired`."""
        soon = now + dt.timedelta(seconds=skew)
        return self.expires_at is not None and self.expires_at <= soon

    def user_expired(self, now: dt.datetime, skew: float = 0.0) -> bool:
        """True when there is a user token (Slack) and it expires within ``skew`` seconds of
        ``now``."""
        if not self.user_access_token.get_secret_value() or self.user_expires_at is None:
            return False
        return self.user_expires_at <= now + dt.timedelta(seconds=skew)

    def without_user_token(self) -> OAuthTokens:
        """The same tokens without the user token (its expiry kept, to say when it ended)."""
        return replace(self, user_access_token=SecretStr(""), user_scopes=())


class NotConnectedError(Exception):
    """The tenant has no usable connection for the provider: the user must authorize."""

    def __init__(
        self,
        *,
        tenant: str,
        provider: str,
        connection: str | None,
        phase: str | None,
        authorization_url: str | None,
    ) -> None:
        self.tenant = tenant
        self.provider = provider
        self.connection = connection
        self.phase = phase
        self.authorization_url = authorization_url
        if connection is None:
            message = f"tenant {tenant!r} has no OAuthConnection for provider {provider!r}"
        else:
            message = f"OAuthConnection {connection} of tenant {tenant!r} is {phase or 'new'}"
            if authorization_url:
                message += f"; authorize at {authorization_url}"
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        """The JSON of a 409 answer (the gateway's one error shape plus the details)."""
        return {
            "error": "oauth_not_connected",
            "message": str(self),
            "status": 409,
            "connection": self.connection,
            "phase": self.phase,
            "authorizationURL": self.authorization_url,
        }


class UserTokenExpiredError(NotConnectedError):
    """The connection works (its bot token is valid) but its Slack user token expired and was
    not refreshed: a caller that needs the user token (search) cannot act until the operator
    refreshes it or the user authorizes again (a 409, as :class:`NotConnectedError`)."""

    def __init__(
        self,
        *,
        tenant: str,
        provider: str,
        connection: str,
        phase: str | None,
        authorization_url: str | None,
        expired_at: dt.datetime,
    ) -> None:
        super().__init__(
            tenant=tenant,
            provider=provider,
            connection=connection,
            phase=phase,
            authorization_url=authorization_url,
        )
        self.expired_at = expired_at
        when = expired_at.isoformat().replace("+00:00", "Z")
        message = (
            f"the user token of OAuthConnection {connection} (tenant {tenant!r}) expired at "
            f"{when} and was not refreshed; its bot token still works, but this needs the user "
            "token: "
        )
        if authorization_url:
            message += f"authorize again at {authorization_url}"
        else:
            message += (
                "see the connection's Degraded condition; authorize again at its "
                "status.authorizationURL when it offers one"
            )
        self.args = (message,)

    def body(self) -> dict[str, Any]:
        return super().body() | {"error": "oauth_user_token_expired"}


class TokenSecretNotOwnedError(Exception):
    """The connection's token Secret is not controlled by that OAuthConnection: its data is
    not used (a 500 answer: the platform's own state is wrong, the caller cannot fix it)."""

    status = 500

    def __init__(self, *, connection: str, secret: str) -> None:
        self.connection = connection
        self.secret = secret
        super().__init__(
            f"token Secret {secret} is not controlled by OAuthConnection {connection}; its "
            "tokens are not used (delete that Secret: the operator then writes its own)"
        )

    def body(self) -> dict[str, Any]:
        """The JSON of the 500 answer (the one error shape, naming the Secret, no data)."""
        return {
            "error": "oauth_secret_not_owned",
            "message": str(self),
            "status": self.status,
            "connection": self.connection,
        }


class KubeClient(Protocol):
    """What the reader needs of lightkube's ``AsyncClient``."""

    def list(self, res: Any, *, namespace: str | None = None) -> Any: ...
    async def get(self, res: Any, name: str, *, namespace: str | None = None) -> Any: ...
    async def patch(self, res: Any, name: str, obj: Any, **kwargs: Any) -> Any: ...
    def watch(self, res: Any, **kwargs: Any) -> Any: ...


def _resources() -> tuple[Any, Any]:
    from lightkube.generic_resource import create_namespaced_resource
    from lightkube.resources.core_v1 import Secret

    crd = OAuthConnection.crd
    return create_namespaced_resource(GROUP, VERSION, crd.kind, crd.plural), Secret


def _default_client() -> Any:
    from lightkube import AsyncClient

    return AsyncClient()


def _dict(obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else obj.to_dict()


def _text(data: dict[str, str], key: str) -> str:
    value = data.get(key)
    return base64.b64decode(value).decode() if value else ""


class TokenReader:
    """Reads a tenant's tokens for a provider; one per process (it single-flights the
    refresh requests of concurrent callers)."""

    def __init__(
        self,
        client: KubeClient | None = None,
        *,
        settings: OAuthTokenSettings | None = None,
        clock: Any = None,
    ) -> None:
        self._client: KubeClient = client if client is not None else _default_client()
        self._settings = settings or OAuthTokenSettings()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._connections, self._secrets = _resources()
        self._inflight: dict[str, asyncio.Future[OAuthTokens]] = {}
        self._reported: set[tuple[str, str]] = set()
        """Foreign token Secrets already logged (name, UID): logged once, refused always."""

    async def tokens(self, tenant: str, provider: str, *, user_token: bool = False) -> OAuthTokens:
        """The tenant's current tokens for ``provider`` (``slack`` or ``gmail``); refreshed
        first when expired. Raises :class:`NotConnectedError`.

        Each token expires on its own: an expired Slack user token is left out (empty) and
        holds nothing up, unless ``user_token`` (the caller needs it: search), which waits for
        its refresh as for the access token's and raises :class:`UserTokenExpiredError` when
        none comes while the bot token is valid."""
        conn = await self._connection(tenant, provider)
        tokens = await self._read(conn)
        if self._stale(tokens, user_token=user_token):
            key = f"{tokens.connection}#user" if user_token else tokens.connection
            pending = self._inflight.get(key)
            if pending is None:
                pending = asyncio.ensure_future(self._refresh(conn, user_token=user_token))
                self._inflight[key] = pending
                pending.add_done_callback(lambda _: self._inflight.pop(key, None))
            tokens = await asyncio.shield(pending)
        if tokens.user_expired(self._clock(), self._settings.expiry_skew_seconds):
            return tokens.without_user_token()
        return tokens

    def _stale(self, tokens: OAuthTokens, *, user_token: bool) -> bool:
        now, skew = self._clock(), self._settings.expiry_skew_seconds
        return tokens.expired(now, skew) or (user_token and tokens.user_expired(now, skew))

    async def _connection(self, tenant: str, provider: str) -> OAuthConnection:
        found: list[OAuthConnection] = []
        async for item in self._client.list(
            self._connections, namespace=self._settings.namespace or "*"
        ):
            try:
                conn = OAuthConnection.model_validate(_dict(item))
            except ValidationError:
                continue
            if conn.spec.tenant == tenant and conn.spec.provider == provider:
                found.append(conn)
        if not found:
            raise NotConnectedError(
                tenant=tenant,
                provider=provider,
                connection=None,
                phase=None,
                authorization_url=None,
            )
        found.sort(key=lambda c: (c.status is None or c.status.phase not in _USABLE, _name(c)))
        conn = found[0]
        if conn.status is None or conn.status.phase not in _USABLE:
            raise _not_connected(conn)
        return conn

    async def _read(self, conn: OAuthConnection) -> OAuthTokens:
        name = conn.spec.token_secret_name
        if self._settings.tokens_dir is not None:
            data = _mounted(self._settings.tokens_dir / name)
        else:
            secret = _dict(await self._client.get(self._secrets, name, namespace=_ns(conn)))
            self._check_owner(conn, secret)
            data = secret.get("data") or {}
        if not data.get("access_token"):
            raise _not_connected(conn)
        return OAuthTokens(
            connection=_name(conn),
            tenant=conn.spec.tenant,
            provider=str(conn.spec.provider),
            access_token=SecretStr(_text(data, "access_token")),
            refresh_token=SecretStr(_text(data, "refresh_token")),
            token_type=_text(data, "token_type") or "bearer",
            scopes=tuple(_text(data, "scope").split()),
            expires_at=token_expiry(_text(data, "expires_at")),
            user_access_token=SecretStr(_text(data, "user_access_token")),
            user_scopes=tuple(_text(data, "user_scope").split()),
            user_expires_at=token_expiry(_text(data, "user_expires_at")),
        )

    def _check_owner(self, conn: OAuthConnection, secret: dict[str, Any]) -> None:
        """Raise :class:`TokenSecretNotOwnedError` unless the Secret's controller
        ownerReference is ``conn`` (kind, group, name and UID); log it once per Secret."""
        meta = secret.get("metadata") or {}
        if controlled_by(meta, conn):
            return
        where = f"{_ns(conn)}/{conn.spec.token_secret_name}"
        seen = (where, str(meta.get("uid") or ""))
        if seen not in self._reported:
            self._reported.add(seen)
            log.warning(
                "token Secret not controlled by its OAuthConnection: not used",
                extra={"fields": {"connection": _name(conn), "secret": where}},
            )
        raise TokenSecretNotOwnedError(connection=_name(conn), secret=where)

    async def _refresh(self, conn: OAuthConnection, *, user_token: bool) -> OAuthTokens:
        """Ask the operator for a refresh (an annotation on the Secret) and wait for it (for
        the user token too with ``user_token``)."""
        name, ns = conn.spec.token_secret_name, _ns(conn)
        stamp = self._clock().isoformat().replace("+00:00", "Z")
        patch = {"metadata": {"annotations": {REFRESH_REQUESTED_ANNOTATION: stamp}}}
        await self._client.patch(self._secrets, name, patch, namespace=ns)
        try:
            async with asyncio.timeout(self._settings.refresh_wait_seconds):
                async for _, _secret in self._client.watch(
                    self._secrets, namespace=ns, fields={"metadata.name": name}
                ):
                    latest = await self._connection(conn.spec.tenant, str(conn.spec.provider))
                    tokens = await self._read(latest)
                    if not self._stale(tokens, user_token=user_token):
                        return tokens
        except TimeoutError:
            pass
        latest = await self._connection(conn.spec.tenant, str(conn.spec.provider))
        if user_token:  # the bot token may be fine: say which token is missing
            tokens = await self._read(latest)
            if not tokens.expired(self._clock(), self._settings.expiry_skew_seconds):
                if not tokens.user_expired(self._clock(), self._settings.expiry_skew_seconds):
                    return tokens
                raise _user_token_expired(latest, tokens)
        raise _not_connected(latest, stale=True)


NotConnected = NotConnectedError
"""The name the issue uses."""


def _name(conn: OAuthConnection) -> str:
    return f"{_ns(conn)}/{conn.metadata.name}"


def _ns(conn: OAuthConnection) -> str:
    return conn.metadata.namespace or "default"


def controlled_by(meta: dict[str, Any], conn: OAuthConnection) -> bool:
    """True when the controller ownerReference in ``meta`` (a Secret's metadata, as JSON) is
    the OAuthConnection ``conn`` (kind, group, name and UID): the operator's own Secret. The
    gateway's OAuth callback checks the authorization Secret with it too."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return (
                ref.get("kind") == OAuthConnection.crd.kind
                and str(ref.get("apiVersion") or "").partition("/")[0] == GROUP
                and ref.get("name") == conn.metadata.name
                and bool(conn.metadata.uid)
                and ref.get("uid") == conn.metadata.uid
            )
    return False


def _mounted(folder: Path) -> dict[str, str]:
    """A mounted Secret's files, base64-encoded like the API's ``data``."""
    if not folder.is_dir():
        return {}
    return {
        path.name: base64.b64encode(path.read_bytes()).decode()
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".")
    }


def _user_token_expired(conn: OAuthConnection, tokens: OAuthTokens) -> UserTokenExpiredError:
    status = conn.status
    assert tokens.user_expires_at is not None  # user_expired() said so
    return UserTokenExpiredError(
        tenant=conn.spec.tenant,
        provider=str(conn.spec.provider),
        connection=_name(conn),
        phase=None if status is None or status.phase is None else str(status.phase),
        authorization_url=None if status is None else status.authorization_url,
        expired_at=tokens.user_expires_at,
    )


def _not_connected(conn: OAuthConnection, *, stale: bool = False) -> NotConnectedError:
    status = conn.status
    phase = None if status is None or status.phase is None else str(status.phase)
    if stale and phase in _USABLE:
        phase = "Expired"  # the operator did not refresh in time
    return NotConnectedError(
        tenant=conn.spec.tenant,
        provider=str(conn.spec.provider),
        connection=_name(conn),
        phase=phase,
        authorization_url=None if status is None else status.authorization_url,
    )
