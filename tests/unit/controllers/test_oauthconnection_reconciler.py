"""OAuthConnection converge and release against an in-memory apiserver (the real SecretStore
over a fake lightkube client) and a scripted provider: whose Secrets are whose, when tokens
are refreshed or re-authorized, and what a bad `expires_at`, a refused client or a missing
client Secret do."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import tenacity
from lightkube import ApiError
from lightkube.models.meta_v1 import (
    ObjectMeta,
    OwnerReference,
    Status,
    StatusCause,
    StatusDetails,
)
from lightkube.resources.core_v1 import Secret
from pydantic import SecretStr

from apis.conditions import check_invariants, get_condition
from apis.v1alpha1.oauthconnection import (
    CONNECTION_LABEL,
    REFRESH_REQUESTED_ANNOTATION,
    OAuthConnection,
    OAuthConnectionStatus,
    OAuthPhase,
    authorization_secret_name,
)
from controllers.core import Result, TransientError
from controllers.oauthconnection.reconciler import (
    OAuthConnectionReconciler,
    _Held,
    _held_user_keys,
    token_data,
)
from controllers.oauthconnection.secrets import (
    CLAIM_ANNOTATION,
    UNSTORED_ANNOTATION,
    SecretData,
    SecretStore,
)
from controllers.oauthconnection.settings import OAuthSettings
from controllers.providers.oauth import (
    ClientCredentials,
    ClientRefusedError,
    GrantRefusedError,
    ProviderUnreachableError,
    TokenSet,
    UserToken,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
NS = "default"


def _api_error(code: int) -> ApiError:
    return ApiError(status=Status(code=code, message=f"HTTP {code}"))


@dataclass
class Stored:
    data: dict[str, str]
    owners: list[OwnerReference] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    rv: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    """A new object's own UID: one made again under the same name has another."""


@dataclass
class Apiserver:
    """The Secret calls SecretStore makes of lightkube's AsyncClient, over a dict, with the
    apiserver's resourceVersion checks (replace and merge patch) and 404/409 answers."""

    secrets: dict[str, Stored] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    patches: list[str] = field(default_factory=list)
    failing_token_writes: int = 0
    """How many writes of a token Secret fail from now on, answering `failing_code` (503:
    etcd timing out; 403: the operator's RBAC or an admission policy refusing it)."""
    failing_code: int = 503
    on_write: Callable[[str], None] | None = None
    """Told the name of each write of a token Secret, before it succeeds or fails (a slow
    apiserver advances a test's clock here)."""
    before_create: Callable[[str], None] | None = None
    """Run once with the name, just before the next create: another writer getting there
    first."""
    before_delete: Callable[[str], None] | None = None
    """Run once with the name, just before the next delete: another writer between the read
    that decided the delete and the delete."""
    after_get: Callable[[str], bool] | None = None
    """Run with the name after each get (found or not) until it answers True: another
    writer right after a read."""

    def _write(self, name: str) -> None:
        if self.on_write is not None and name.endswith("-tokens"):
            self.on_write(name)
        if name.endswith("-tokens") and self.failing_token_writes > 0:
            self.failing_token_writes -= 1
            raise _api_error(self.failing_code)

    def _obj(self, name: str) -> Secret:
        s = self.secrets[name]
        meta = ObjectMeta(
            name=name,
            namespace=NS,
            resourceVersion=str(s.rv),
            annotations=dict(s.annotations),
            ownerReferences=list(s.owners),
            labels=dict(s.labels),
            uid=s.uid,
        )
        data = {k: base64.b64encode(v.encode()).decode() for k, v in s.data.items()}
        return Secret(metadata=meta, data=data)

    async def get(self, res: Any, name: str, *, namespace: str) -> Secret:
        try:
            if name not in self.secrets:
                raise _api_error(404)
            return self._obj(name)
        finally:
            if self.after_get is not None and self.after_get(name):
                self.after_get = None

    @staticmethod
    def _parts(obj: Secret) -> tuple[str, str | None, Stored]:
        meta = obj.metadata
        assert meta is not None
        stored = Stored(
            dict(obj.stringData or {}),
            list(meta.ownerReferences or []),
            labels=dict(meta.labels or {}),
        )
        return str(meta.name), meta.resourceVersion, stored

    async def create(self, obj: Secret) -> Secret:
        name, _, stored = self._parts(obj)
        hook, self.before_create = self.before_create, None
        if hook is not None:
            hook(name)
        self._write(name)
        if name in self.secrets:
            raise _api_error(409)
        self.secrets[name] = stored
        return self._obj(name)

    async def replace(self, obj: Secret) -> Secret:
        name, rv, stored = self._parts(obj)
        self._write(name)
        if name not in self.secrets:
            raise _api_error(404)
        old = self.secrets[name]
        if rv is not None and rv != str(old.rv):
            raise _api_error(409)
        stored.rv, stored.uid = old.rv + 1, old.uid
        self.secrets[name] = stored
        return self._obj(name)

    async def patch(self, res: Any, name: str, patch: dict[str, Any], **_: Any) -> Secret:
        if name not in self.secrets:
            raise _api_error(404)
        if "stringData" in patch:
            self._write(name)
        s = self.secrets[name]
        meta = patch.get("metadata", {})
        if meta.get("resourceVersion") not in (None, str(s.rv)):
            raise _api_error(409)
        if meta.get("uid") not in (None, s.uid):  # as the real apiserver answers (integration)
            cause = StatusCause(field="metadata.uid", message="field is immutable")
            raise ApiError(
                status=Status(code=422, message="invalid", details=StatusDetails(causes=[cause]))
            )
        for key, value in meta.get("annotations", {}).items():
            if value is None:
                s.annotations.pop(key, None)
            else:
                s.annotations[key] = value
        s.labels.update(meta.get("labels", {}))
        self.patches.append(name)
        for key, value in patch.get("data", {}).items():  # only removals (null) are sent
            assert value is None, "the store writes values through stringData"
            s.data.pop(key, None)
        s.data.update(patch.get("stringData", {}))
        s.rv += 1
        return self._obj(name)

    async def delete(self, res: Any, name: str, *, namespace: str) -> None:
        hook, self.before_delete = self.before_delete, None
        if hook is not None:
            hook(name)
        if name not in self.secrets:
            raise _api_error(404)
        del self.secrets[name]
        self.deleted.append(name)

    async def delete_preconditioned(
        self, name: str, *, namespace: str, uid: str | None, resource_version: str | None
    ) -> None:
        """A DELETE with DeleteOptions preconditions, answered as the real apiserver does
        (tests/integration/test_oauthconnection_secrets.py): 409 when the stored Secret's
        UID or resourceVersion is another."""
        hook, self.before_delete = self.before_delete, None
        if hook is not None:
            hook(name)
        if name not in self.secrets:
            raise _api_error(404)
        s = self.secrets[name]
        if uid not in (None, s.uid) or resource_version not in (None, str(s.rv)):
            raise _api_error(409)
        del self.secrets[name]
        self.deleted.append(name)


def secret_store(api: Apiserver, **kwargs: Any) -> SecretStore:
    """The real SecretStore over the in-memory apiserver (its DELETE with preconditions)."""
    return SecretStore(api, delete_preconditioned=api.delete_preconditioned, **kwargs)  # type: ignore[arg-type]


def owner(uid: str) -> OwnerReference:
    return OwnerReference(
        apiVersion="xynergy.io/v1alpha1",
        kind="OAuthConnection",
        name="x",
        uid=uid,
        controller=True,
    )


@dataclass
class Provider:
    """A provider issuing `lifetime`-second tokens (`a1`, `a2`, ...; refresh token `r1`)."""

    lifetime: int = 3600
    refresh_tokens: bool = True
    rotate: bool = False
    """Each refresh issues a new refresh token and kills the one it was given."""
    now: dt.datetime = NOW
    exchange_error: Exception | None = None
    refresh_error: Exception | None = None
    calls: dict[str, int] = field(
        default_factory=lambda: {"exchange": 0, "refresh": 0, "revoke": 0}
    )
    revoked: list[str] = field(default_factory=list)
    n: int = 0
    name: str = "google"

    def authorization_url(
        self,
        client: ClientCredentials,
        *,
        state: str,
        user_scopes: list[str] | None = None,
        **_: Any,
    ) -> str:
        self.asked_user_scopes.append(user_scopes)
        return f"https://provider.example/auth?state={state}"

    live_refresh: str = "r1"

    user_lifetime: int | None = None
    """Slack with user scopes: a user token (`u1`, `u2`, ...; refresh token `ur1`, ...,
    rotated) of this lifetime beside each exchange's tokens."""
    live_user_refresh: str = ""
    user_refresh_error: Exception | None = None
    asked_user_scopes: list[list[str] | None] = field(default_factory=list)

    def _tokens(self, *, exchange: bool = False) -> TokenSet:
        self.n += 1
        if self.rotate:
            self.live_refresh = f"r{self.n}"
        return TokenSet(
            access_token=SecretStr(f"a{self.n}"),
            refresh_token=SecretStr(self.live_refresh) if self.refresh_tokens else None,
            expires_at=self.now + dt.timedelta(seconds=self.lifetime),
            token_type="bearer",
            scopes=("s",),
            user=self._user() if exchange and self.user_lifetime is not None else None,
        )

    def _user(self) -> UserToken:
        self.n += 1
        self.live_user_refresh = f"ur{self.n}"
        assert self.user_lifetime is not None
        return UserToken(
            access_token=SecretStr(f"u{self.n}"),
            refresh_token=SecretStr(self.live_user_refresh),
            expires_at=self.now + dt.timedelta(seconds=self.user_lifetime),
            scopes=("search:read",),
        )

    async def exchange(self, client: ClientCredentials, **_: Any) -> TokenSet:
        self.calls["exchange"] += 1
        if self.exchange_error is not None:
            raise self.exchange_error
        return self._tokens(exchange=True)

    before_refresh: Callable[[], Awaitable[None]] | None = None
    """Awaited once, at the next refresh request, before it is answered: another writer
    acting while the request is in flight."""

    async def refresh(self, client: ClientCredentials, *, refresh_token: str) -> TokenSet:
        self.calls["refresh"] += 1
        hook, self.before_refresh = self.before_refresh, None
        if hook is not None:
            await hook()
        if refresh_token.startswith("ur"):  # the user token's: answered at the top level
            if self.user_refresh_error is not None:
                raise self.user_refresh_error
            if refresh_token != self.live_user_refresh:
                raise GrantRefusedError("slack", "refresh", "invalid_refresh_token")
            user = self._user()
            return TokenSet(
                user.access_token, user.refresh_token, user.expires_at, "user", user.scopes
            )
        if self.refresh_error is not None:
            raise self.refresh_error
        if refresh_token != self.live_refresh:
            raise GrantRefusedError("google", "refresh", "invalid_grant")
        return self._tokens()

    async def revoke(self, client: ClientCredentials, *, tokens: TokenSet) -> None:
        self.calls["revoke"] += 1
        self.revoked.append(tokens.access_token.get_secret_value())
        if tokens.user is not None:  # SlackOAuth.revoke revokes it as well
            self.revoked.append(tokens.user.access_token.get_secret_value())


def body(name: str = "a", *, secret: str = "a-tokens", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "OAuthConnection",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1},
        "spec": {
            "provider": "gmail",
            "clientSecretRef": {"name": "client"},
            "scopes": ["https://www.googleapis.com/auth/gmail.readonly"],
            "redirectURL": "https://app.example/cb",
            "tenant": "acme",
            "tokenSecretName": secret,
            **spec,
        },
    }


