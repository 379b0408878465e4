"""SecretStore against the real apiserver (no operator running): the preconditions its writes
and deletes rely on are the apiserver's, not a fake's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fakes.oauth import FakeOAuth
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig

from apis.v1alpha1.oauthconnection import (
    USER_TOKEN_KEYS,
    OAuthConnection,
    OAuthConnectionStatus,
    OAuthPhase,
)
from controllers.core import StalledError, TransientError
from controllers.oauthconnection.reconciler import OAuthConnectionReconciler
from controllers.oauthconnection.secrets import CLAIM_ANNOTATION as CLAIM
from controllers.oauthconnection.secrets import UNSTORED_ANNOTATION as UNSTORED
from controllers.oauthconnection.secrets import SecretStore
from controllers.oauthconnection.settings import OAuthSettings
from controllers.providers.oauth.google import GoogleOAuth
from controllers.providers.oauth.slack import SlackOAuth

pytestmark = pytest.mark.timeout(120)

API = "/apis/xynergy.io/v1alpha1"


class _Racing:
    """The operator's AsyncClient, running `before_patch` once just before the next patch:
    what another writer does between the store's read and its write."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self.before_patch: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def patch(self, *args: Any, **kwargs: Any) -> Any:
        hook, self.before_patch = self.before_patch, None
        if hook is not None:
            await hook()
        return await self._client.patch(*args, **kwargs)


def _connection(kube: Kube, ns: str) -> OAuthConnection:
    body = {
        "apiVersion": "xynergy.io/v1alpha1", "kind": "OAuthConnection", "metadata": {"name": "a"},
        "spec": {"provider": "gmail", "clientSecretRef": {"name": "a-client"},
                 "scopes": ["email"], "redirectURL": "https://app.example/cb",
                 "tenant": "acme", "tokenSecretName": "shared-tokens"},
    }  # fmt: skip
    resp = kube.create(f"{API}/namespaces/{ns}/oauthconnections", body)
    assert resp.status_code == 201, resp.text
    return OAuthConnection.model_validate(resp.json())


