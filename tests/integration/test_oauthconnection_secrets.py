"""SecretStore against the real apiserver (no operator running): the preconditions its writes
rely on are the apiserver's, not a fake's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig

from apis.v1alpha1.oauthconnection import OAuthConnection
from controllers.core import StalledError, TransientError
from controllers.oauthconnection.secrets import SecretStore

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