@dataclass
class Clock:
    """The reconcilers' clock (when a refresh claim is written): the `now` of the converge
    `World.sync` runs, plus the time a test lets pass during it (a slow apiserver)."""

    now: dt.datetime = NOW

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class World:
    api: Apiserver
    provider: Provider
    rec: OAuthConnectionReconciler
    sleeps: list[float]
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The status each connection's last converge wrote, by name: the core hands every
    converge the object as stored, status included."""
    clock: Clock = field(default_factory=Clock)

    async def sync(self, b: dict[str, Any], at: dt.datetime = NOW) -> Result:
        self.provider.now = self.clock.now = at
        name = b["metadata"]["name"]
        if "status" not in b and name in self.statuses:
            b = {**b, "status": self.statuses[name]}
        result = await self.rec.reconcile(b, now=at, child=None)
        self.statuses[name] = st(result).model_dump(mode="json", by_alias=True, exclude_none=True)
        conditions = st(result).conditions
        gen = b["metadata"]["generation"]
        assert (
            check_invariants(generation=gen, observed_generation=gen, conditions=conditions) == []
        )
        return result

    def restart(self) -> None:
        """A new operator process: a new reconciler (nothing in memory) on the same apiserver
        and provider; what it knows of each connection is what its status says."""
        self.rec = OAuthConnectionReconciler(
            secret_store(self.api),
            {"slack": self.provider, "google": self.provider},  # type: ignore[dict-item]
            settings=OAuthSettings(),
            sleep=self.rec._sleep,
            clock=self.clock,
        )

    def edit_client(self, **data: str) -> None:
        """The user edits the client Secret (a new resourceVersion, as the apiserver does)."""
        client = self.api.secrets["client"]
        client.data.update(data)
        client.rv += 1

    def approve(self, name: str = "a", code: str = "code-1") -> None:
        """What the gateway's callback does: the state out, the provider's code in."""
        authz = self.api.secrets[authorization_secret_name(name)]
        authz.data.pop("state")
        authz.data["code"] = code

    async def connect(self, b: dict[str, Any], at: dt.datetime = NOW) -> Result:
        await self.sync(b, at)
        self.approve(b["metadata"]["name"])
        result = await self.sync(b, at)
        assert st(result).phase is OAuthPhase.CONNECTED, result.status
        return result


def world(**provider: Any) -> World:
    api = Apiserver()
    api.secrets["client"] = Stored({"client_id": "id", "client_secret": "shh"})
    prov = Provider(**provider)
    sleeps: list[float] = []
    clock = Clock()

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    rec = OAuthConnectionReconciler(
        secret_store(api),
        {"slack": prov, "google": prov},  # type: ignore[dict-item]
        settings=OAuthSettings(),
        sleep=sleep,
        clock=clock,
    )
    return World(api, prov, rec, sleeps, clock=clock)


def st(result: Result) -> OAuthConnectionStatus:
    assert isinstance(result.status, OAuthConnectionStatus)
    return result.status


def ready(result: Result) -> tuple[str, str, str]:
    cond = get_condition(st(result).conditions, "Ready")
    assert cond is not None
    return cond.status, cond.reason, cond.message


def degraded(result: Result) -> tuple[str, str] | None:
    cond = get_condition(st(result).conditions, "Degraded")
    if cond is None:
        return None
    assert cond.status == "True"
    return cond.reason, cond.message


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


# -- whose Secret it is ------------------------------------------------------------------


async def test_another_connections_token_secret_is_neither_used_nor_revoked_nor_deleted() -> None:
    w = world()
    await w.connect(body("a"))
    a_tokens = dict(w.api.secrets["a-tokens"].data)
    b = body("b", secret="a-tokens")

    result = await w.sync(b)

    assert st(result).phase is OAuthPhase.ERROR
    status, reason, message = ready(result)
    assert (status, reason) == ("False", "SecretNotOwned")
    assert "spec.tokenSecretName: Secret a-tokens exists and is not owned by this" in message
    assert st(result).expires_at is None
    assert [e.reason for e in result.events] == ["SecretNotOwned"]
    assert authorization_secret_name("b") not in w.api.secrets  # nothing started for b

    gone, event = await w.rec.release(b)

    assert gone
    assert event is None
    assert w.provider.calls["revoke"] == 0
    assert w.api.secrets["a-tokens"].data == a_tokens
    assert "a-tokens" not in w.api.deleted


async def test_a_users_own_secret_of_that_name_is_never_overwritten() -> None:
    w = world()
    w.api.secrets["my-config"] = Stored({"DATABASE_URL": "postgres://x"})
    b = body(secret="my-config")

    result = await w.sync(b)

    assert ready(result)[1] == "SecretNotOwned"
    assert "Secret my-config exists and is not owned" in ready(result)[2]
    # a code already delivered is not exchanged into a Secret we may not write
    await w.rec.release(b)
    w.api.secrets[authorization_secret_name("a")] = Stored(
        {"code": "code-1", "code_verifier": "v"}, [owner("uid-a")]
    )
    result = await w.sync(b)
    assert ready(result)[1] == "SecretNotOwned"
    assert w.provider.calls["exchange"] == 0
    assert w.api.secrets["my-config"].data == {"DATABASE_URL": "postgres://x"}
    assert w.api.secrets["my-config"].owners == []
    assert "my-config" not in w.api.deleted


async def test_an_authorization_secret_owned_by_someone_else_stalls_naming_it() -> None:
    w = world()
    name = authorization_secret_name("a")
    w.api.secrets[name] = Stored({"code": "stolen"}, [owner("uid-other")])

    result = await w.sync(body("a"))

    assert ready(result)[1] == "SecretNotOwned"
    assert f"the authorization Secret {name} exists and is not owned" in ready(result)[2]
    assert w.provider.calls["exchange"] == 0
    await w.rec.release(body("a"))
    assert w.api.secrets[name].data == {"code": "stolen"}


async def test_a_replace_is_made_under_the_resource_version_it_read() -> None:
    w = world()
    await w.sync(body("a"))
    store = w.rec.store
    conn_body = body("a")
    conn = OAuthConnection.model_validate(conn_body)
    read = await store.authorization(conn)
    assert read is not None
    w.api.secrets[authorization_secret_name("a")].data["code"] = "from-the-callback"
    w.api.secrets[authorization_secret_name("a")].rv += 1

    with pytest.raises(TransientError, match="changed meanwhile"):
        await store.write(conn, role="authorization", data={"state": "new"}, previous=read)

    assert w.api.secrets[authorization_secret_name("a")].data["code"] == "from-the-callback"


# -- refresh timing ----------------------------------------------------------------------


async def test_a_lead_as_long_as_the_token_lifetime_refreshes_at_half_the_lifetime() -> None:
    w = world(lifetime=3599)  # Gmail's tokens
    b = body(refreshBeforeExpirySeconds=3600)

    result = await w.connect(b)

    assert result.requeue_after == pytest.approx(1799.5)
    assert "more than half the token's lifetime (3599 s)" in ready(result)[2]
    for t in (1, 60, 1700):
        result = await w.sync(b, at(t))
        assert w.provider.calls["refresh"] == 0, t
        assert result.requeue_after == pytest.approx(1799.5 - t)
    result = await w.sync(b, at(1800))
    assert w.provider.calls["refresh"] == 1
    assert result.requeue_after == pytest.approx(1799.5)
    result = await w.sync(b, at(1801))
    assert w.provider.calls["refresh"] == 1
    assert ready(result)[0] == "True"
    # a lead under half the lifetime is kept as it is
    result = await w.connect(body("c", secret="c-tokens", refreshBeforeExpirySeconds=1700))
    assert result.requeue_after == pytest.approx(3599 - 1700)
    assert "half" not in ready(result)[2]


async def test_an_expired_token_without_a_refresh_token_asks_for_a_new_authorization() -> None:
    w = world(lifetime=600, refresh_tokens=False)
    b = body()
    result = await w.connect(b)
    assert result.requeue_after == pytest.approx(600)  # looked at again when it expires

    result = await w.sync(b, at(601))

    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    assert ready(result)[0] == "False"
    assert (
        "expired at 2026-03-01T12:10:00Z and the provider issued no refresh token"
        in (ready(result)[2])
    )
    url = st(result).authorization_url
    assert url is not None
    assert "state=" in url
    assert "a-tokens" not in w.api.secrets
    assert "ReauthRequired" in [e.reason for e in result.events]


# -- a hand-edited expires_at ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["2000-01-01T00:00:00ZZ", "tomorrow", " "])
async def test_an_unreadable_expiry_counts_as_expired(value: str) -> None:
    w = world()
    b = body()
    await w.connect(b)
    w.api.secrets["a-tokens"].data["expires_at"] = value

    result = await w.sync(b, at(5))

    if value.strip():
        assert w.provider.calls["refresh"] == 1
        assert w.api.secrets["a-tokens"].data["expires_at"] == "2026-03-01T13:00:05Z"
    assert st(result).phase is OAuthPhase.CONNECTED
    w.api.secrets["a-tokens"].data["expires_at"] = value
    gone, event = await w.rec.release(b)
    assert gone
    assert event is not None
    assert event.reason == "Revoked"
    assert "a-tokens" not in w.api.secrets


async def test_an_unreadable_expiry_without_a_refresh_token_asks_for_authorization() -> None:
    w = world(refresh_tokens=False)
    b = body()
    await w.connect(b)
    w.api.secrets["a-tokens"].data["expires_at"] = "soon"

    result = await w.sync(b, at(5))

    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    assert "expires_at is not an RFC 3339 time" in ready(result)[2]


# -- the provider during code exchange ------------------------------------------------------


async def test_a_refused_client_stalls_instead_of_sending_the_user_round_again() -> None:
    w = world()
    b = body()
    await w.sync(b)
    w.approve()
    w.provider.exchange_error = ClientRefusedError("google", "code exchange", "invalid_client")

    result = await w.sync(b)

    assert st(result).phase is OAuthPhase.ERROR
    status, reason, message = ready(result)
    assert (status, reason) == ("False", "ClientRefused")
    assert "spec.clientSecretRef" in message
    assert "Secret client" in message
    assert "shh" not in message
    assert "AuthorizationFailed" not in [e.reason for e in result.events]
    authz = w.api.secrets[authorization_secret_name("a")].data
    assert authz["code"] == "code-1"  # not swapped for a new state: the user is not sent round
    assert "state" not in authz


async def test_a_client_refused_in_the_exchange_is_not_sent_again_until_its_secret_changes() -> (
    None
):
    w = world()
    b = body()
    await w.sync(b)
    w.approve()
    w.provider.exchange_error = ClientRefusedError("google", "code exchange", "invalid_client")
    await w.sync(b)

    result = await w.sync(b, at(600))  # a resync: the same client would be refused the same

    assert w.provider.calls["exchange"] == 1
    assert ready(result)[1] == "ClientRefused"
    w.provider.exchange_error = None
    w.edit_client(client_secret="fixed")

    result = await w.sync(b, at(601))

    assert w.provider.calls["exchange"] == 2
    assert st(result).phase is OAuthPhase.CONNECTED


# -- a refused client during a refresh -----------------------------------------------------


async def _refuse_refresh(w: World, b: dict[str, Any]) -> Result:
    await w.connect(b)
    w.provider.refresh_error = ClientRefusedError(
        "google", "refresh", "invalid_client", "The OAuth client was not found."
    )
    return await w.sync(b, at(3400))


async def test_a_client_refused_in_a_refresh_keeps_valid_tokens_connected_and_degraded() -> None:
    w = world()
    b = body()

    result = await _refuse_refresh(w, b)  # at 3400: due, valid until 3600

    assert w.provider.calls["refresh"] == 1
    assert st(result).phase is OAuthPhase.CONNECTED  # what services read: still usable
    assert ready(result)[:2] == ("True", "Connected")
    assert st(result).expires_at == at(3600)
    reason, message = degraded(result) or ("", "")
    assert reason == "ClientRefused"
    assert "valid until 2026-03-01T13:00:00Z but cannot be refreshed" in message
    assert "spec.clientSecretRef" in message
    assert "Secret client (keys client_id and client_secret)" in message
    assert "invalid_client" in message
    assert "shh" not in message
    assert "shh" not in ready(result)[2]
    assert [e.reason for e in result.events] == ["ClientRefused"]
    assert [e.type for e in result.events] == ["Warning"]
    assert all("shh" not in e.message for e in result.events)
    assert result.requeue.name == "RESYNC"  # not the backoff of a transient failure
    assert result.requeue_after == 60.0
    tokens = w.api.secrets["a-tokens"]
    assert tokens.data["access_token"] == "a1"  # the tokens are kept
    assert "xynergy.io/refresh-claim" not in tokens.annotations  # the claim is let go

    result = await w.sync(b, at(3600))  # expired: now it stalls, naming the same

    assert w.provider.calls["refresh"] == 1
    assert st(result).phase is OAuthPhase.ERROR
    status, reason, message = ready(result)
    assert (status, reason) == ("False", "ClientRefused")
    stalled = get_condition(st(result).conditions, "Stalled")
    assert stalled is not None
    assert (stalled.status, stalled.reason) == ("True", "ClientRefused")
    assert get_condition(st(result).conditions, "Reconciling") is None
    assert degraded(result) is None
    assert "Secret client (keys client_id and client_secret)" in message
    assert "shh" not in message


async def test_a_client_refused_in_a_refresh_is_not_retried_until_the_secret_changes() -> None:
    w = world()
    b = body()
    refused = await _refuse_refresh(w, b)

    first = None
    kept = {**b, "status": st(refused).model_dump(mode="json", by_alias=True, exclude_none=True)}
    for t in (3410, 3500, 3599):  # resyncs and other triggers while valid: no provider call
        result = await w.sync(kept, at(t))
        kept["status"] = st(result).model_dump(mode="json", by_alias=True, exclude_none=True)
        assert st(result).phase is OAuthPhase.CONNECTED, t
        assert (degraded(result) or ("",))[0] == "ClientRefused", t
        # nothing new to say: no Warning each minute, no status write (same condition times)
        assert [e.reason for e in result.events] == [], t
        cond = get_condition(st(result).conditions, "Degraded")
        assert cond is not None
        first = first or cond.last_transition_time
        assert cond.last_transition_time == first, t
    for t in (3600, 4000):  # expired
        result = await w.sync(b, at(t))
        assert ready(result)[1] == "ClientRefused", t
    assert w.provider.calls["refresh"] == 1
    w.edit_client()  # a change of its metadata only: a new version, sent once more
    result = await w.sync(b, at(4001))
    assert w.provider.calls["refresh"] == 2
    assert ready(result)[1] == "ClientRefused"
    await w.sync(b, at(4002))
    assert w.provider.calls["refresh"] == 2

    w.provider.refresh_error = None
    w.edit_client(client_secret="fixed")
    result = await w.sync(b, at(4003))  # what the client Secret's watch triggers

    assert w.provider.calls["refresh"] == 3
    assert st(result).phase is OAuthPhase.CONNECTED
    assert ready(result)[0] == "True"
    assert degraded(result) is None
    assert w.api.secrets["a-tokens"].data["access_token"] == "a2"


async def test_a_refused_client_stays_refused_after_an_operator_restart() -> None:
    w = world()
    b = body()
    refused = await _refuse_refresh(w, b)
    record = st(refused).refused_client
    assert record is not None
    assert (record.secret_name, record.generation) == ("client", 1)
    assert record.resource_version == str(w.api.secrets["client"].rv)
    assert "invalid_client" in record.error
    assert "shh" not in st(refused).model_dump_json()  # on record: never a value of the Secret
    w.restart()

    result = await w.sync(b, at(3410))  # the restarted operator's first look

    assert w.provider.calls["refresh"] == 1  # the same client is not sent again
    assert st(result).phase is OAuthPhase.CONNECTED
    assert (degraded(result) or ("",))[0] == "ClientRefused"
    assert result.events == ()  # nothing new to say
    w.restart()
    result = await w.sync(b, at(3600))  # expired, after another restart: stalled, not sent
    assert w.provider.calls["refresh"] == 1
    assert ready(result)[:2] == ("False", "ClientRefused")

    w.restart()
    w.provider.refresh_error = None
    w.edit_client(client_secret="fixed")
    result = await w.sync(b, at(3601))

    assert w.provider.calls["refresh"] == 2
    assert st(result).phase is OAuthPhase.CONNECTED
    assert st(result).refused_client is None


async def test_a_client_refused_in_the_exchange_stays_refused_after_a_restart() -> None:
    w = world()
    b = body()
    await w.sync(b)
    w.approve()
    w.provider.exchange_error = ClientRefusedError("google", "code exchange", "invalid_client")
    await w.sync(b)
    w.restart()

    result = await w.sync(b, at(60))

    assert w.provider.calls["exchange"] == 1
    assert st(result).phase is OAuthPhase.ERROR
    assert ready(result)[1] == "ClientRefused"
    assert "Secret client (keys client_id and client_secret)" in ready(result)[2]


async def test_a_client_refused_in_a_refresh_is_tried_again_when_the_spec_changes() -> None:
    w = world()
    b = body()
    await _refuse_refresh(w, b)
    w.provider.refresh_error = None
    await w.sync(b, at(3405))
    assert w.provider.calls["refresh"] == 1
    b2 = body(refreshBeforeExpirySeconds=400)
    b2["metadata"]["generation"] = 2

    result = await w.rec.reconcile(b2, now=at(3410), child=None)

    assert w.provider.calls["refresh"] == 2
    assert st(result).phase is OAuthPhase.CONNECTED


async def test_the_client_secret_is_labelled_once_for_the_operators_watch() -> None:
    w = world()
    b = body()
    await w.connect(b)
    await w.sync(b, at(3400))  # a refresh reads it again

    assert w.api.secrets["client"].labels == {"xynergy.io/oauth-client": "true"}
    assert w.api.patches.count("client") == 1
    assert w.api.secrets["client"].data == {"client_id": "id", "client_secret": "shh"}


# -- the client Secret ---------------------------------------------------------------------


async def test_a_missing_client_secret_leaves_valid_tokens_connected() -> None:
    w = world(lifetime=3600)
    b = body()
    await w.connect(b)
    del w.api.secrets["client"]

    result = await w.sync(b, at(60))

    assert st(result).phase is OAuthPhase.CONNECTED
    assert ready(result)[0] == "True"
    assert st(result).expires_at == at(3600)

    result = await w.sync(b, at(3400))  # due for a refresh it cannot make; still valid

    assert st(result).phase is OAuthPhase.CONNECTED
    assert (
        "cannot be refreshed: spec.clientSecretRef: Secret client not found" in (ready(result)[2])
    )
    assert result.requeue_after == 60.0
    assert [e.reason for e in result.events] == ["ClientSecretMissing"]
    assert degraded(result) == ("ClientSecretMissing", ready(result)[2])

    result = await w.sync(b, at(3600))  # expired: now it is an error
    assert st(result).phase is OAuthPhase.ERROR
    assert ready(result)[1] == "ClientSecretMissing"
    assert degraded(result) is None


async def test_a_missing_client_secret_is_reported_for_the_watch_of_its_creation() -> None:
    w = world()
    missing: list[tuple[str, str]] = []
    w.rec.store = secret_store(w.api, missing_client=lambda ns, name: missing.append((ns, name)))
    client = w.api.secrets.pop("client")

    result = await w.sync(body())

    assert ready(result)[1] == "ClientSecretMissing"
    assert missing == [(NS, "client")]
    w.api.secrets["client"] = client  # what that watch sees: the converge finds and labels it

    result = await w.sync(body(), at(1))

    assert st(result).phase is OAuthPhase.PENDING_AUTHORIZATION
    assert missing == [(NS, "client")]
    assert w.api.secrets["client"].labels == {"xynergy.io/oauth-client": "true"}


# -- tokens whose write fails ----------------------------------------------------------------


async def test_a_failed_token_write_is_retried_in_process() -> None:
    w = world()
    b = body()
    await w.sync(b)
    w.approve()
    w.api.failing_token_writes = 2

    result = await w.sync(b)

    assert st(result).phase is OAuthPhase.CONNECTED
    assert len(w.sleeps) == 2
    assert w.api.secrets["a-tokens"].data["access_token"] == "a1"
    assert w.provider.calls["exchange"] == 1


async def test_exchanged_tokens_whose_writes_all_fail_are_written_next_time_not_fetched_again() -> (
    None
):
    w = world()
    b = body()
    await w.sync(b)
    w.approve()
    w.api.failing_token_writes = 100

    result = await w.sync(b)

    assert result.requeue.name == "BACKOFF"
    status, reason, message = ready(result)
    assert (status, reason) == ("False", "TokensNotStored")  # still pending authorization
    assert "written on the next attempt" in message
    assert "a1" not in message
    assert "a-tokens" not in w.api.secrets
    w.api.failing_token_writes = 0

    result = await w.sync(b, at(30))

    assert st(result).phase is OAuthPhase.CONNECTED
    assert w.provider.calls["exchange"] == 1  # the single-use code was not sent again
    assert w.api.secrets["a-tokens"].data["access_token"] == "a1"
    assert authorization_secret_name("a") not in w.api.secrets
    result = await w.sync(b, at(60))
    assert ready(result)[0] == "True"
    assert w.provider.calls["exchange"] == 1


async def test_tokens_whose_write_is_refused_are_retried_promptly_and_said_to_be_pending() -> None:
    w = world()
    b = body()
    await w.sync(b)
    w.approve()
    w.api.failing_token_writes, w.api.failing_code = 100, 403

    result = await w.sync(b)

    assert result.requeue.name == "BACKOFF"  # retried within a minute, not at the resync
    assert st(result).phase is OAuthPhase.PENDING_AUTHORIZATION  # not Error: nothing to do
    reconciling = get_condition(st(result).conditions, "Reconciling")
    assert reconciling is not None
    assert (reconciling.status, reconciling.reason) == ("True", "TokensNotStored")
    assert "but writing Secret a-tokens failed: HTTP 403;" in reconciling.message
    assert (reconciling.message.count("a-tokens"), reconciling.message.count("403")) == (1, 1)
    assert "only in this operator's memory" in reconciling.message
    assert "a restart before then loses them" in reconciling.message
    assert get_condition(st(result).conditions, "Stalled") is None
    assert "a1" not in reconciling.message
    w.api.failing_token_writes = 0  # the RBAC fixed

    result = await w.sync(b, at(5))

    assert st(result).phase is OAuthPhase.CONNECTED
    assert w.provider.calls["exchange"] == 1
    assert w.api.secrets["a-tokens"].data["access_token"] == "a1"


async def test_a_rotated_refresh_token_whose_write_fails_is_not_lost() -> None:
    w = world(rotate=True)
    b = body()
    await w.connect(b)
    w.api.failing_token_writes = 100

    result = await w.sync(b, at(3400))

    assert result.requeue.name == "BACKOFF"
    assert w.provider.calls["refresh"] == 1
    w.api.failing_token_writes = 0

    result = await w.sync(b, at(3410))

    assert st(result).phase is OAuthPhase.CONNECTED
    assert w.api.secrets["a-tokens"].data["refresh_token"] == w.provider.live_refresh
    result = await w.sync(b, at(3400 + 3400))  # the next refresh works with the stored token
    assert st(result).phase is OAuthPhase.CONNECTED
    assert w.provider.calls["refresh"] == 2


def _no_token_in(result: Result, *tokens: str) -> None:
    """None of `tokens` in the status or the Events of `result`, as a whole value: the fake's
    tokens are short ("r2"), and an authorization URL's random `state` holds such a pair of
    characters now and then (a flaky false alarm); a leaked token stands alone."""
    text = st(result).model_dump_json() + repr([e.message for e in result.events])
    leaked = [t for t in tokens if re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", text)]
    assert not leaked, leaked


async def test_refreshed_tokens_not_stored_leave_the_valid_stored_token_ready_and_degraded() -> (
    None
):
    w = world(rotate=True)
    b = body()
    await w.connect(b)  # a1, valid until 13:00; refresh due at 12:55 (the 300 s lead)
    w.api.failing_token_writes, w.api.failing_code = 100, 403  # e.g. an admission policy

    result = await w.sync(b, at(3400))  # refreshed at the provider (a2, r2), the write refused

    assert w.provider.calls["refresh"] == 1
    assert w.api.secrets["a-tokens"].data["access_token"] == "a1"  # what services read
    assert result.requeue.name == "BACKOFF"  # the write is retried soon, not at the resync
    assert st(result).phase is OAuthPhase.CONNECTED
    status, reason, message = ready(result)
    assert (status, reason) == ("True", "Connected")
    assert "the stored access token is valid until 2026-03-01T13:00:00Z" in message
    assert "newer tokens are not stored yet" in message
    assert st(result).expires_at == at(3600)  # the stored token's expiry, not the new one's
    assert get_condition(st(result).conditions, "Reconciling") is None
    reason, message = degraded(result) or ("", "")
    assert reason == "TokensNotStored"
    # the Secret and the apiserver's answer, each said once
    assert (
        "the provider issued new tokens, but writing Secret a-tokens failed: HTTP 403;" in message
    )
    assert (message.count("a-tokens"), message.count("HTTP 403")) == (1, 1)
    assert "only in this operator's memory" in message
    assert "retried with backoff" in message
    assert "services keep reading the stored access token, valid until" in message
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "TokensNotStored")]
    assert st(result).refresh_failures == 0  # the refresh worked
    _no_token_in(result, "a1", "a2", "r1", "r2")

    first = get_condition(st(result).conditions, "Degraded")
    result = await w.sync(b, at(3410))  # the backoff's retry, still refused: said once

    assert w.provider.calls["refresh"] == 1  # the held tokens are written, never fetched again
    assert ready(result)[:2] == ("True", "Connected")
    assert result.events == ()
    cond = get_condition(st(result).conditions, "Degraded")
    assert cond is not None
    assert first is not None
    assert (cond.reason, cond.last_transition_time) == (
        "TokensNotStored",
        first.last_transition_time,
    )
    _no_token_in(result, "a1", "a2", "r1", "r2")

    result = await w.sync(b, at(3600))  # the stored token expired meanwhile: not ready

    assert st(result).phase is OAuthPhase.CONNECTED
    assert ready(result)[:2] == ("False", "TokensNotStored")
    reconciling = get_condition(st(result).conditions, "Reconciling")
    assert reconciling is not None
    assert (reconciling.status, reconciling.reason) == ("True", "TokensNotStored")
    assert degraded(result) is None
    assert result.requeue.name == "BACKOFF"
    _no_token_in(result, "a1", "a2", "r1", "r2")
    w.api.failing_token_writes = 0  # the policy removed

    result = await w.sync(b, at(3610))

    assert ready(result)[:2] == ("True", "Connected")
    assert degraded(result) is None
    assert st(result).expires_at == at(3400 + 3600)
    assert w.api.secrets["a-tokens"].data["access_token"] == "a2"
    assert w.api.secrets["a-tokens"].data["refresh_token"] == w.provider.live_refresh == "r2"
    assert w.provider.calls["refresh"] == 1


async def test_tokens_not_stored_while_the_stored_token_is_valid_are_ready_after_a_restart() -> (
    None
):
    """A restart loses the held tokens (docs/oauthconnection.md): the restarted operator waits
    out the claim the lost one renewed, then goes on with the stored tokens, which still work,
    and refreshes them as before (Google keeps its refresh token): Degraded and the Secret's
    mark go with that refresh."""
    w = world()
    b = body()
    await w.connect(b)
    w.api.failing_token_writes = 100
    result = await w.sync(b, at(3400))
    assert (degraded(result) or ("",))[0] == "TokensNotStored"
    w.api.failing_token_writes = 0
    w.restart()

    result = await w.sync(b, at(3401))  # the lost holder's claim, until 3460

    assert st(result).phase is OAuthPhase.REFRESHING
    assert w.provider.calls["refresh"] == 1
    result = await w.sync(b, at(3461))
    assert w.provider.calls["refresh"] == 2
    assert ready(result)[:2] == ("True", "Connected")
    assert degraded(result) is None
    assert w.api.secrets["a-tokens"].data["access_token"] == "a3"
    assert not {CLAIM_ANNOTATION, UNSTORED_ANNOTATION} & set(w.api.secrets["a-tokens"].annotations)


def _claim(w: World) -> tuple[str, dt.datetime]:
    holder, _, until = w.api.secrets["a-tokens"].annotations[CLAIM_ANNOTATION].partition(" ")
    return holder, dt.datetime.fromisoformat(until.replace("Z", "+00:00"))


def replica(w: World) -> OAuthConnectionReconciler:
    """Another operator replica on the same apiserver and provider (its own holder id)."""
    return OAuthConnectionReconciler(
        secret_store(w.api),
        {"slack": w.provider, "google": w.provider},  # type: ignore[dict-item]
        settings=OAuthSettings(),
        sleep=w.rec._sleep,
        clock=w.clock,
    )


async def test_refreshed_tokens_held_in_memory_keep_the_claim_so_no_replica_spends_it_again() -> (
    None
):
    """The refused write carried the claim's removal: the holder renews the claim at each
    retry, which comes within a third of the claim's lifetime, so another replica never
    refreshes with the rotated (spent) refresh token while the tokens wait."""
    w = world(rotate=True)
    b = body()
    await w.connect(b)  # r1
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    result = await w.sync(b, at(3400))  # refreshed (a2, r2; r1 spent), the write refused
    assert w.provider.calls["refresh"] == 1
    assert result.requeue.name == "BACKOFF"
    assert result.requeue_after == 20.0  # a third of the 60 s claim: renewed before it lapses
    holder, until = _claim(w)
    assert until == at(3460)
    marked = w.api.secrets["a-tokens"].annotations[UNSTORED_ANNOTATION]
    assert marked == "2026-03-01T12:56:40Z"  # when the held tokens were issued: no token

    for t in (3420, 3440, 3460, 3480):  # retries, each renewing the claim; still refused
        result = await w.sync(b, at(t))
        assert result.requeue_after == 20.0
        assert _claim(w) == (holder, at(t + 60))
        other = await replica(w).reconcile(
            {**b, "status": w.statuses["a"]}, now=at(t + 1), child=None
        )
        assert st(other).phase is OAuthPhase.REFRESHING  # kept off: no refresh with r1
    assert w.provider.calls["refresh"] == 1
    assert ready(result)[:2] == ("True", "Connected")  # a1 valid until 3600
    w.api.failing_token_writes = 0

    result = await w.sync(b, at(3500))

    assert ready(result)[:2] == ("True", "Connected")
    assert degraded(result) is None
    assert result.requeue_after is not None
    assert result.requeue_after > 3000  # the resync
    stored = w.api.secrets["a-tokens"]
    assert (stored.data["access_token"], stored.data["refresh_token"]) == ("a2", "r2")
    assert not {CLAIM_ANNOTATION, UNSTORED_ANNOTATION} & set(stored.annotations)
    assert w.provider.calls["refresh"] == 1


async def test_a_restart_losing_rotated_tokens_asks_to_authorize_again_saying_why() -> None:
    """The operator holding refreshed tokens of a rotating provider restarts: the stored
    refresh token was spent by that refresh. The restarted operator waits out the claim,
    sends it once, and the refusal ends in ReauthRequired naming the lost refresh (the mark
    on the Secret), not a bare invalid_grant; then nothing more is sent."""
    w = world(rotate=True)
    b = body()
    await w.connect(b)
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(3400))
    w.api.failing_token_writes = 0
    w.restart()
    result = await w.sync(b, at(3430))
    assert st(result).phase is OAuthPhase.REFRESHING  # the lost holder's claim
    assert w.provider.calls["refresh"] == 1

    result = await w.sync(b, at(3461))

    assert w.provider.calls["refresh"] == 2  # r1, once
    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    stalled = get_condition(st(result).conditions, "Stalled")
    assert stalled is not None
    assert stalled.reason == "AuthorizationFailed"
    assert "the provider refused the refresh token (invalid_grant)" in stalled.message
    assert (
        "already used by a refresh at 2026-03-01T12:56:40Z whose new tokens could not be "
        "written to Secret a-tokens and were lost"
    ) in stalled.message
    assert "authorize at status.authorizationURL" in stalled.message
    assert st(result).authorization_url
    assert [e.reason for e in result.events] == ["ReauthRequired"]
    assert "a-tokens" not in w.api.secrets  # the dead tokens
    assert st(result).refresh_failures == 1
    _no_token_in(result, "a1", "a2", "r1", "r2")
    result = await w.sync(b, at(3520))  # a later converge (the state kept) says it still
    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    later = get_condition(st(result).conditions, "Stalled")
    assert later is not None
    assert (later.reason, later.message) == (stalled.reason, stalled.message)
    assert result.events == ()
    assert w.provider.calls["refresh"] == 2


async def test_held_tokens_are_a_patch_that_keeps_a_readers_annotation_and_the_users_labels() -> (
    None
):
    """Written later, held tokens are merged into the Secret as at their first write: a
    reader's `refresh-requested`, a user's annotation or label stay."""
    for rotate, first in ((True, "refresh"), (False, "exchange")):
        w = world(rotate=rotate)
        b = body()
        if first == "refresh":
            await w.connect(b)
            w.api.failing_token_writes = 100
            await w.sync(b, at(3400))
        else:
            await w.sync(b)
            w.approve()
            w.api.failing_token_writes = 100
            await w.sync(b)
            w.api.secrets["a-tokens"] = Stored(  # made meanwhile, e.g. by a previous write
                {"access_token": "old", "user_access_token": "u-old"}, [owner("uid-a")]
            )
        stored = w.api.secrets["a-tokens"]
        stored.annotations[REFRESH_REQUESTED_ANNOTATION] = "2026-03-01T12:57:00Z"
        stored.annotations["example.com/owner"] = "team-a"
        stored.labels["example.com/team"] = "a"
        stored.rv += 1
        w.api.failing_token_writes = 0

        result = await w.sync(b, at(3410))

        assert ready(result)[:2] == ("True", "Connected"), first
        stored = w.api.secrets["a-tokens"]
        assert stored.data["access_token"] == ("a2" if first == "refresh" else "a1")
        assert stored.annotations == {
            REFRESH_REQUESTED_ANNOTATION: "2026-03-01T12:57:00Z",
            "example.com/owner": "team-a",
        }, first
        assert stored.labels["example.com/team"] == "a"
        if first == "exchange":  # keys of the replaced tokens that the new ones lack go
            assert "user_access_token" not in stored.data
            assert stored.labels[CONNECTION_LABEL] == "a"
            assert [r.uid for r in stored.owners] == ["uid-a"]


async def test_a_token_secret_deleted_while_refreshed_tokens_are_held_is_created_with_them() -> (
    None
):
    """The user deletes the token Secret while refreshed tokens wait in memory for their write:
    the write is a patch, which now gets 404; the held tokens are the newest (the deleted
    Secret's refresh token was spent by their refresh), so the Secret is created again with
    them, owned and labelled as the first write made it, and the connection is Connected."""
    w = world(rotate=True)
    b = body()
    await w.connect(b)  # a1, r1
    first = w.api.secrets["a-tokens"]
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(3400))  # refreshed (a2, r2; r1 spent), the write refused: held
    del w.api.secrets["a-tokens"]  # kubectl delete secret a-tokens

    result = await w.sync(b, at(3420))  # the create is refused as well (still 403)

    assert "a-tokens" not in w.api.secrets
    assert ready(result)[:2] == ("False", "TokensNotStored")  # no stored token to serve
    assert result.requeue.name == "BACKOFF"
    assert result.requeue_after == 20.0  # the claim's retry bound, for when it is back
    w.api.failing_token_writes = 0

    result = await w.sync(b, at(3440))

    assert ready(result)[:2] == ("True", "Connected")
    assert degraded(result) is None
    assert st(result).expires_at == at(3400 + 3600)  # the held tokens'
    assert [(e.type, e.reason) for e in result.events] == [("Normal", "Connected")]
    made = w.api.secrets["a-tokens"]
    assert (made.data["access_token"], made.data["refresh_token"]) == ("a2", "r2")
    assert made.data["issued_at"] == "2026-03-01T12:56:40Z"  # when they were refreshed
    assert [(r.uid, r.controller) for r in made.owners] == [("uid-a", True)]
    assert made.labels == first.labels
    assert made.labels[CONNECTION_LABEL] == "a"
    assert not {CLAIM_ANNOTATION, UNSTORED_ANNOTATION} & set(made.annotations)
    assert w.provider.calls == {"exchange": 1, "refresh": 1, "revoke": 0}
    _no_token_in(result, "a1", "a2", "r1", "r2")

    result = await w.sync(b, at(3500))  # nothing held any more: the stored tokens serve
    assert ready(result)[:2] == ("True", "Connected")
    assert w.provider.calls["refresh"] == 1


async def test_a_reauth_written_by_another_replica_is_dropped_when_the_holder_stores() -> None:
    """A handover: the holder of refreshed tokens cannot write them and the token Secret is
    deleted; another replica converges first, sees the Secret gone while the phase is
    Connected, and writes a ReauthRequired authorization (`reauth`, `failure`). The holder
    then creates the Secret with its tokens: the leftover authorization goes with it, so its
    stale failure appears in no later message, and the connection is Connected."""
    w = world(user_lifetime=3600, rotate=True)
    b = slack_body()
    await w.connect(b)
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(3400))  # both refreshed, the write refused: held
    del w.api.secrets["a-tokens"]
    other = replica(w)
    result = await other.reconcile({**b, "status": w.statuses["a"]}, now=at(3405), child=None)
    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    assert w.api.secrets[authorization_secret_name("a")].data["failure"]
    w.api.failing_token_writes = 0

    result = await w.sync(b, at(3420))  # the holder creates the Secret with its tokens

    assert w.api.secrets["a-tokens"].data["user_access_token"]
    assert authorization_secret_name("a") not in w.api.secrets
    for rec in (w.rec, other):
        w.rec = rec
        result = await w.sync(b, at(3430))
        assert st(result).phase is OAuthPhase.CONNECTED
        assert degraded(result) is None
        assert "deleted" not in ready(result)[2]
        assert authorization_secret_name("a") not in w.api.secrets


async def test_a_user_refresh_failing_after_the_bot_refresh_keeps_the_claim_while_storing() -> None:
    """Both Slack tokens due: the bot token's refresh works (its refresh token rotated), the
    user token's fails (Slack unreachable). The new bot tokens are then written with retries:
    meanwhile the claim stays, so another replica converging during a retry's wait sees it
    and does not refresh with the spent refresh token."""
    w = world(user_lifetime=3600, rotate=True)
    b = slack_body()
    await w.connect(b)
    w.provider.user_refresh_error = ProviderUnreachableError("slack", "refresh", "timeout")
    w.api.failing_token_writes = 2  # the first two writes fail: the retry waits twice
    others: list[Result] = []

    async def another_replica_meanwhile(seconds: float) -> None:
        b2 = {**b, "status": w.statuses["a"]}
        others.append(await replica(w).reconcile(b2, now=at(3401), child=None))

    w.rec._sleep = another_replica_meanwhile

    await w.sync(b, at(3400))

    assert [st(r).phase for r in others] == [OAuthPhase.REFRESHING] * 2
    assert w.provider.calls["refresh"] == 2  # the bot token's and the user token's, once each
    stored = w.api.secrets["a-tokens"]
    assert stored.data["refresh_token"] == w.provider.live_refresh  # the rotated one, stored
    assert CLAIM_ANNOTATION not in stored.annotations  # dropped by the write


async def test_held_tokens_older_than_the_stored_ones_are_dropped_not_written() -> None:
    """Refreshed tokens wait in memory; meanwhile newer tokens are stored (the user
    authorized again, through another replica): the held ones are dropped, never written
    over the newer ones, and the connection goes on with what the Secret holds."""
    w = world()
    b = body()
    await w.connect(b)
    w.api.failing_token_writes = 100
    await w.sync(b, at(3400))  # a2 refreshed at 3400, held
    w.api.failing_token_writes = 0
    stored = w.api.secrets["a-tokens"]
    stored.data |= {
        "access_token": "newer",
        "expires_at": "2026-03-01T13:56:50Z",
        "issued_at": "2026-03-01T12:56:50Z",  # 3410: after the held tokens
    }
    stored.rv += 1

    result = await w.sync(b, at(3420))

    assert w.api.secrets["a-tokens"].data["access_token"] == "newer"
    assert ready(result)[:2] == ("True", "Connected")
    assert "uid-a" not in w.rec._unsaved
    assert w.provider.calls["refresh"] == 1


async def test_a_spent_refresh_token_this_operator_held_does_not_blame_a_stopped_operator() -> None:
    """The unstored mark under this process's own claim: tokens it held and no longer holds
    (here dropped from memory), not tokens lost by an operator that stopped; a refusal of the
    spent refresh token says so."""
    w = world(rotate=True)
    b = body()
    await w.connect(b)
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(3400))  # a2, r2 held; r1 spent; the claim and the mark are ours
    w.api.failing_token_writes = 0
    w.rec._unsaved.clear()  # no longer held (what dropping them leaves)

    result = await w.sync(b, at(3420))

    stalled = get_condition(st(result).conditions, "Stalled")
    assert stalled is not None
    assert "already used by a refresh at 2026-03-01T12:56:40Z" in stalled.message
    assert "were dropped by this operator" in stalled.message
    assert "stopped" not in stalled.message


async def test_token_write_retries_end_in_time_for_a_short_claim_to_be_renewed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS=15 and an apiserver taking 4 s to fail each token
    write (503): a converge holding refreshed tokens renews the claim, then retries the
    write; the next converge (which renews again) comes a third of the claim after it ends.
    The retries stop starting after a third of the claim, so that converge ends early
    enough: renewal to renewal stays under the claim's 15 s (with the fixed 15 s retry
    deadline four writes took 16 s, and the claim lapsed in between)."""
    clock = {"now": 0.0}

    def slow(name: str) -> None:
        clock["now"] += 4.0

    monkeypatch.setattr(tenacity, "time", SimpleNamespace(monotonic=lambda: clock["now"]))
    w = world(rotate=True)
    w.rec = OAuthConnectionReconciler(
        secret_store(w.api),
        {"slack": w.provider, "google": w.provider},  # type: ignore[dict-item]
        settings=OAuthSettings(refresh_claim_seconds=15, http_timeout_seconds=4),
        sleep=w.rec._sleep,
        clock=w.clock,
    )
    b = body()
    await w.connect(b)
    w.api.failing_token_writes = 100  # 503: retried in-process
    await w.sync(b, at(3400))  # refreshed, the write failed: held
    w.api.on_write = slow
    start = clock["now"]

    result = await w.sync(b, at(3405))  # renews the claim, then retries the write

    took = clock["now"] - start
    assert result.requeue_after == 5.0  # a third of the claim
    assert took + result.requeue_after < 15  # the next renewal comes before the claim's end
    assert _claim(w)[0] == w.rec.holder


def _slow_apiserver(
    w: World, monkeypatch: pytest.MonkeyPatch, *, read_seconds: float
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Each read of a Secret takes `read_seconds` on the world's clock; the returned list
    gets (the clock, the claim's end) for each write of a refresh claim."""
    claims: list[tuple[dt.datetime, dt.datetime]] = []
    get, patch = w.api.get, w.api.patch

    async def slow_get(res: Any, name: str, *, namespace: str) -> Secret:
        w.clock.advance(read_seconds)
        return await get(res, name, namespace=namespace)

    async def recording_patch(res: Any, name: str, body: dict[str, Any], **kw: Any) -> Secret:
        claim = body.get("metadata", {}).get("annotations", {}).get(CLAIM_ANNOTATION)
        if claim:
            until = claim.partition(" ")[2].replace("Z", "+00:00")
            claims.append((w.clock.now, dt.datetime.fromisoformat(until)))
        return await patch(res, name, body, **kw)

    monkeypatch.setattr(w.api, "get", slow_get)
    monkeypatch.setattr(w.api, "patch", recording_patch)
    return claims


async def test_a_refresh_claim_lasts_its_length_from_its_write_not_from_the_converges_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Secrets a converge reads before it claims the refresh (the authorization, the
    tokens, the client: 5 s each on a slow apiserver) took part of the claim's 60 s, which
    counted from the converge's start: the claim ended that much before the refresh's
    provider calls (2 x the HTTP timeout) and the write it was sized for."""
    w = world()
    b = body()
    await w.connect(b)
    claims = _slow_apiserver(w, monkeypatch, read_seconds=5)

    await w.sync(b, at(3400))  # due: claimed, refreshed, written (the claim dropped)

    assert w.provider.calls["refresh"] == 1
    [(written, until)] = claims
    assert written > at(3400)  # the reads came first
    assert until == written + dt.timedelta(seconds=60)


async def test_a_renewed_claim_lasts_its_length_from_the_renewal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refreshed tokens whose write is refused renew the claim after the refresh and the
    write's retries: the renewal ends 60 s after it is written. It ended 60 s after the
    converge's start, before the claim it renewed (the provider's answer took 8 s here),
    and so lapsed before the next converge's renewal, a third of the claim later."""
    w = world(rotate=True)
    b = body()
    await w.connect(b)
    claims = _slow_apiserver(w, monkeypatch, read_seconds=1)
    refresh = w.provider.refresh

    async def slow_refresh(client: ClientCredentials, *, refresh_token: str) -> TokenSet:
        w.clock.advance(8)
        return await refresh(client, refresh_token=refresh_token)

    monkeypatch.setattr(w.provider, "refresh", slow_refresh)
    w.api.failing_token_writes, w.api.failing_code = 100, 403

    result = await w.sync(b, at(3400))  # claimed, refreshed (8 s), the write refused: held

    assert result.requeue_after == 20.0
    [(claimed, first), (renewed, until)] = claims
    assert renewed > claimed + dt.timedelta(seconds=8)
    assert until == renewed + dt.timedelta(seconds=60)
    assert _claim(w) == (w.rec.holder, until)
    assert until > first  # a renewal that extends the claim


async def test_held_tokens_never_land_in_a_secret_another_owner_made_under_that_name() -> None:
    """The token Secret is deleted while refreshed tokens are held; before the holder creates
    it again, another OAuthConnection naming the same Secret (stalled SecretNotOwned until
    then) creates it: the holder's create gets 409, and the retry goes through the owner check
    (SecretNotOwned), never a blind patch: B's Secret keeps B's tokens, A is not Connected on
    tokens it did not store, and keeps them held (stalled naming the Secret)."""
    w = world(rotate=True)
    b = body()
    await w.connect(b)  # a1, r1
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(3400))  # refreshed (a2, r2), the write refused: held
    w.api.failing_token_writes = 0
    del w.api.secrets["a-tokens"]
    theirs = {"access_token": "b1", "refresh_token": "rb1"}

    def b_creates(name: str) -> None:
        w.api.secrets[name] = Stored(dict(theirs), [owner("uid-b")])

    w.api.before_create = b_creates

    result = await w.sync(b, at(3420))

    assert w.api.secrets["a-tokens"].data == theirs  # none of A's tokens
    assert [r.uid for r in w.api.secrets["a-tokens"].owners] == ["uid-b"]
    assert ready(result)[:2] == ("False", "TokensNotStored")
    assert "not owned by this OAuthConnection" in ready(result)[2]
    _no_token_in(result, "a2", "r2", "b1", "rb1")

    result = await w.sync(b, at(3440))  # the next converge stalls on B's Secret

    assert st(result).phase is OAuthPhase.ERROR
    assert get_condition(st(result).conditions, "Stalled") is not None
    assert w.api.secrets["a-tokens"].data == theirs
    assert w.rec._unsaved["uid-a"].tokens.access_token.get_secret_value() == "a2"  # held


async def test_a_token_secret_deleted_with_no_tokens_held_asks_to_authorize_again_saying_why() -> (
    None
):
    """Deleted while the operator holds no copy of its tokens, the token Secret cannot be
    made again: the connection goes to ReauthRequired naming the deleted Secret (once as a
    Warning Event, in the Stalled message at every converge until the user authorizes),
    instead of a bare PendingAuthorization that does not say why a Connected connection
    lost its tokens. Nothing is sent to the provider."""
    w = world()
    b = body()
    await w.connect(b)
    del w.api.secrets["a-tokens"]

    result = await w.sync(b, at(60))

    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    stalled = get_condition(st(result).conditions, "Stalled")
    assert stalled is not None
    assert stalled.reason == "AuthorizationFailed"
    assert stalled.message.startswith(
        "the token Secret a-tokens was deleted and the operator holds no copy of its tokens"
    )
    assert "authorize at status.authorizationURL" in stalled.message
    assert st(result).authorization_url
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "ReauthRequired")]
    assert "a-tokens" not in w.api.secrets  # not made up out of nothing
    _no_token_in(result, "a1", "r1")

    result = await w.sync(b, at(120))  # later converges say it still, without an Event

    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    later = get_condition(st(result).conditions, "Stalled")
    assert later is not None
    assert later.message == stalled.message
    assert result.events == ()
    assert w.provider.calls == {"exchange": 1, "refresh": 0, "revoke": 0}

    w.approve()  # the user authorizes again: a new Secret, Connected
    result = await w.sync(b, at(180))
    assert st(result).phase is OAuthPhase.CONNECTED
    assert w.api.secrets["a-tokens"].data["access_token"] == "a2"