def _secret(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    resp = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_refreshed_tokens_never_land_on_a_secret_made_again_under_the_same_name(
    kube: Kube, namespace: str, crds_installed: list[str], cluster: Path
) -> None:
    """The token Secret read is replaced (deleted, then made again by someone else under the
    same name) between the store's read and its patch: the patch carries the read Secret's
    UID, the apiserver refuses it (422 on metadata.uid), the store says so as a conflict to retry, and the
    foreign Secret is untouched; the retry's read stalls SecretNotOwned."""
    ns = namespace
    conn = _connection(kube, ns)
    racing = _Racing(AsyncClient(config=KubeConfig.from_file(str(cluster))))
    store = SecretStore(racing)  # type: ignore[arg-type]
    await store.write(conn, role="tokens", data={"access_token": "a1"}, previous=None)
    path = f"/api/v1/namespaces/{ns}/secrets"

    async def replace_it() -> None:
        assert kube.delete(f"{path}/shared-tokens").status_code == 200
        foreign = {"metadata": {"name": "shared-tokens"}, "stringData": {"mine": "yes"}}
        assert kube.create(path, foreign).status_code == 201

    racing.before_patch = replace_it

    with pytest.raises(TransientError, match="deleted or replaced meanwhile"):
        await store.store_refreshed(conn, {"access_token": "a2"})

    foreign = _secret(kube, ns, "shared-tokens")
    assert set(foreign.get("data") or {}) == {"mine"}  # none of our tokens
    assert not foreign["metadata"].get("ownerReferences")
    with pytest.raises(StalledError) as stalled:
        await store.store_refreshed(conn, {"access_token": "a2"})
    assert stalled.value.reason == "SecretNotOwned"
    assert set(_secret(kube, ns, "shared-tokens").get("data") or {}) == {"mine"}

    # the Secret read, still there: the patch lands
    assert kube.delete(f"{path}/shared-tokens").status_code == 200
    await store.write(conn, role="tokens", data={"access_token": "a1"}, previous=None)
    await store.store_refreshed(conn, {"access_token": "a2"})
    tokens = await store.tokens(conn)
    assert tokens is not None
    assert tokens.get("access_token") == "a2"


def _patch_secret(kube: Kube, ns: str, name: str, string_data: dict[str, str]) -> None:
    resp = kube.http.patch(
        f"/api/v1/namespaces/{ns}/secrets/{name}",
        json={"stringData": string_data},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text


def _before_deleting(client: AsyncClient, name: str, hook: Callable[[], None]) -> list[str]:
    """Run `hook` once, just before the client's first DELETE of Secret `name` leaves for
    the apiserver (whichever call sends it): another writer between the read that decided
    the delete and the delete. The DELETE bodies sent are returned as they go."""
    generic = client._client
    send = generic.send
    bodies: list[str] = []

    async def racing_send(request: Any, **kwargs: Any) -> Any:
        nonlocal hook_pending
        if request.method == "DELETE" and request.url.path.endswith(f"/secrets/{name}"):
            bodies.append(request.content.decode())
            if hook_pending:
                hook_pending = False
                hook()
        return await send(request, **kwargs)

    hook_pending = True
    generic.send = racing_send  # type: ignore[method-assign]
    return bodies


async def test_tokens_stored_between_a_refused_refresh_and_the_delete_survive(
    kube: Kube, namespace: str, crds_installed: list[str], cluster: Path
) -> None:
    """The fake Google refuses the stored refresh token (invalid_grant); the Secret read again
    holds nothing newer, so the dead tokens are to be deleted; just before the DELETE reaches
    the apiserver another writer stores newer tokens. The DELETE carries DeleteOptions
    preconditions (the read's UID and resourceVersion): the real apiserver refuses it (409),
    the reconciler reads the Secret again and keeps the newer tokens, Connected. Before, the
    DELETE had no precondition and removed them (ReauthRequired)."""
    ns = namespace
    client_secret = {"metadata": {"name": "a-client"},
                     "stringData": {"client_id": "fake-client-id",
                                    "client_secret": "fake-client-secret"}}  # fmt: skip
    assert kube.create(f"/api/v1/namespaces/{ns}/secrets", client_secret).status_code == 201
    conn = _connection(kube, ns)
    client = AsyncClient(config=KubeConfig.from_file(str(cluster)))
    store = SecretStore(client)
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    stamp = issued.isoformat().replace("+00:00", "Z")
    await store.write(
        conn,
        role="tokens",
        previous=None,
        data={"access_token": "ya29.old", "refresh_token": "1//spent-elsewhere",
              "expires_at": stamp, "issued_at": stamp, "token_type": "Bearer",
              "scope": "email"},
    )  # fmt: skip
    newer = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat()
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()

    def another_writer() -> None:  # a resumed replica writing the tokens it held
        _patch_secret(kube, ns, "shared-tokens", {
            "access_token": "ya29.resumed", "refresh_token": "1//resumed",
            "expires_at": expires.replace("+00:00", "Z"),
            "issued_at": newer.replace("+00:00", "Z"),
        })  # fmt: skip

    bodies = _before_deleting(client, "shared-tokens", another_writer)
    with FakeOAuth(expires_in=3600) as fake:
        settings = OAuthSettings(
            **{f"{p}_{step}_url": url for p in ("slack", "google")
               for step, url in fake.endpoints(p).items()}  # type: ignore[arg-type]
        )  # fmt: skip
        providers = {
            "slack": SlackOAuth(settings.endpoints("slack")),
            "google": GoogleOAuth(settings.endpoints("google")),
        }
        reconciler = OAuthConnectionReconciler(store, providers, settings=settings)
        body = kube.get(f"{API}/namespaces/{ns}/oauthconnections/a").json()

        result = await reconciler.reconcile(body, now=dt.datetime.now(dt.UTC), child=None)

        assert fake.google.calls["refresh"] == 1  # refused: 1//spent-elsewhere is unknown
    assert isinstance(result.status, OAuthConnectionStatus)
    assert result.status.phase is OAuthPhase.CONNECTED, result.status
    assert bodies  # the delete was sent, conditionally:
    assert "preconditions" in bodies[0]
    assert not [e for e in result.events if e.reason == "ReauthRequired"]
    stored = _secret(kube, ns, "shared-tokens")
    tokens = await store.tokens(conn)
    assert tokens is not None
    assert tokens.get("access_token") == "ya29.resumed"
    assert stored["metadata"]["ownerReferences"][0]["uid"] == conn.metadata.uid
    authorization = kube.get(f"/api/v1/namespaces/{ns}/secrets/a-oauth-authorization")
    assert authorization.status_code == 404  # the user is not asked to authorize again


async def test_a_preconditioned_delete_removes_only_the_secret_as_it_was_read(
    kube: Kube, namespace: str, crds_installed: list[str], cluster: Path
) -> None:
    """`delete_unchanged` against the real apiserver: a Secret changed since the read, or
    made again under its name, is refused (409: False, kept); as read, it is deleted; gone
    already, nothing to do."""
    ns = namespace
    conn = _connection(kube, ns)
    store = SecretStore(AsyncClient(config=KubeConfig.from_file(str(cluster))))
    await store.write(conn, role="tokens", data={"access_token": "a1"}, previous=None)
    read = await store.tokens(conn)
    assert read is not None
    _patch_secret(kube, ns, "shared-tokens", {"access_token": "a2"})

    assert await store.delete_unchanged(conn, "shared-tokens", read) is False
    assert set(_secret(kube, ns, "shared-tokens")["data"]) == {"access_token"}

    again = await store.tokens(conn)
    path = f"/api/v1/namespaces/{ns}/secrets"
    assert kube.delete(f"{path}/shared-tokens").status_code == 200
    await store.write(conn, role="tokens", data={"access_token": "a3"}, previous=None)
    assert await store.delete_unchanged(conn, "shared-tokens", again) is False  # another UID
    assert (await store.tokens(conn) or again).get("access_token") == "a3"

    current = await store.tokens(conn)
    assert await store.delete_unchanged(conn, "shared-tokens", current) is True
    assert kube.get(f"{path}/shared-tokens").status_code == 404
    assert await store.delete_unchanged(conn, "shared-tokens", current) is True  # gone: 404


async def test_a_refused_user_token_is_emptied_only_in_the_secret_as_it_was_read(
    kube: Kube, namespace: str, crds_installed: list[str], cluster: Path
) -> None:
    """`drop_user_token` against the real apiserver: a merge patch under the read's UID and
    resourceVersion; a user token written since is refused (409: False, kept); as read, the
    user keys are emptied, the bot token kept, and the claim and the tokens-not-stored mark
    stay when the claim is another replica's (or no holder is given), go when it is ours."""
    ns = namespace
    conn = _connection(kube, ns)
    store = SecretStore(AsyncClient(config=KubeConfig.from_file(str(cluster))))
    data = {"access_token": "xoxe.xoxb-1", "user_access_token": "xoxe.xoxp-1"}
    await store.write(conn, role="tokens", data=data, previous=None)
    read = await store.tokens(conn)
    assert read is not None
    _patch_secret(kube, ns, "shared-tokens", {"user_access_token": "xoxe.xoxp-newer"})

    assert await store.drop_user_token(conn, read, holder="me") is False
    again = await store.tokens(conn)
    assert again is not None
    assert again.get("user_access_token") == "xoxe.xoxp-newer"
    _annotate(kube, ns, "shared-tokens", {CLAIM: "other 2099-01-01T00:00:00Z", UNSTORED: "t1"})
    again = await store.tokens(conn)
    assert again is not None

    assert await store.drop_user_token(conn, again, holder="me") is True
    after = await store.tokens(conn)
    assert after is not None
    assert after.get("user_access_token") == ""
    assert after.get("access_token") == "xoxe.xoxb-1"
    assert after.annotations[CLAIM] == "other 2099-01-01T00:00:00Z"  # another's: kept
    assert after.annotations[UNSTORED] == "t1"

    _annotate(kube, ns, "shared-tokens", {CLAIM: "me 2099-01-01T00:00:00Z"})
    ours = await store.tokens(conn)
    assert ours is not None
    assert await store.drop_user_token(conn, ours, holder=None) is True  # no holder: kept
    ours = await store.tokens(conn)
    assert ours is not None
    assert ours.annotations[CLAIM] == "me 2099-01-01T00:00:00Z"
    assert await store.drop_user_token(conn, ours, holder="me") is True
    gone = await store.tokens(conn)
    assert gone is not None
    assert CLAIM not in gone.annotations
    assert UNSTORED not in gone.annotations


async def test_a_held_user_token_is_written_alone_into_the_secret_as_it_was_read(
    kube: Kube, namespace: str, crds_installed: list[str], cluster: Path
) -> None:
    """`store_user_token` against the real apiserver: only the user_* keys, a merge patch
    under the read's UID and resourceVersion; a write since is refused (409: None, nothing
    written); as read, the user keys land, the bot keys stay as they are."""
    ns = namespace
    conn = _connection(kube, ns)
    store = SecretStore(AsyncClient(config=KubeConfig.from_file(str(cluster))))
    bot = {"access_token": "xoxe.xoxb-4", "issued_at": "2026-03-01T12:56:40Z"}
    await store.write(conn, role="tokens", data=bot | dict.fromkeys(USER_TOKEN_KEYS, ""),
                      previous=None)  # fmt: skip
    read = await store.tokens(conn)
    assert read is not None
    user = {
        "user_access_token": "xoxe.xoxp-3",
        "user_refresh_token": "xoxe-1-ur3",
        "user_expires_at": "2026-03-01T12:55:00Z",
        "user_scope": "search:read",
        "user_issued_at": "2026-03-01T12:25:00Z",
    }
    _annotate(kube, ns, "shared-tokens", {"xynergy.io/refresh-requested": "now"})

    assert await store.store_user_token(conn, read, user, holder="me") is None
    assert _secret(kube, ns, "shared-tokens")["data"]["user_access_token"] == ""

    again = await store.tokens(conn)
    assert again is not None
    written = await store.store_user_token(conn, again, user, holder="me")
    assert written is not None
    after = await store.tokens(conn)
    assert after is not None
    assert after.resource_version == written.resource_version
    assert {k: after.get(k) for k in USER_TOKEN_KEYS} == user
    assert {k: after.get(k) for k in bot} == bot
    assert after.annotations["xynergy.io/refresh-requested"] == "now"


def _annotate(kube: Kube, ns: str, name: str, annotations: dict[str, str]) -> None:
    resp = kube.http.patch(
        f"/api/v1/namespaces/{ns}/secrets/{name}",
        json={"metadata": {"annotations": annotations}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text
