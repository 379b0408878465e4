"""OAuthConnection: the life of a Slack or Gmail OAuth connection.

Authorize, exchange the code, keep tokens in a Secret, refresh before expiry, revoke on delete.
Tokens live only in the Secret named by `tokenSecretName`; status never holds a token.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from apis.base import DNS_SUBDOMAIN, SpecModel, StatusModel, cel, validations
from apis.conditions import Condition
from apis.v1alpha1.common import (
    LABEL_VALUE_MAX,
    CrdInfo,
    NameLimit,
    PrinterColumn,
    Resource,
    conditions_field,
    ready_columns,
)

__all__ = [
    "AUTHORIZATION_KEYS",
    "CLIENT_SECRET_LABEL",
    "CONNECTION_LABEL",
    "MAX_NAME_LENGTH",
    "NAME_MESSAGE",
    "PROVIDER_LABEL",
    "REFRESH_REQUESTED_ANNOTATION",
    "SECRET_ROLE_LABEL",
    "TENANT_LABEL",
    "TOKEN_KEYS",
    "UNREADABLE_EXPIRY",
    "USER_TOKEN_KEYS",
    "ClientSecretRef",
    "ConnectedAccount",
    "OAuthConnection",
    "OAuthConnectionSpec",
    "OAuthConnectionStatus",
    "OAuthPhase",
    "OAuthProvider",
    "RefusedClient",
    "authorization_secret_name",
    "decode_state",
    "encode_state",
    "name_problem",
    "token_expiry",
]

TOKEN_KEYS = ("access_token", "refresh_token", "expires_at", "token_type", "scope", "issued_at")
"""Keys of the token Secret (`spec.tokenSecretName`); `expires_at` and `issued_at` (when the
operator received the token) are RFC 3339 UTC, and `refresh_token`/`expires_at` are empty when
the provider issues tokens that never expire."""
USER_TOKEN_KEYS = (
    "user_access_token",
    "user_refresh_token",
    "user_expires_at",
    "user_scope",
    "user_issued_at",
)
"""Keys of the token Secret holding Slack's user token (`spec.userScopes`), alike: present
only when Slack issued one; `user_refresh_token`/`user_expires_at` empty without token
rotation."""

UNREADABLE_EXPIRY = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
"""What a token Secret's `expires_at` that is not RFC 3339 counts as: long expired."""


def token_expiry(value: str) -> dt.datetime | None:
    """A token Secret's `expires_at`: None (never expires) when empty; `UNREADABLE_EXPIRY`
    when it is not RFC 3339 (a hand edit gone wrong must neither stop the operator's reconciles
    and deletion nor a reader: the token counts as expired, to be refreshed or re-authorized).
    The operator and the services read it alike."""
    if not value.strip():
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return UNREADABLE_EXPIRY
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


TENANT_LABEL = "xynergy.io/tenant"
"""Label on the token Secret: the connection's tenant."""
PROVIDER_LABEL = "xynergy.io/provider"
"""Label on the token Secret: slack or gmail."""
CONNECTION_LABEL = "xynergy.io/oauth-connection"
"""Label on every Secret the operator makes for a connection: the OAuthConnection's name."""
SECRET_ROLE_LABEL = "xynergy.io/oauth-secret"
"""Label telling the token Secret (`tokens`) from the pending authorization's (`authorization`)."""
CLIENT_SECRET_LABEL = "xynergy.io/oauth-client"
"""Label (`true`) the operator puts on a client Secret (`spec.clientSecretRef`) when it reads
it: it watches Secrets so labelled, and a change converges the connections that use it."""
REFRESH_REQUESTED_ANNOTATION = "xynergy.io/refresh-requested"
"""Annotation a reader sets on the token Secret (RFC 3339 time) to ask for a refresh now."""

AUTHORIZATION_KEYS = (
    "state",
    "code_verifier",
    "expires_at",
    "tenant",
    "reauth",
    "failure",
    "code",
    "error",
)
"""Keys of the pending authorization's Secret (`authorization_secret_name`): the operator
writes `state`, `code_verifier` (PKCE), `expires_at` (of the state, RFC 3339), `tenant`,
`reauth` ("true" after a refused refresh) and `failure` (why the user must authorize again,
for the status of every converge until then; never a token); the gateway's callback takes the
state out and puts the provider's `code` (or its `error`) in, once."""


def authorization_secret_name(connection: str) -> str:
    """The Secret holding a connection's pending authorization (state and PKCE verifier)."""
    name = f"{connection}-oauth-authorization"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(connection.encode()).hexdigest()[:10]
    return f"{connection[:220]}-{digest}-oauth-authz"