async def test_an_exchanged_token_write_over_a_changed_secret_is_a_conflict_retried() -> None:
    """Exchanged tokens patch the token Secret under the resourceVersion read, as the replace
    did: a change in between is a conflict, read again and retried, never written blind."""
    w = world()
    b = body()
    await w.sync(b)
    w.approve()
    w.api.secrets["a-tokens"] = Stored({"access_token": "old"}, [owner("uid-a")])
    versions: list[str | None] = []
    original = w.api.patch

    async def racing(res: Any, name: str, patch: dict[str, Any], **kw: Any) -> Secret:
        if name == "a-tokens" and "stringData" in patch:
            versions.append(patch["metadata"].get("resourceVersion"))
            if len(versions) == 1:  # a reader's annotation lands between read and write
                w.api.secrets[name].rv += 1
        return await original(res, name, patch, **kw)

    w.api.patch = racing  # type: ignore[method-assign]

    result = await w.sync(b)

    assert st(result).phase is OAuthPhase.CONNECTED
    assert versions == ["1", "2"]  # refused at 1 (409), read again, written at 2
    assert w.api.secrets["a-tokens"].data["access_token"] == "a1"
    assert w.sleeps  # the conflict was retried with backoff


async def test_a_stored_name_its_secrets_cannot_carry_stalls_before_any_secret() -> None:
    """Stored before the CRD refused it at creation: a name over 63 characters cannot be the
    xynergy.io/oauth-connection label value of its Secrets, so the connection is Stalled
    InvalidName with the CRD's message, and no Secret is read, written or sent to a
    provider."""
    w = world()
    b = body("n" * 64)
    b["status"] = {"refreshFailures": 2}

    result = await w.sync(b)

    assert st(result).phase is OAuthPhase.ERROR
    stalled = get_condition(st(result).conditions, "Stalled")
    assert stalled is not None
    assert stalled.reason == "InvalidName"
    assert stalled.message.startswith(
        "metadata.name: must be at most 63 characters: it is the value of the "
        "xynergy.io/oauth-connection label on the connection's token and authorization Secrets"
    )
    assert "(64 characters)" in stalled.message
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "InvalidName")]
    assert result.requeue.name == "BACKOFF"
    assert st(result).refresh_failures == 2
    assert set(w.api.secrets) == {"client"}
    assert w.api.patches == []
    assert w.provider.calls == {"exchange": 0, "refresh": 0, "revoke": 0}
    ok = await w.sync(body("n" * 63))
    assert st(ok).phase is OAuthPhase.PENDING_AUTHORIZATION  # the longest admitted works


