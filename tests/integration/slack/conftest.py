"""Real parts for the Slack service's integration tests (the Gmail ones use them too).

- redis-server, the Firebase Auth emulator, ``serve()``, ``wait_for()`` and gateways come
  from the gateway's fixtures (tests/integration/gateway/conftest.py);
- the kube-apiserver of the session (tests/integration/conftest.py) with the CRDs: each test
  makes OAuthConnections in its own namespace and writes their status and token Secret itself,
  standing in for the OAuthConnection controller; the services read them through the real
  :class:`TokenReader` on a lightkube client;
- the fake Slack Web API (tests/fakes/slack) in a thread.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakes.slack import FakeSlack
from gateway.conftest import (  # noqa: F401 - fixtures re-exported for this package
    INTERNAL_KEY,
    gateway,
    gateway_factory,
    redis_client,
    redis_server,
    upstream,
)
from lightkube import AsyncClient, KubeConfig

from apis.v1alpha1.common import GROUP, VERSION

PLURAL = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/oauthconnections"
SIGNING_SECRET = "slack-signing-secret-" + "s" * 20


@dataclass
class Connections:
    """OAuthConnections of one namespace, with the status and Secret the operator would
    write."""

    kube: Any  # tests/integration/conftest.py's Kube
    namespace: str
    uids: dict[str, str] = field(default_factory=dict)
    """Connection name -> its UID (the token Secret's controller ownerReference)."""

    def create(self, name: str, *, tenant: str, provider: str) -> None:
        scopes = (
            ["channels:read", "channels:history", "chat:write", "users:read"]
            if provider == "slack"
            else ["https://www.googleapis.com/auth/gmail.modify"]
        )
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "OAuthConnection",
            "metadata": {"name": name},
            "spec": {
                "provider": provider,
                "tenant": tenant,
                "scopes": scopes,
                "clientSecretRef": {"name": f"{name}-client"},
                "redirectURL": "http://127.0.0.1/api/v2/oauth/callback",
                "tokenSecretName": f"{name}-tokens",
            },
        }
        r = self.kube.create(PLURAL.format(ns=self.namespace), body)
        assert r.status_code == 201, r.text
        self.uids[name] = r.json()["metadata"]["uid"]

    def status(self, name: str, **status: Any) -> None:
        r = self.kube.http.patch(
            f"{PLURAL.format(ns=self.namespace)}/{name}/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text

    def tokens(self, name: str, access_token: str) -> None:
        data = {"access_token": access_token, "token_type": "bearer", "scope": ""}
        owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "OAuthConnection", "name": name,
                 "uid": self.uids[name], "controller": True}  # fmt: skip
        body = {
            "metadata": {"name": f"{name}-tokens", "ownerReferences": [owner]},
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        r = self.kube.create(f"/api/v1/namespaces/{self.namespace}/secrets", body)
        assert r.status_code == 201, r.text

    def connect(self, name: str, *, tenant: str, provider: str, token: str, **account: str) -> None:
        self.create(name, tenant=tenant, provider=provider)
        self.tokens(name, token)
        self.status(name, phase="Connected", account=account or None)


@pytest.fixture
def connections(kube: Any, namespace: str, crds_installed: list[str]) -> Connections:
    return Connections(kube, namespace)


@pytest.fixture
async def lightkube_client(cluster: Path) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(config=KubeConfig.from_file(cluster))
    yield client
    await client.close()


@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