def encode_state(namespace: str, name: str, nonce: str) -> str:
    """The OAuth `state`: which connection it is for, then a random nonce (no dots in it)."""
    where = base64.urlsafe_b64encode(f"{namespace}/{name}".encode()).rstrip(b"=").decode()
    return f"{where}.{nonce}"


def decode_state(state: str) -> tuple[str, str] | None:
    """(namespace, name) a state names, or None when it is not one of ours."""
    where, dot, nonce = state.partition(".")
    if not dot or not nonce or len(state) > 1024:
        return None
    try:
        text = base64.urlsafe_b64decode(where + "=" * (-len(where) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    namespace, slash, name = text.partition("/")
    return (namespace, name) if slash and namespace and name else None


# A Slack scope: dot- or hyphen-separated words, then optionally `:` and dot-separated words
# (chat:write, chat:write.public, users.profile:read, admin.conversations:write,
# incoming-webhook, identity.basic, commands). No backslashes: it is embedded in CEL.
_SLACK_SCOPE = r"^[a-z][a-z_]*([.-][a-z_]+)*(:[a-z_]+([.][a-z_]+)*)?$"
_GOOGLE_SCOPES = ("openid", "email", "profile", "https://mail.google.com/")


class OAuthProvider(StrEnum):
    """The OAuth provider."""

    SLACK = "slack"
    GMAIL = "gmail"


class OAuthPhase(StrEnum):
    """Where the connection stands."""

    PENDING_AUTHORIZATION = "PendingAuthorization"
    CONNECTED = "Connected"
    REFRESHING = "Refreshing"
    REAUTH_REQUIRED = "ReauthRequired"
    REVOKED = "Revoked"
    ERROR = "Error"


class ClientSecretRef(SpecModel):
    """The Secret holding the OAuth client id and secret."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the Secret in this namespace."""
    client_id_key: str = Field(default="client_id", max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key holding the client id."""
    client_secret_key: str = Field(
        default="client_secret", max_length=253, pattern=r"^[-._a-zA-Z0-9]+$"
    )
    """Key holding the client secret."""


class OAuthConnectionSpec(SpecModel):
    """Desired OAuth connection."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.provider != 'slack' || self.scopes.all(s, s.matches('" + _SLACK_SCOPE + "'))",
                "scopes: Slack scopes look like channels:read, chat:write.public,"
                " users.profile:read or incoming-webhook",
                field_path=".scopes",
            ),
            cel(
                "!has(self.userScopes) || self.provider == 'slack'",
                "userScopes: only Slack has user scopes (leave it out for gmail)",
                field_path=".userScopes",
            ),
            cel(
                "!has(self.userScopes) || self.userScopes.all(s, s.matches('"
                + _SLACK_SCOPE
                + "'))",
                "userScopes: Slack user scopes look like search:read, channels:history or"
                " users:read",
                field_path=".userScopes",
            ),
            cel(
                "self.provider != 'gmail' || self.scopes.all(s,"
                " s.startsWith('https://www.googleapis.com/auth/gmail.')"
                " || s in " + "[" + ", ".join(f"'{g}'" for g in _GOOGLE_SCOPES) + "])",
                "scopes: Gmail scopes must be https://www.googleapis.com/auth/gmail.* "
                "(or openid, email, profile, https://mail.google.com/)",
                field_path=".scopes",
            ),
            cel(
                "self.redirectURL.startsWith('https://')"
                " || self.redirectURL.startsWith('http://localhost')"
                " || self.redirectURL.startsWith('http://127.0.0.1')",
                "redirectURL must use https (http only for localhost)",
                field_path=".redirectURL",
            ),
            cel(
                "self.tokenSecretName != self.clientSecretRef.name",
                "tokenSecretName must differ from clientSecretRef.name",
                field_path=".tokenSecretName",
            ),
        )
    )

    provider: OAuthProvider
    """slack or gmail."""
    client_secret_ref: ClientSecretRef
    """Secret with the OAuth client id and secret."""
    scopes: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        min_length=1, max_length=64, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Scopes to request (Slack: the bot token's)."""
    user_scopes: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Slack only: user scopes to request (sent as `user_scope`), e.g. search:read, which
    message search needs. Slack then issues a user token beside the bot token, kept in the
    token Secret under the `user_*` keys."""
    redirect_url: str = Field(alias="redirectURL", max_length=2048, pattern=r"^https?://[^\s]+$")
    """Where the provider sends the user back with the authorization code."""
    tenant: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Tenant that owns the connection."""
    token_secret_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        json_schema_extra=validations(
            cel(
                "self == oldSelf",
                "spec.tokenSecretName is immutable: the tokens stay in the Secret it named"
                " while services would read the new name; delete the OAuthConnection and"
                " create it again (and authorize again) to keep the tokens elsewhere",
            )
        ),
    )
    """Secret the operator writes the tokens to (created and owned by the operator).
    Immutable: the operator does not move tokens to another Secret."""
    refresh_before_expiry_seconds: int = Field(default=300, ge=30, le=86400)
    """Refresh the access token this long before it expires (at most half the token's
    lifetime before)."""
    revoke_on_delete: bool = True
    """Revoke the tokens at the provider when this object is deleted."""