async def test_deleting_a_connection_revokes_tokens_that_were_never_stored() -> None:
    w = world()
    b = body()
    await w.sync(b)
    w.approve()
    w.api.failing_token_writes = 100
    await w.sync(b)

    gone, event = await w.rec.release(b)

    assert gone
    assert event is not None
    assert event.reason == "Revoked"
    assert w.provider.revoked == ["a1"]


# -- status.refreshFailures -------------------------------------------------------------------


async def test_refresh_failures_count_refresh_requests_that_failed_not_converges() -> None:
    w = world()
    b = body()
    await w.connect(b)
    w.provider.refresh_error = ProviderUnreachableError("google", "refresh", "connect_error")

    for n, t in enumerate((3400, 3402, 3406), start=1):  # each backoff retry sends one
        result = await w.sync(b, at(t))
        assert ready(result)[1] == "RefreshFailed", t
        assert st(result).refresh_failures == n, t
    assert w.provider.calls["refresh"] == 3

    client = w.api.secrets.pop("client")  # nothing can be sent: no converge counts
    for t in (3410, 3470, 3600, 3700):  # Degraded ClientSecretMissing, then Error (expired)
        result = await w.sync(b, at(t))
        assert st(result).refresh_failures == 3, t
    assert ready(result)[:2] == ("False", "ClientSecretMissing")
    assert w.provider.calls["refresh"] == 3

    w.api.secrets["client"] = client
    w.edit_client()
    w.provider.refresh_error = ClientRefusedError("google", "refresh", "invalid_client")
    result = await w.sync(b, at(3701))  # sent and refused: one more
    assert st(result).refresh_failures == 4
    for t in (3702, 4300):  # the refused client on record is not sent again: counts nothing
        result = await w.sync(b, at(t))
        assert ready(result)[1] == "ClientRefused", t
        assert st(result).refresh_failures == 4, t
    assert w.provider.calls["refresh"] == 4

    w.provider.refresh_error = None
    w.edit_client(client_secret="fixed")
    result = await w.sync(b, at(4301))  # a refresh that works: back to 0

    assert st(result).phase is OAuthPhase.CONNECTED
    assert st(result).refresh_failures == 0
    assert w.provider.calls["refresh"] == 5


async def test_a_connection_that_never_refreshes_counts_no_refresh_failure() -> None:
    w = world()
    b = body()
    client = w.api.secrets.pop("client")
    for t in (0, 2, 6):  # stalled ClientSecretMissing: its converges send nothing
        result = await w.sync(b, at(t))
        assert ready(result)[1] == "ClientSecretMissing", t
        assert st(result).refresh_failures == 0, t
    w.api.secrets["client"] = client
    await w.sync(b, at(10))
    w.approve()
    w.provider.exchange_error = ClientRefusedError("google", "code exchange", "invalid_client")
    for t in (11, 60, 600):  # a client refused in the code exchange: no refresh either
        result = await w.sync(b, at(t))
        assert ready(result)[1] == "ClientRefused", t
        assert st(result).refresh_failures == 0, t
    w.restart()
    result = await w.sync(b, at(601))
    assert st(result).refresh_failures == 0


async def test_an_invalid_spec_keeps_the_refresh_failures_on_record() -> None:
    w = world()
    b = body(refreshBeforeExpirySeconds=5)  # under the minimum (30): the model refuses it
    b["status"] = {"refreshFailures": 3}

    result = await w.rec.reconcile(b, now=NOW, child=None)

    assert ready(result)[1] == "InvalidSpec"
    assert st(result).refresh_failures == 3  # no refresh was tried
    assert w.provider.calls["refresh"] == 0


async def test_refresh_failures_end_with_new_tokens_and_a_failed_write_is_not_one() -> None:
    w = world()
    b = body()
    await w.connect(b)
    w.provider.refresh_error = ProviderUnreachableError("google", "refresh", "connect_error")
    await w.sync(b, at(3400))
    w.provider.refresh_error = GrantRefusedError("google", "refresh", "invalid_grant")

    result = await w.sync(b, at(3402))  # refused: a failure, and the user must authorize

    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    assert st(result).refresh_failures == 2
    result = await w.sync(b, at(3403))
    assert st(result).refresh_failures == 2  # waiting for the user counts nothing
    w.provider.refresh_error = None
    w.approve()

    result = await w.sync(b, at(3404))  # new tokens: none of their refreshes failed

    assert st(result).phase is OAuthPhase.CONNECTED
    assert st(result).refresh_failures == 0
    w.api.failing_token_writes = 100

    result = await w.sync(b, at(3404 + 3400))  # the refresh worked; only its write failed

    assert w.provider.calls["refresh"] == 3
    assert st(result).refresh_failures == 0


# -- Slack's user token ----------------------------------------------------------------------


def slack_body() -> dict[str, Any]:
    return body(
        provider="slack",
        scopes=["chat:write"],
        userScopes=["search:read"],
        redirectURL="https://app.example/cb",
    )


async def test_user_scopes_are_asked_for_and_the_user_token_is_kept_beside_the_bot_token() -> None:
    w = world(user_lifetime=3600)

    await w.connect(slack_body())

    assert w.provider.asked_user_scopes[0] == ["search:read"]
    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == "a1"
    assert data["user_access_token"] == "u2"
    assert data["user_refresh_token"] == "ur2"
    assert data["user_expires_at"] == "2026-03-01T13:00:00Z"
    assert data["user_scope"] == "search:read"
    w.provider.user_lifetime = None  # what Slack does without user_scope
    await w.connect(body("g", secret="g-tokens"))  # no user scopes: none asked, no user keys
    assert w.provider.asked_user_scopes[-1] == []
    assert not [k for k in w.api.secrets["g-tokens"].data if k.startswith("user_")]


async def test_a_user_token_due_first_is_refreshed_alone_with_its_own_refresh_token() -> None:
    w = world(user_lifetime=1800)
    b = slack_body()
    result = await w.connect(b)
    assert result.requeue_after == pytest.approx(1800 - 300)  # the user token's refresh

    result = await w.sync(b, at(1500))

    assert w.provider.calls["refresh"] == 1
    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == "a1"  # not due: kept
    assert data["user_access_token"] == "u3"
    assert data["user_refresh_token"] == "ur3"
    assert data["user_expires_at"] == "2026-03-01T12:55:00Z"
    assert data["issued_at"] == "2026-03-01T12:00:00Z"
    assert data["user_issued_at"] == "2026-03-01T12:25:00Z"
    assert st(result).phase is OAuthPhase.CONNECTED
    assert "xynergy.io/refresh-claim" not in w.api.secrets["a-tokens"].annotations
    assert result.requeue_after == pytest.approx(3000 - 1500)  # the new user token's


async def test_both_tokens_due_are_refreshed_and_written_at_once() -> None:
    w = world(user_lifetime=3600, rotate=True)
    b = slack_body()
    await w.connect(b)
    patches = len(w.api.patches)

    await w.sync(b, at(3400))

    assert w.provider.calls["refresh"] == 2
    data = w.api.secrets["a-tokens"].data
    assert (data["access_token"], data["user_access_token"]) == ("a3", "u4")
    assert data["refresh_token"] == w.provider.live_refresh
    assert data["user_refresh_token"] == w.provider.live_user_refresh
    assert w.api.patches[patches:] == ["a-tokens", "a-tokens"]  # the claim, one write


async def test_a_failed_user_token_refresh_keeps_the_new_access_token() -> None:
    w = world(user_lifetime=3600, rotate=True)
    b = slack_body()
    await w.connect(b)
    w.provider.user_refresh_error = ProviderUnreachableError("slack", "refresh", "ratelimited")

    result = await w.sync(b, at(3400))

    assert result.requeue.name == "BACKOFF"
    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == "a3"  # its rotated refresh token is not lost
    assert data["refresh_token"] == w.provider.live_refresh
    assert data["user_access_token"] == "u2"
    w.provider.user_refresh_error = None

    result = await w.sync(b, at(3410))

    assert w.api.secrets["a-tokens"].data["user_access_token"] == "u4"
    assert w.api.secrets["a-tokens"].data["access_token"] == "a3"
    assert st(result).phase is OAuthPhase.CONNECTED


async def test_deleting_revokes_the_user_token_too() -> None:
    w = world(user_lifetime=3600)
    b = slack_body()
    await w.connect(b)

    await w.rec.release(b)

    assert w.provider.calls["revoke"] == 1
    assert w.provider.revoked == ["a1", "u2"]  # handed both (SlackOAuth revokes each)


def user_refused() -> GrantRefusedError:
    return GrantRefusedError("slack", "refresh", "invalid_refresh_token")


async def test_a_refused_user_refresh_token_keeps_the_new_bot_token_connected() -> None:
    w = world(user_lifetime=3600, rotate=True)
    b = slack_body()
    await w.connect(b)
    w.provider.user_refresh_error = user_refused()

    result = await w.sync(b, at(3400))  # both due: the bot's refresh works, the user's is refused

    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == "a3"  # the new bot token, and its rotated refresh token
    assert data["refresh_token"] == w.provider.live_refresh
    assert {k: data[k] for k in data if k.startswith("user_")} == dict.fromkeys(
        (
            "user_access_token",
            "user_refresh_token",
            "user_expires_at",
            "user_scope",
            "user_issued_at",
        ),
        "",
    )
    assert w.provider.revoked == []
    assert st(result).phase is OAuthPhase.CONNECTED
    assert ready(result)[0] == "True"
    assert st(result).expires_at == at(3400 + 3600)
    reason, message = degraded(result) or ("", "")
    assert reason == "UserReauthRequired"
    assert "refused the user token's refresh token (invalid_refresh_token)" in message
    assert "the bot token still works" in message
    assert "authorize at status.authorizationURL" in message
    url = st(result).authorization_url
    assert url is not None
    state = w.api.secrets[authorization_secret_name("a")].data["state"]
    assert state in url
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "UserReauthRequired")]
    assert all("u2" not in e.message and "ur2" not in e.message for e in result.events)

    result = await w.sync(b, at(3410))  # a resync: same state and URL, no second Event

    assert st(result).authorization_url == url
    assert (degraded(result) or ("",))[0] == "UserReauthRequired"
    assert result.events == ()

    w.approve()  # authorizing again gets both tokens: no longer degraded
    result = await w.sync(b, at(3420))

    assert st(result).phase is OAuthPhase.CONNECTED
    assert degraded(result) is None
    assert st(result).authorization_url is None
    assert w.api.secrets["a-tokens"].data["user_access_token"].startswith("u")
    assert authorization_secret_name("a") not in w.api.secrets


async def test_a_refused_user_refresh_token_due_alone_keeps_the_bot_token() -> None:
    w = world(user_lifetime=1800)
    b = slack_body()
    await w.connect(b)
    w.provider.user_refresh_error = user_refused()

    result = await w.sync(b, at(1500))

    assert w.api.secrets["a-tokens"].data["access_token"] == "a1"
    assert w.api.secrets["a-tokens"].data["user_access_token"] == ""
    assert st(result).phase is OAuthPhase.CONNECTED
    assert (degraded(result) or ("",))[0] == "UserReauthRequired"
    assert result.requeue_after == 900.0  # the new state's expiry, before the next refresh


async def test_a_new_authorization_given_while_refreshed_tokens_are_held_is_exchanged() -> None:
    """Slack's user token refused at refresh: UserReauthRequired, a URL. The bot token's
    refresh then works but its write fails (held). The user authorizes at the URL meanwhile:
    when the held tokens are stored, the code is the user's new consent, not the code the
    held tokens came from, so it stays and is exchanged at once by the next converge."""
    w = world(user_lifetime=1800)
    b = slack_body()
    await w.connect(b)  # a1 (3600 s), u2 (1800 s)
    w.provider.user_refresh_error = user_refused()
    result = await w.sync(b, at(1500))
    assert (degraded(result) or ("",))[0] == "UserReauthRequired"
    await w.sync(b, at(3000))  # the resync: a new state for the URL (the first one expired)
    w.api.failing_token_writes = 100
    result = await w.sync(b, at(3400))  # the bot token refreshed, its write refused: held
    assert (degraded(result) or ("",))[0] == "TokensNotStored"
    w.approve(code="code-2")  # the user authorizes at the URL
    w.api.failing_token_writes = 0
    w.provider.user_refresh_error = None

    result = await w.sync(b, at(3410))  # the held tokens stored; the code kept

    assert w.api.secrets["a-tokens"].data["access_token"] == "a3"
    assert w.api.secrets[authorization_secret_name("a")].data["code"] == "code-2"
    assert result.requeue_after == 1.0  # completed next, not at the next refresh
    assert w.provider.calls["exchange"] == 1

    result = await w.sync(b, at(3411))

    assert w.provider.calls["exchange"] == 2  # the user's new authorization, exchanged
    assert st(result).phase is OAuthPhase.CONNECTED
    assert degraded(result) is None
    assert w.api.secrets["a-tokens"].data["user_access_token"].startswith("u")
    assert authorization_secret_name("a") not in w.api.secrets