class ConnectedAccount(StatusModel):
    """Who the connection acts as (never a token)."""

    team_id: str | None = None
    """Slack workspace (team) id."""
    user_id: str | None = None
    """Slack user id."""
    email: str | None = None
    """Gmail address."""


class RefusedClient(StatusModel):
    """The OAuth client the provider refused (`invalid_client`). The operator, or a restarted
    one, does not send it again while the client Secret (its resourceVersion) and the spec
    (its generation) stay as they were. Never a value of that Secret."""

    secret_name: str = Field(max_length=253)
    """The client Secret (`spec.clientSecretRef.name`) whose client was refused."""
    resource_version: str = Field(max_length=128)
    """That Secret's resourceVersion when it was refused: any change to the Secret (its
    values, or only its metadata) sends the client again, once."""
    generation: int | None = None
    """The spec's generation it was refused for."""
    error: str = Field(max_length=1024)
    """What the provider answered (its step, error code and description)."""


class OAuthConnectionStatus(StatusModel):
    """Observed state of an OAuthConnection. Never holds a token."""

    observed_generation: int | None = None
    """The .metadata.generation this status describes."""
    conditions: list[Condition] = conditions_field()
    """Ready, Reconciling and Stalled, as metav1.Conditions."""
    phase: OAuthPhase | None = None
    """PendingAuthorization, Connected, Refreshing, ReauthRequired, Revoked or Error."""
    authorization_url: str | None = Field(default=None, alias="authorizationURL")
    """Where a user goes to grant access (while PendingAuthorization)."""
    account: ConnectedAccount | None = None
    """The connected account."""
    granted_scopes: list[str] | None = Field(default=None, max_length=64)
    """Scopes the provider granted."""
    expires_at: dt.datetime | None = None
    """When the current access token expires."""
    last_refresh_time: dt.datetime | None = None
    """When the token was last refreshed."""
    refresh_failures: int = 0
    """Refresh requests that failed in a row (the provider refused or failed them, or they
    could not be sent); 0 again once the provider issues tokens (a refresh or a new
    authorization). A check that sends no refresh (tokens not due yet, a missing or refused
    client Secret, waiting for the user) leaves it as it is."""
    refused_client: RefusedClient | None = None
    """The OAuth client the provider refused, until the client Secret or the spec changes."""


MAX_NAME_LENGTH = LABEL_VALUE_MAX
"""The longest metadata.name: it is the value of the `xynergy.io/oauth-connection` label
(CONNECTION_LABEL) on the connection's token and authorization Secrets (a label value has at
most 63). The other names derived from it fit: the authorization Secret
`<name>-oauth-authorization` (83 of a Secret name's 253) and the OAuth state (its base64 is
well within the 1024 characters `decode_state` reads); the token Secret is named by
`spec.tokenSecretName`, not after the connection."""
NAME_MESSAGE = (
    f"metadata.name: must be at most {MAX_NAME_LENGTH} characters: it is the value of the"
    f" {CONNECTION_LABEL} label on the connection's token and authorization Secrets"
)
_NAME = NameLimit(MAX_NAME_LENGTH, NAME_MESSAGE)


def name_problem(name: str) -> str | None:
    """The message the CRD refuses a new connection named `name` with, then the name; None
    when its Secrets can carry it. For an object stored before the CRD checked it, which the
    operator stalls (InvalidName) before writing a Secret the apiserver would refuse."""
    return _NAME.problem(name)


class OAuthConnection(Resource[OAuthConnectionSpec, OAuthConnectionStatus]):
    """A Slack or Gmail OAuth connection whose tokens the operator keeps fresh."""

    kind: Literal["OAuthConnection"] = "OAuthConnection"


OAuthConnection.crd = CrdInfo(
    kind="OAuthConnection",
    plural="oauthconnections",
    singular="oauthconnection",
    short_names=("oc",),
    spec_model=OAuthConnectionSpec,
    status_model=OAuthConnectionStatus,
    description=(
        "OAuthConnection authorizes a Slack or Gmail account, keeps its tokens in a Secret, "
        "refreshes them before expiry and revokes them on delete."
    ),
    printer_columns=(
        PrinterColumn("Provider", ".spec.provider"),
        PrinterColumn("Tenant", ".spec.tenant"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Account", ".status.account.email", priority=1),
        PrinterColumn("Expires", ".status.expiresAt", type="date"),
        *ready_columns(),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    validations=(_NAME.rule,),
)