@pytest.mark.parametrize("cause", ["ClientRefused", "ClientSecretMissing"])
async def test_an_expired_user_token_that_cannot_be_refreshed_leaves_the_bot_token_usable(
    cause: str,
) -> None:
    w = world(user_lifetime=1800)  # the user token expires at 1800, the bot token at 3600
    b = slack_body()
    await w.connect(b)
    if cause == "ClientRefused":
        w.provider.user_refresh_error = ClientRefusedError("slack", "refresh", "invalid_client")
    else:
        del w.api.secrets["client"]
    first = await w.sync(b, at(1500))  # the user token is due: Degraded, both still valid
    assert (degraded(first) or ("",))[0] == cause

    result = await w.sync(b, at(1900))  # the user token has expired, the bot token has not

    assert st(result).phase is OAuthPhase.CONNECTED
    assert ready(result)[0] == "True"
    assert st(result).expires_at == at(3600)
    reason, message = degraded(result) or ("", "")
    assert reason == cause
    assert "the bot token is valid until 2026-03-01T13:00:00Z" in message
    assert "the user token expired at 2026-03-01T12:30:00Z" in message
    assert "Secret client" in message
    assert "shh" not in message
    assert result.requeue_after == 60.0
    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == "a1"  # the bot token is served
    assert data["user_expires_at"] == "2026-03-01T12:30:00Z"  # readers see the user token expired
    assert w.provider.calls["refresh"] == (1 if cause == "ClientRefused" else 0)

    result = await w.sync(b, at(3600))  # the bot token expires too: now it stalls

    assert st(result).phase is OAuthPhase.ERROR
    assert ready(result)[:2] == ("False", cause)


async def test_a_client_refused_when_authorizing_again_keeps_the_valid_tokens_connected() -> None:
    w = world(user_lifetime=3600)
    b = slack_body()
    await w.connect(b)
    w.provider.user_refresh_error = user_refused()
    await w.sync(b, at(3400))  # the user token is lost: Degraded, a URL to authorize again
    w.approve()
    w.provider.exchange_error = ClientRefusedError("slack", "code exchange", "invalid_client")

    result = await w.sync(b, at(3410))  # the new code's exchange: the client is refused

    assert w.provider.calls["exchange"] == 2
    assert st(result).phase is OAuthPhase.CONNECTED  # the bot token is still served
    assert ready(result)[0] == "True"
    assert st(result).expires_at == at(3400 + 3600)
    reason, message = degraded(result) or ("", "")
    assert reason == "ClientRefused"
    assert "valid until 2026-03-01T13:56:40Z" in message
    assert "Secret client (keys client_id and client_secret)" in message
    assert "shh" not in message
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "ClientRefused")]
    assert result.requeue_after == 60.0
    assert w.api.secrets["a-tokens"].data["access_token"] == "a3"
    assert w.api.secrets[authorization_secret_name("a")].data["code"] == "code-1"  # kept

    result = await w.sync(b, at(3470))  # a resync: the same client is not sent again

    assert w.provider.calls["exchange"] == 2
    assert (degraded(result) or ("",))[0] == "ClientRefused"
    assert st(result).phase is OAuthPhase.CONNECTED

    result = await w.sync(b, at(3400 + 3600))  # the bot token expires: now it stalls

    assert st(result).phase is OAuthPhase.ERROR
    assert ready(result)[:2] == ("False", "ClientRefused")

    w.provider.exchange_error = None
    w.edit_client(client_secret="fixed")
    result = await w.sync(b, at(3400 + 3601))  # fixed: the kept code is exchanged

    assert w.provider.calls["exchange"] == 3
    assert st(result).phase is OAuthPhase.CONNECTED
    assert degraded(result) is None


async def test_user_scopes_added_after_authorizing_ask_for_a_user_token() -> None:
    w = world()
    b = body(provider="slack", scopes=["chat:write"], redirectURL="https://app.example/cb")
    result = await w.connect(b)
    assert degraded(result) is None  # no user scopes: nothing missing

    b2 = slack_body()
    result = await w.sync(b2, at(60))

    assert st(result).phase is OAuthPhase.CONNECTED
    assert (degraded(result) or ("",))[0] == "UserReauthRequired"
    assert "no user token for spec.userScopes" in (degraded(result) or ("", ""))[1]
    assert st(result).authorization_url is not None
    assert result.events == ()


async def test_a_failed_authorization_for_the_user_token_leaves_the_bot_token_connected() -> None:
    w = world(user_lifetime=3600)
    b = slack_body()
    await w.connect(b)
    w.provider.user_refresh_error = user_refused()
    first = await w.sync(b, at(3400))
    authz = w.api.secrets[authorization_secret_name("a")]
    authz.data.pop("state")
    authz.data["error"] = "access_denied"  # the user said no at Slack

    result = await w.sync(b, at(3410))

    assert st(result).phase is OAuthPhase.CONNECTED
    assert w.api.secrets["a-tokens"].data["access_token"] == "a3"
    reason, message = degraded(result) or ("", "")
    assert reason == "UserReauthRequired"
    assert message.startswith("the provider answered the authorization with access_denied")
    assert st(result).authorization_url not in (None, st(first).authorization_url)  # a new state
    assert [e.reason for e in result.events] == ["AuthorizationFailed"]


async def test_a_failed_authorization_is_said_when_keeping_the_tokens_fresh_fails() -> None:
    """The user's authorization for the lost user token fails (access_denied) while the bot
    token is due and Slack is out of reach: the converge that takes the error (its used
    state replaced by a new one) fails to refresh. It says the failure all the same (the
    AuthorizationFailed Event, and the message beside the refresh's failure): the error is
    gone from the authorization Secret, so no later converge could (it was lost)."""
    w = world(user_lifetime=3600)
    b = slack_body()
    await w.connect(b)
    w.provider.user_refresh_error = user_refused()
    await w.sync(b, at(3400))  # the bot token refreshed (valid until 7000), the user's lost
    authz = w.api.secrets[authorization_secret_name("a")]
    authz.data.pop("state")
    authz.data["error"] = "access_denied"
    w.provider.refresh_error = ProviderUnreachableError("slack", "refresh", "ratelimited")

    result = await w.sync(b, at(6800))  # the bot token due: its refresh fails

    assert [e.reason for e in result.events] == ["AuthorizationFailed"]
    assert "access_denied" in result.events[0].message
    status, reason, message = ready(result)
    assert (status, reason) == ("False", "RefreshFailed")  # Reconciling, retried
    assert message.endswith("; the provider answered the authorization with access_denied")
    assert "error" not in w.api.secrets[authorization_secret_name("a")].data  # used up
    w.provider.refresh_error = None

    result = await w.sync(b, at(6810))  # the retry: said once, not again

    assert st(result).phase is OAuthPhase.CONNECTED
    assert (degraded(result) or ("",))[0] == "UserReauthRequired"
    assert "access_denied" not in (degraded(result) or ("", ""))[1]
    assert "AuthorizationFailed" not in [e.reason for e in result.events]
    assert st(result).authorization_url


async def test_a_reauth_left_beside_a_bot_token_without_its_user_token_loses_its_failure() -> None:
    """Slack's user token refused while the bot token's refresh works, and the write of the
    new bot token refused: held (without a user token). The token Secret is deleted and
    another replica writes a ReauthRequired (`failure`: the Secret deleted). The holder then
    creates the Secret: the authorization Secret stays (its state is the user token's
    authorization) but its failure goes, so no later Degraded message, and no new state
    made when that one expires, says the tokens were deleted."""
    w = world(user_lifetime=3600, rotate=True)
    b = slack_body()
    await w.connect(b)
    w.provider.user_refresh_error = user_refused()
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(3400))  # the bot token refreshed, the user token dropped: held
    del w.api.secrets["a-tokens"]
    other = replica(w)
    result = await other.reconcile({**b, "status": w.statuses["a"]}, now=at(3405), child=None)
    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    assert "was deleted" in w.api.secrets[authorization_secret_name("a")].data["failure"]
    w.api.failing_token_writes = 0

    result = await w.sync(b, at(3420))  # the holder creates the Secret with its tokens

    assert w.api.secrets["a-tokens"].data["access_token"] == "a3"
    assert w.api.secrets["a-tokens"].data["user_access_token"] == ""
    authz = w.api.secrets[authorization_secret_name("a")].data
    assert authz["failure"] == ""
    assert authz["state"]  # kept for the user token's authorization
    for t in (3430, 3420 + 1000):  # a resync, then one after the state expired (a new one)
        result = await w.sync(b, at(t))
        assert st(result).phase is OAuthPhase.CONNECTED
        reason, message = degraded(result) or ("", "")
        assert reason == "UserReauthRequired"
        assert "deleted" not in message
        assert "deleted" not in ready(result)[2]
        assert st(result).authorization_url
        assert w.api.secrets[authorization_secret_name("a")].data["failure"] == ""


async def test_a_failed_authorization_for_the_user_token_is_said_once_not_kept() -> None:
    """The user's authorization for the lost user token fails (access_denied): that converge
    says so (Degraded, once, and a Warning Event) with a new URL; the failure is not kept in
    the authorization Secret, so later converges, and the new URL made when that one
    expires, do not show it as if the user's next try had failed too."""
    w = world(user_lifetime=3600)
    b = slack_body()
    await w.connect(b)
    w.provider.user_refresh_error = user_refused()
    await w.sync(b, at(3400))
    authz = w.api.secrets[authorization_secret_name("a")]
    authz.data.pop("state")
    authz.data["error"] = "access_denied"

    result = await w.sync(b, at(3410))

    reason, message = degraded(result) or ("", "")
    assert reason == "UserReauthRequired"
    assert message.count("access_denied") == 1
    assert w.api.secrets[authorization_secret_name("a")].data["failure"] == ""
    for t in (3420, 3410 + 1000):  # a resync, then one after the state expired (a new one)
        result = await w.sync(b, at(t))
        reason, message = degraded(result) or ("", "")
        assert reason == "UserReauthRequired"
        assert "access_denied" not in message
        assert st(result).authorization_url
        assert w.api.secrets[authorization_secret_name("a")].data["failure"] == ""


@pytest.mark.parametrize("provider", ["gmail", "slack"])
async def test_held_tokens_dropped_for_newer_ones_are_not_revoked(provider: str) -> None:
    """Held refreshed tokens are dropped for newer stored ones (another replica refreshed,
    or the user authorized again): nothing is sent to revoke them. Google's revoke of an
    access token revokes its refresh token and the grant, which the newer tokens share;
    Slack's `auth.revoke` of a bot token deactivates the bot user the newer token acts as
    (docs/oauthconnection.md): either would kill the tokens the Secret holds."""
    w = world(rotate=provider == "slack")
    b = body(provider=provider) if provider == "gmail" else slack_body()
    await w.connect(b)
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(3400))  # a2 refreshed at 3400, its write refused: held
    assert w.rec._unsaved["uid-a"].tokens.access_token.get_secret_value() == "a2"
    w.api.failing_token_writes = 0
    stored = w.api.secrets["a-tokens"]
    stored.data |= {
        "access_token": "newer",
        "expires_at": "2026-03-01T13:56:50Z",
        "issued_at": "2026-03-01T12:56:50Z",  # 3410: after the held tokens
    }
    stored.rv += 1

    result = await w.sync(b, at(3420))

    assert "uid-a" not in w.rec._unsaved  # dropped
    assert w.api.secrets["a-tokens"].data["access_token"] == "newer"
    assert ready(result)[:2] == ("True", "Connected")
    assert w.provider.calls["revoke"] == 0
    assert w.provider.revoked == []
    await w.rec.release(b)  # deleting the connection revokes the stored (newer) tokens only
    assert w.provider.revoked == ["newer"]


@pytest.mark.parametrize("rotate", [True, False])
async def test_a_paused_replica_holding_tokens_writes_them_on_resuming_unless_newer(
    rotate: bool,
) -> None:
    """Pins the known gap (docs/oauthconnection.md): replica A holds refreshed tokens it could
    not write and is paused by kopf peering, so it converges no more and its claim lapses.
    The active replica B then refreshes with the stored refresh token. Rotated (as Slack
    does): it was spent by A's refresh, refused: B deletes the tokens, ReauthRequired. A,
    resuming, writes its held tokens (the only live ones) and the connection is Connected
    again. Not rotated (as Google): B's refresh works and stores newer tokens; A, resuming,
    drops its held ones unrevoked."""
    w = world(rotate=rotate)
    b = body()
    await w.connect(b)  # a1, r1
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(3400))  # A: a2 (r2 when rotated) held; the claim A's until 3460
    w.api.failing_token_writes = 0
    paused = w.rec
    w.rec = replica(w)  # B acts; A converges nothing while paused

    result = await w.sync(b, at(3461))  # A's claim has lapsed

    assert w.provider.calls["refresh"] == 2  # B sent the stored refresh token (r1)
    if rotate:
        assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
        assert "a-tokens" not in w.api.secrets
        stalled = get_condition(st(result).conditions, "Stalled")
        assert stalled is not None
        assert "paused by kopf peering keeps them" in stalled.message
    else:
        assert st(result).phase is OAuthPhase.CONNECTED
        assert w.api.secrets["a-tokens"].data["access_token"] == "a3"
    w.rec = paused  # A acts again (B paused or gone)

    result = await w.sync(b, at(3470))

    assert st(result).phase is OAuthPhase.CONNECTED
    assert "uid-a" not in w.rec._unsaved
    stored = w.api.secrets["a-tokens"].data
    assert stored["access_token"] == ("a2" if rotate else "a3")
    assert stored["refresh_token"] == w.provider.live_refresh
    assert authorization_secret_name("a") not in w.api.secrets
    assert w.provider.calls == {"exchange": 1, "refresh": 2, "revoke": 0}


async def _paused_replica_resumes_mid_refresh(w: World, b: dict[str, Any]) -> Result:
    """Replica A refreshes at 3400 (rotating: r1 spent) and cannot write the tokens (held);
    paused by peering, its claim lapses. The active replica B claims at 3461 and sends r1;
    while that request is in flight A resumes and writes its held tokens (`_store_unsaved`,
    no claim of its own). B's refresh is then refused: r1 was spent by A."""
    await w.connect(b)  # a1, r1, issued at NOW
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(3400))  # A: a2/r2 held
    w.api.failing_token_writes = 0
    paused = w.rec
    w.rec = replica(w)
    status = dict(w.statuses["a"])

    async def resume() -> None:
        resumed = await paused.reconcile({**b, "status": status}, now=at(3462), child=None)
        assert st(resumed).phase is OAuthPhase.CONNECTED

    w.provider.before_refresh = resume
    return await w.sync(b, at(3461))


async def test_a_refused_refresh_keeps_newer_tokens_another_replica_stored_meanwhile() -> None:
    """On invalid_grant the active replica reads the Secret again: it holds tokens issued
    after the ones whose refresh token it sent (the resumed replica's), so it keeps them
    (Connected) instead of deleting them and asking the user to authorize again."""
    w = world(rotate=True)
    b = body()

    result = await _paused_replica_resumes_mid_refresh(w, b)

    assert w.provider.calls["refresh"] == 2  # A's (r1, answered), B's (r1, refused)
    assert st(result).phase is OAuthPhase.CONNECTED, result.status
    status, reason, message = ready(result)
    assert (status, reason) == ("True", "Connected")
    assert "another operator replica had already used" in message
    stored = w.api.secrets["a-tokens"]
    assert stored.data["access_token"] == "a2"  # A's tokens, kept
    assert stored.data["refresh_token"] == w.provider.live_refresh == "r2"
    assert CLAIM_ANNOTATION not in stored.annotations
    assert authorization_secret_name("a") not in w.api.secrets  # no reauthorization asked
    assert not [e for e in result.events if e.reason == "ReauthRequired"]

    later = await w.sync(b, at(3400 + 3400))  # the kept tokens are refreshed as usual
    assert st(later).phase is OAuthPhase.CONNECTED
    assert w.api.secrets["a-tokens"].data["access_token"] == "a3"


async def test_a_refused_refresh_with_nothing_newer_stored_still_asks_to_authorize_again() -> None:
    """The re-read finds the tokens the refresh used (no other writer): the refusal stands."""
    w = world(rotate=True)
    b = body()
    await w.connect(b)
    w.provider.live_refresh = "r-elsewhere"  # r1 dead at the provider

    result = await w.sync(b, at(3400))

    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    assert "a-tokens" not in w.api.secrets


async def test_a_refused_user_refresh_after_the_bot_refresh_keeps_a_newer_stored_user_token() -> (
    None
):
    """Replica A refreshes the user token at 1500 (ur2 spent, u3/ur3 held: its write fails)
    and is paused. At 3400 the active replica B refreshes the bot token (r1 -> a4/r4); while
    its user refresh (ur2) is in flight A resumes and writes u3/ur3, so ur2 is refused. B
    reads the Secret again and writes its new bot token beside A's newer user token instead
    of emptying the user keys: Connected, not Degraded UserReauthRequired."""
    w = world(user_lifetime=1800, rotate=True)
    b = slack_body()
    await w.connect(b)  # a1/r1, u2/ur2 at NOW
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(1500))  # A: the user token due: u3/ur3, held
    w.api.failing_token_writes = 0
    paused = w.rec
    w.rec = replica(w)
    status = dict(w.statuses["a"])

    async def resume() -> None:
        resumed = await paused.reconcile({**b, "status": status}, now=at(3401), child=None)
        assert w.api.secrets["a-tokens"].data["user_access_token"] == "u3", resumed.status

    async def arm() -> None:  # B's bot refresh goes through; A resumes during its user one
        w.provider.before_refresh = resume

    w.provider.before_refresh = arm

    result = await w.sync(b, at(3400))

    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == "a4"  # B's new bot token, written
    assert data["refresh_token"] == w.provider.live_refresh == "r4"
    assert data["user_access_token"] == "u3"  # A's newer user token, kept
    assert data["user_refresh_token"] == w.provider.live_user_refresh == "ur3"
    assert data["user_issued_at"] == "2026-03-01T12:25:00Z"
    assert CLAIM_ANNOTATION not in w.api.secrets["a-tokens"].annotations
    assert st(result).phase is OAuthPhase.CONNECTED
    assert degraded(result) is None
    assert not [e for e in result.events if e.reason == "UserReauthRequired"]
    assert authorization_secret_name("a") not in w.api.secrets

    later = await w.sync(b, at(3400 + 1500))  # ur3 is live: the user token refreshes as usual
    assert degraded(later) is None
    assert w.api.secrets["a-tokens"].data["user_access_token"] == "u5"


async def test_a_refused_bot_refresh_is_not_undone_by_a_newer_user_token_alone() -> None:
    """The bot's refresh token is refused, and the re-read Secret holds a user token issued
    later than the one read (another replica refreshed only the user token) but the same bot
    token: that refresh token stays dead, so the refusal stands (ReauthRequired). Adopting
    the Secret's tokens, as before, kept a dead bot refresh token Connected, refused again
    at every refresh."""
    w = world(user_lifetime=7200, rotate=True)
    b = slack_body()
    await w.connect(b)  # a1/r1, u2/ur2 at NOW
    w.provider.live_refresh = "r-elsewhere"  # r1 dead at the provider

    async def newer_user_token() -> None:  # another writer, while the refresh is in flight
        w.api.secrets["a-tokens"].data["user_issued_at"] = "2026-03-01T12:30:00Z"
        w.api.secrets["a-tokens"].rv += 1

    w.provider.before_refresh = newer_user_token

    result = await w.sync(b, at(3400))  # the bot token due, the user token not

    assert w.provider.calls["refresh"] == 1
    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED, result.status
    assert "a-tokens" not in w.api.secrets
    assert [e.reason for e in result.events] == ["ReauthRequired"]


def _another_writer_stores_newer_tokens(w: World, issued: str) -> Callable[[str], None]:
    """What a replica paused by peering does when it resumes and writes the tokens it held
    (their refresh spent the refresh token the active replica sends): newer tokens, a new
    resourceVersion; the provider's live refresh token is theirs."""

    def write(name: str) -> None:
        assert name == "a-tokens"
        stored = w.api.secrets[name]
        stored.data |= {
            "access_token": "a-resumed",
            "refresh_token": "r-resumed",
            "expires_at": "2026-03-01T14:00:00Z",
            "issued_at": issued,
        }
        stored.rv += 1
        w.provider.live_refresh = "r-resumed"

    return write


async def test_tokens_stored_between_the_refusals_reread_and_the_delete_are_kept() -> None:
    """The bot refresh token is refused; the re-read Secret holds nothing newer, so the dead
    tokens are to be deleted; between that re-read and the delete another writer stores newer
    tokens. The delete is made under the re-read's resourceVersion: the apiserver refuses it
    (409), the Secret is read again and the newer tokens adopted (Connected). Before, the
    delete sent no precondition and removed them: ReauthRequired, the user sent to authorize
    again while valid tokens had been stored."""
    w = world(rotate=True)
    b = body()
    await w.connect(b)  # a1/r1 issued at NOW
    w.provider.live_refresh = "r-elsewhere"  # r1 dead at the provider
    w.api.before_delete = _another_writer_stores_newer_tokens(w, "2026-03-01T12:57:00Z")

    result = await w.sync(b, at(3400))

    assert w.api.before_delete is None  # the delete was tried between the reads
    assert st(result).phase is OAuthPhase.CONNECTED, result.status
    assert "another operator replica had already used" in ready(result)[2]
    stored = w.api.secrets["a-tokens"]
    assert stored.data["access_token"] == "a-resumed"
    assert CLAIM_ANNOTATION not in stored.annotations
    assert "a-tokens" not in w.api.deleted
    assert authorization_secret_name("a") not in w.api.secrets  # no reauthorization asked
    assert not [e for e in result.events if e.reason == "ReauthRequired"]

    later = await w.sync(b, at(3400 + 7000))  # the adopted refresh token is used next
    assert st(later).phase is OAuthPhase.CONNECTED
    assert w.provider.calls["refresh"] == 2
    assert w.api.secrets["a-tokens"].data["refresh_token"] == w.provider.live_refresh


async def test_an_expired_token_rewritten_before_its_delete_is_read_again_not_deleted() -> None:
    """An expired access token without a refresh token is deleted as dead only as it was
    read: newer tokens stored meanwhile make the delete a conflict (nothing deleted); the
    Secret is read again, its tokens are not dead, and the same converge goes on with them
    (Connected). Before, Reconciling Conflict until the next converge."""
    w = world(refresh_tokens=False)
    b = body()
    await w.connect(b)  # a1, no refresh token, expires at NOW + 3600
    w.api.before_delete = _another_writer_stores_newer_tokens(w, "2026-03-01T13:00:30Z")

    result = await w.sync(b, at(3601))

    assert w.api.before_delete is None
    assert "a-tokens" not in w.api.deleted
    assert w.api.secrets["a-tokens"].data["access_token"] == "a-resumed"
    assert st(result).phase is OAuthPhase.CONNECTED
    assert st(result).expires_at == dt.datetime(2026, 3, 1, 14, 0, tzinfo=dt.UTC)
    assert not [e for e in result.events if e.reason == "ReauthRequired"]
    assert authorization_secret_name("a") not in w.api.secrets


async def test_a_token_secret_made_again_after_the_read_that_found_it_deleted_is_kept() -> None:
    """The converge finds the token Secret of a Connected connection gone (no copy held
    here: ReauthRequired), and right after that read the replica holding the tokens creates
    it again with them. Nothing read decided to delete that Secret: it stays, and the holder's
    write ends the stale ReauthRequired (`_drop_leftover`). Before, the ReauthRequired read
    the Secret again and deleted whatever it found: the held tokens, now stored nowhere."""
    w = world()
    b = body()
    await w.connect(b)
    kept = w.api.secrets.pop("a-tokens")

    def recreated(name: str) -> bool:
        if name != "a-tokens":
            return False
        w.api.secrets[name] = kept
        return True

    w.api.after_get = recreated

    result = await w.sync(b, at(60))

    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED  # what that read found
    assert w.api.secrets["a-tokens"].data["access_token"] == "a1"
    assert "a-tokens" not in w.api.deleted

    result = await w.sync(b, at(62))

    assert st(result).phase is OAuthPhase.CONNECTED
    assert authorization_secret_name("a") not in w.api.secrets


async def test_a_code_the_callback_puts_in_a_leftover_authorization_is_not_deleted() -> None:
    """A ReauthRequired another replica wrote is left over beside stored tokens, and the
    converge drops it; between its read (no code) and the delete the user completes that
    authorization (the callback swaps the state for a code). The delete is made under the
    read's resourceVersion: refused, the Secret and its code stay, and the next converge
    exchanges it. Before, the delete removed the code and the user's consent was lost
    without a word."""
    w = world()
    b = body()
    await w.connect(b)  # a1
    w.api.secrets[authorization_secret_name("a")] = Stored(  # another replica's, left over
        {
            "state": "s-left-over",
            "code_verifier": "v",
            "expires_at": "2026-03-01T12:15:00Z",
            "tenant": "acme",
            "reauth": "true",
            "failure": "the token Secret a-tokens was deleted",
        },
        [owner("uid-a")],
    )

    def callback(name: str) -> None:
        assert name == authorization_secret_name("a")
        w.approve(code="code-2")
        w.api.secrets[name].rv += 1

    w.api.before_delete = callback

    result = await w.sync(b, at(60))

    assert w.api.before_delete is None  # the delete was tried after the callback
    assert st(result).phase is OAuthPhase.CONNECTED
    assert w.api.secrets[authorization_secret_name("a")].data["code"] == "code-2"

    result = await w.sync(b, at(62))  # the code is exchanged

    assert w.provider.calls["exchange"] == 2
    assert w.api.secrets["a-tokens"].data["access_token"] == "a2"
    assert st(result).phase is OAuthPhase.CONNECTED
    assert authorization_secret_name("a") not in w.api.secrets


async def test_a_user_token_stored_before_a_refused_ones_drop_is_kept_not_emptied() -> None:
    """Slack's user refresh token is refused while the bot token is not due; the re-read
    Secret holds no newer token, so the user keys are to be emptied; between that read and
    the write another writer stores a newer user token. The write is made under the
    re-read's resourceVersion: refused (409), the Secret is read again and the newer user
    token kept (Connected, not Degraded). Before, the write was a patch under the claim with
    no resourceVersion and emptied the newer user token's keys."""
    w = world(user_lifetime=1800, rotate=True)
    b = slack_body()
    await w.connect(b)  # a1/r1, u2/ur2 at NOW
    w.provider.live_user_refresh = "ur-elsewhere"  # ur2 dead at the provider

    def another_writer(name: str) -> None:
        w.api.on_write = None
        stored = w.api.secrets[name]
        stored.data |= {
            "user_access_token": "u-resumed",
            "user_refresh_token": "ur-resumed",
            "user_expires_at": "2026-03-01T13:00:00Z",
            "user_issued_at": "2026-03-01T12:24:00Z",
        }
        stored.rv += 1
        w.provider.live_user_refresh = "ur-resumed"

    w.api.on_write = another_writer

    result = await w.sync(b, at(1500))  # the user token due, the bot token not

    assert w.api.on_write is None  # the write was tried after the other writer's
    data = w.api.secrets["a-tokens"].data
    assert data["user_access_token"] == "u-resumed"
    assert data["user_refresh_token"] == "ur-resumed"
    assert data["access_token"] == "a1"
    assert CLAIM_ANNOTATION not in w.api.secrets["a-tokens"].annotations
    assert st(result).phase is OAuthPhase.CONNECTED
    assert degraded(result) is None
    assert not [e for e in result.events if e.reason == "UserReauthRequired"]


def _store_a_newer_user_token(w: World) -> None:
    """Another writer (a replica paused by peering that resumed) stores the user token its
    own refresh got, spending the user refresh token this converge sent."""
    stored = w.api.secrets["a-tokens"]
    stored.data |= {
        "user_access_token": "u-resumed",
        "user_refresh_token": "ur-resumed",
        "user_expires_at": "2026-03-01T13:30:00Z",
        "user_issued_at": "2026-03-01T12:24:00Z",
    }
    stored.rv += 1
    w.provider.live_user_refresh = "ur-resumed"


def _another_writer_before_write(w: World, n: int) -> None:
    """`_store_a_newer_user_token` just before the `n`-th write of the token Secret."""
    seen = 0

    def write(name: str) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            w.api.on_write = None
            _store_a_newer_user_token(w)

    w.api.on_write = write


def _keeps_the_resumed_user_token(w: World, result: Result, *, bot: str) -> None:
    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == bot  # the new bot token, stored
    assert data["refresh_token"] == w.provider.live_refresh
    assert data["user_access_token"] == "u-resumed"  # the other writer's, kept
    assert data["user_refresh_token"] == w.provider.live_user_refresh == "ur-resumed"
    assert data["user_issued_at"] == "2026-03-01T12:24:00Z"
    assert CLAIM_ANNOTATION not in w.api.secrets["a-tokens"].annotations
    assert st(result).phase is OAuthPhase.CONNECTED
    assert degraded(result) is None
    assert not [e for e in result.events if e.reason == "UserReauthRequired"]
    assert authorization_secret_name("a") not in w.api.secrets


@pytest.mark.parametrize("at_write", [1, 2], ids=["before-the-bot-write", "before-the-drop"])
async def test_a_user_token_stored_meanwhile_survives_a_bot_refresh_beside_a_refused_one(
    at_write: int,
) -> None:
    """Both tokens due: the bot's refresh works, the user's is refused and the re-read
    Secret holds nothing newer. Another writer stores a newer user token just before the
    new bot tokens' write (1), or between that write and the drop of the refused user token
    (2). The bot tokens are written without the user keys, then the user token is emptied
    only while the Secret still holds the refused refresh token, under the resourceVersion
    of a read (a conflict reads again): the newer user token is kept. Before, one merge
    patch with no resourceVersion wrote the bot tokens and emptied the user keys, losing
    the only live user refresh token (Degraded UserReauthRequired)."""
    w = world(lifetime=1800, user_lifetime=1800, rotate=True)
    b = slack_body()
    await w.connect(b)  # a1/r1, u2/ur2 at NOW, both expiring at 1800
    w.provider.live_user_refresh = "ur-elsewhere"  # ur2 spent elsewhere
    _another_writer_before_write(w, at_write)

    result = await w.sync(b, at(1500))

    assert w.api.on_write is None  # the other writer came before our write
    assert w.provider.calls["refresh"] == 2  # the bot's (answered), the user's (refused)
    _keeps_the_resumed_user_token(w, result, bot="a3")

    later = await w.sync(b, at(5200))  # ur-resumed is live: refreshed as usual
    assert degraded(later) is None
    assert w.api.secrets["a-tokens"].data["user_access_token"] not in ("", "u-resumed")


async def test_held_bot_tokens_stored_later_keep_a_user_token_stored_meanwhile() -> None:
    """The bot token refreshed, the user's refused, and the write of the new bot tokens
    refused (held in memory). Meanwhile another writer stores a newer user token. When the
    held tokens are written, the refused user token is no longer in the Secret: the newer
    one is kept. Before, the held write emptied the user keys whatever they held."""
    w = world(lifetime=1800, user_lifetime=1800, rotate=True)
    b = slack_body()
    await w.connect(b)
    w.provider.live_user_refresh = "ur-elsewhere"
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    result = await w.sync(b, at(1500))  # a3/r3 held, the user refresh refused
    assert (degraded(result) or ("",))[0] == "TokensNotStored"
    w.api.failing_token_writes = 0
    _store_a_newer_user_token(w)

    result = await w.sync(b, at(1510))  # the held tokens are written

    _keeps_the_resumed_user_token(w, result, bot="a3")


async def test_a_refused_user_token_still_stored_after_the_bot_write_is_emptied() -> None:
    """The bot refresh works, the user's is refused, and nothing else is written: the new
    bot tokens are written, then the refused user token is emptied by a write of its own
    (Degraded UserReauthRequired, the Warning Event once)."""
    w = world(lifetime=1800, user_lifetime=1800, rotate=True)
    b = slack_body()
    await w.connect(b)
    w.provider.live_user_refresh = "ur-elsewhere"
    writes: list[str] = []
    w.api.on_write = writes.append

    result = await w.sync(b, at(1500))

    assert writes == ["a-tokens", "a-tokens"]  # the bot tokens, then the user token's drop
    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == "a3"
    assert data["user_access_token"] == data["user_refresh_token"] == ""
    assert CLAIM_ANNOTATION not in w.api.secrets["a-tokens"].annotations
    assert st(result).phase is OAuthPhase.CONNECTED
    assert (degraded(result) or ("",))[0] == "UserReauthRequired"
    assert [e.reason for e in result.events] == ["UserReauthRequired"]


def _reader_asks_for_a_refresh(w: World, times: int) -> list[str]:
    """A reader annotating `refresh-requested` on the token Secret just before each of the
    next `times` deletes (what services do when they find the token expired)."""
    seen: list[str] = []

    def annotate(name: str) -> None:
        seen.append(name)
        stored = w.api.secrets[name]
        stored.annotations[REFRESH_REQUESTED_ANNOTATION] = f"2026-03-01T13:00:0{len(seen)}Z"
        stored.rv += 1
        if len(seen) < times:
            w.api.before_delete = annotate

    w.api.before_delete = annotate
    return seen


async def test_an_expired_token_annotated_by_a_reader_before_its_delete_is_still_deleted() -> None:
    """An expired access token without a refresh token is dead; between the converge's read
    and the preconditioned delete a reader annotates `refresh-requested` (readers do exactly
    then). The delete is refused (409); the Secret is read again, still holds the expired
    token without a refresh token, and is deleted as read then: ReauthRequired in the same
    converge. Before, one try: Reconciling Conflict until a later converge."""
    w = world(refresh_tokens=False)
    b = body()
    await w.connect(b)  # a1, no refresh token, expires at NOW + 3600
    deletes = _reader_asks_for_a_refresh(w, times=1)

    result = await w.sync(b, at(3601))

    assert deletes == ["a-tokens"]
    assert "a-tokens" not in w.api.secrets
    assert "a-tokens" in w.api.deleted
    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    status, reason, message = ready(result)
    assert (status, reason) == ("False", "AuthorizationFailed")
    assert "expired at 2026-03-01T13:00:00Z and the provider issued no refresh token" in message
    assert [e.reason for e in result.events] == ["ReauthRequired"]


async def test_an_expired_token_changed_at_every_delete_is_a_conflict_after_three_tries() -> None:
    """A reader annotating before each delete: 3 tries (re-read, still dead, delete as read),
    then Reconciling Conflict, nothing deleted; the next converge deletes it."""
    w = world(refresh_tokens=False)
    b = body()
    await w.connect(b)
    deletes = _reader_asks_for_a_refresh(w, times=3)

    result = await w.sync(b, at(3601))

    assert deletes == ["a-tokens"] * 3
    assert "a-tokens" in w.api.secrets
    status, reason, message = ready(result)
    assert (status, reason) == ("False", "Conflict")
    assert "changed at each of 3 tries to delete its expired tokens" in message

    result = await w.sync(b, at(3603))

    assert st(result).phase is OAuthPhase.REAUTH_REQUIRED
    assert "a-tokens" not in w.api.secrets


async def _user_token_held_by_a_paused_replica(
    w: World, b: dict[str, Any]
) -> OAuthConnectionReconciler:
    """Replica B refreshes the user token at 1500 (ur2 spent, u3/ur3 issued), its write is
    refused, so it holds u3/ur3 under its claim; paused by peering, the claim lapses. The
    active replica A refreshes the bot token at 3400 (a4/r4, issued_at 3400: later than
    what B holds) and the user token with ur2 (refused): it stores the bot tokens and empties
    the refused user token (Degraded UserReauthRequired). B is returned, paused."""
    await w.connect(b)  # a1/r1, u2/ur2 at NOW
    w.api.failing_token_writes, w.api.failing_code = 100, 403
    await w.sync(b, at(1500))  # B: the user token due: u3/ur3 held
    assert w.rec._unsaved["uid-a"].tokens.user is not None
    w.api.failing_token_writes = 0
    paused = w.rec
    w.rec = replica(w)  # A acts; B converges nothing while paused

    result = await w.sync(b, at(3400))  # B's claim has lapsed

    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == "a4"
    assert data["user_access_token"] == data["user_refresh_token"] == ""
    assert (degraded(result) or ("",))[0] == "UserReauthRequired"
    return paused


@pytest.mark.parametrize("stored_user", ["emptied", "the-spent-one", "the-spent-one-later"])
async def test_a_newer_user_token_held_by_a_resumed_replica_is_written_not_dropped(
    stored_user: str,
) -> None:
    """Replica B holds a user token it refreshed (u3/ur3) whose write failed; the token
    Secret meanwhile holds bot tokens issued later (replica A's) and either no user token
    (A's refresh with the spent ur2 was refused and emptied it) or still that spent one (A
    stored only bot tokens). B resumes: its bot tokens are older and dropped, but its user
    token is the only live one: only the user_* keys are written (under the read's
    resourceVersion), the bot keys stay A's, and the connection is Connected without
    Degraded. Before, B dropped all it held, U2 included: Degraded UserReauthRequired for
    nothing (or, with ur2 still stored, refused at the next refresh). The spent one is
    known by its refresh token, also when its `user_issued_at` reads later than the held
    token's (written by a replica whose clock runs ahead)."""
    w = world(user_lifetime=1800, rotate=True)
    b = slack_body()
    if stored_user == "emptied":
        paused = await _user_token_held_by_a_paused_replica(w, b)
    else:
        await w.connect(b)
        w.api.failing_token_writes, w.api.failing_code = 100, 403
        await w.sync(b, at(1500))  # u3/ur3 held
        w.api.failing_token_writes = 0
        paused = w.rec
        stored = w.api.secrets["a-tokens"]
        assert stored.data["user_refresh_token"] == "ur2"
        stored.data |= {"access_token": "a-other", "issued_at": "2026-03-01T12:56:40Z"}
        if stored_user == "the-spent-one-later":
            stored.data["user_issued_at"] = "2026-03-01T12:30:00Z"  # 1800: after u3's 1500
        stored.annotations.clear()  # that writer's bot write dropped the claim and the mark
        stored.rv += 1
    w.rec = paused  # B acts again
    w.provider.now = at(3410)
    user_refresh_before = w.provider.calls["refresh"]

    result = await w.sync(b, at(3410))

    assert "uid-a" not in w.rec._unsaved  # the older bot tokens are dropped
    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == ("a4" if stored_user == "emptied" else "a-other")
    assert data["user_refresh_token"] == w.provider.live_user_refresh  # the live one
    assert data["user_access_token"] not in ("", "u2")
    assert st(result).phase is OAuthPhase.CONNECTED
    assert degraded(result) is None
    assert not [e for e in result.events if e.reason == "UserReauthRequired"]
    assert authorization_secret_name("a") not in w.api.secrets  # A's user reauth left over
    assert w.provider.calls["refresh"] - user_refresh_before <= 1  # u3 (expired) refreshed once
    assert w.provider.revoked == []


@pytest.mark.parametrize("meanwhile", ["reader", "newer-user"])
async def test_a_resumed_replicas_user_token_write_is_decided_again_after_a_conflict(
    meanwhile: str,
) -> None:
    """The resumed replica's write of its held user token is made under the read's
    resourceVersion: another write between the read and it (a reader's annotation; a newer
    user token, the user authorizing again) is a conflict, the Secret is read again and the
    decision made anew: after the annotation the held user token is written; a newer user
    token stored meanwhile is kept, not overwritten."""
    w = world(user_lifetime=1800, rotate=True)
    b = slack_body()
    paused = await _user_token_held_by_a_paused_replica(w, b)
    w.rec = paused
    tried: list[str] = []

    def another_writer(name: str) -> None:
        w.api.on_write = None
        tried.append(name)
        stored = w.api.secrets[name]
        if meanwhile == "reader":
            stored.annotations[REFRESH_REQUESTED_ANNOTATION] = "2026-03-01T12:56:55Z"
        else:
            stored.data |= {
                "user_access_token": "u-again",
                "user_refresh_token": "ur-again",
                "user_expires_at": "2026-03-01T14:00:00Z",
                "user_scope": "search:read",
                "user_issued_at": "2026-03-01T12:56:45Z",  # 3405: after B's u3 (1500)
            }
            w.provider.live_user_refresh = "ur-again"
        stored.rv += 1

    w.api.on_write = another_writer

    result = await w.sync(b, at(3410))

    assert tried == ["a-tokens"]  # the held user token's write was tried
    data = w.api.secrets["a-tokens"].data
    assert data["access_token"] == "a4"
    assert data["user_refresh_token"] == w.provider.live_user_refresh
    if meanwhile == "newer-user":
        assert data["user_access_token"] == "u-again"
    assert "uid-a" not in w.rec._unsaved
    assert st(result).phase is OAuthPhase.CONNECTED
    assert degraded(result) is None


async def test_a_refused_user_tokens_drop_after_the_bot_write_leaves_another_replicas_claim() -> (
    None
):
    """Both tokens due: the bot's refresh works, the user's is refused. The new bot tokens'
    write drops this replica's claim; before the refused user token is emptied another
    replica claims the Secret (holding tokens it could not write: its claim and the
    tokens-not-stored mark). The emptying is refused (409), the Secret read again (still the
    refused token) and emptied under the new resourceVersion, leaving that replica's claim
    and mark as they are. Before, it removed them: a third replica could then refresh with
    a refresh token the claim's holder had spent."""
    w = world(lifetime=1800, user_lifetime=1800, rotate=True)
    b = slack_body()
    await w.connect(b)
    w.provider.live_user_refresh = "ur-elsewhere"
    other_claim = "other-replica 2026-03-01T12:26:00Z"
    seen = 0

    def another_replica_claims(name: str) -> None:
        nonlocal seen
        seen += 1
        if seen == 2:  # after the bot tokens' write, before the drop of the user token
            w.api.on_write = None
            stored = w.api.secrets[name]
            stored.annotations |= {
                CLAIM_ANNOTATION: other_claim,
                UNSTORED_ANNOTATION: "2026-03-01T12:24:59Z",
            }
            stored.rv += 1

    w.api.on_write = another_replica_claims

    result = await w.sync(b, at(1500))

    assert w.api.on_write is None
    stored = w.api.secrets["a-tokens"]
    assert stored.data["access_token"] == "a3"
    assert stored.data["user_access_token"] == stored.data["user_refresh_token"] == ""
    assert stored.annotations[CLAIM_ANNOTATION] == other_claim
    assert stored.annotations[UNSTORED_ANNOTATION] == "2026-03-01T12:24:59Z"
    assert (degraded(result) or ("",))[0] == "UserReauthRequired"


async def test_a_refused_user_token_dropped_alone_removes_only_this_replicas_claim() -> None:
    """The user token due alone, its refresh token refused. The emptying drops the claim and
    the tokens-not-stored mark only when the claim read is this replica's: with its own
    claim (the usual case) both go; when another replica claimed meanwhile (this one's
    lapsed during the request) they stay."""
    w = world(user_lifetime=1800, rotate=True)
    b = slack_body()
    await w.connect(b)
    w.provider.live_user_refresh = "ur-elsewhere"
    other_claim = "other-replica 2026-03-01T12:27:00Z"

    async def another_replica_claims() -> None:
        stored = w.api.secrets["a-tokens"]
        stored.annotations |= {
            CLAIM_ANNOTATION: other_claim,
            UNSTORED_ANNOTATION: "2026-03-01T12:25:30Z",
        }
        stored.rv += 1

    w.provider.before_refresh = another_replica_claims

    result = await w.sync(b, at(1500))

    stored = w.api.secrets["a-tokens"]
    assert stored.data["user_access_token"] == ""
    assert stored.annotations[CLAIM_ANNOTATION] == other_claim
    assert stored.annotations[UNSTORED_ANNOTATION] == "2026-03-01T12:25:30Z"
    assert (degraded(result) or ("",))[0] == "UserReauthRequired"

    # this replica's own claim: dropped with the user token, as before
    w2 = world(user_lifetime=1800, rotate=True)
    await w2.connect(b)
    w2.provider.live_user_refresh = "ur-elsewhere"
    await w2.sync(b, at(1500))
    assert CLAIM_ANNOTATION not in w2.api.secrets["a-tokens"].annotations


def _user(access: str, refresh: str, issued: dt.datetime) -> UserToken:
    return UserToken(
        access_token=SecretStr(access),
        refresh_token=SecretStr(refresh),
        expires_at=issued + dt.timedelta(hours=12),
        scopes=("search:read",),
        issued_at=issued,
    )


def _stored_with(user: UserToken | None, issued: dt.datetime) -> SecretData:
    """A token Secret holding another grant's (or another replica's) bot tokens issued at
    `issued`, and `user` (None: no user token)."""
    bot = TokenSet(SecretStr("xoxb-other"), SecretStr("r-other"), None, "bearer", ("s",), user=user)
    return SecretData(token_data(bot, issued=issued), "7", {})


@pytest.mark.parametrize("stored_user", ["none", "another-writers-older-by-its-clock"])
def test_held_user_keys_never_split_a_grant_nor_trust_another_replicas_clock(
    stored_user: str,
) -> None:
    """Which held Slack user token is written alone beside the Secret's newer bot tokens
    (review R of the resumed-replica change). A code exchange's tokens are one grant: its
    user token is never written beside another grant's bot token (the user may have picked
    another workspace), even into a Secret with no user token. A refresh's user token is
    written only where the Secret holds none or still the one that refresh spent: a user
    token another writer stored is kept even when its `user_issued_at`, stamped on that
    replica's clock, reads earlier than ours (its refresh token is not the one we spent, so it
    came later)."""
    spent = _user("u2", "ur2", NOW)
    held_user = _user("u3", "ur3", NOW + dt.timedelta(seconds=1500))
    held_tokens = TokenSet(SecretStr("a1"), SecretStr("r1"), None, "bearer", ("s",), user=held_user)
    later = NOW + dt.timedelta(seconds=3400)
    other = _user("u-other", "ur-other", NOW + dt.timedelta(seconds=600))  # a lagging clock
    stored = _stored_with(None if stored_user == "none" else other, later)
    exchange = _Held(held_tokens, NOW + dt.timedelta(seconds=1500), refreshed=False)
    refresh = _Held(held_tokens, NOW + dt.timedelta(seconds=1500), refreshed=True, spent_user=spent)

    assert _held_user_keys(stored, exchange) is None
    keys = _held_user_keys(stored, refresh)
    if stored_user == "none":
        assert keys is not None
        assert keys["user_refresh_token"] == "ur3"
    else:
        assert keys is None
    # the spent one still stored: the held refresh is the only live user token
    assert _held_user_keys(_stored_with(spent, later), refresh) is not None
