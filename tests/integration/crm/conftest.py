"""Real parts for the CRM's integration tests.

- the gcloud Firestore emulator, one per session (tests/integration/emulators.py: ready once
  a first write has committed), stopped with its process group after the session;
- redis-server, the Firebase Auth emulator, ``serve()``, ``wait_for()`` and the gateway
  factory come from the gateway's fixtures (tests/integration/gateway/conftest.py);
- the CRM app itself, served by uvicorn against both, once per session.

Tests isolate themselves by tenant: each one makes fresh tenant ids, so they share one
emulator without resetting it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from emulators import FirestoreEmulator
from gateway.conftest import (  # noqa: F401 - fixtures re-exported for this package
    FIREBASE_PROJECT,
    INTERNAL_KEY,
    RedisServer,
    free_port,
    gateway_factory,
    redis_client,
    redis_server,
    serve,
    upstream,
    wait_for,
)

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.crm.app import create_app
from services.crm.settings import CrmSettings

INTERNAL = InternalIdentitySettings(signing_key=INTERNAL_KEY)
_SIGNER = InternalIdentitySigner(INTERNAL)


@dataclass
class RunningCrm:
    url: str
    app: Any


@pytest.fixture(scope="session")
async def crm(
    firestore_emulator: FirestoreEmulator,
    redis_server: RedisServer,  # noqa: F811 - the gateway's fixture, imported above
) -> AsyncIterator[RunningCrm]:
    settings = CrmSettings(
        project_id=firestore_emulator.project,
        redis_url=redis_server.url,
        log_level="WARNING",
        access_log=False,
    )
    app = create_app(settings, internal_settings=INTERNAL)
    async with serve(app) as url:
        yield RunningCrm(url=url, app=app)


def identity_headers(
    *, tenant: str, user: str = "u-1", roles: tuple[str, ...] = ("editor",)
) -> dict[str, str]:
    """The header the gateway would add for this caller."""
    token = _SIGNER.sign(Identity(user_id=user, tenant_id=tenant, roles=roles, source="jwt"))
    return {IDENTITY_HEADER: token}


ClientFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def client_for(crm: RunningCrm) -> AsyncIterator[ClientFactory]:
    """``client_for(tenant, roles=...)``: an httpx client calling the CRM as that caller."""
    clients: list[httpx.AsyncClient] = []

    def make(
        tenant: str, *, user: str = "u-1", roles: tuple[str, ...] = ("editor",)
    ) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=crm.url + "/api/v2/crm",
            headers=identity_headers(tenant=tenant, user=user, roles=roles),
            timeout=30,
        )
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
def tenant() -> str:
    return "t-" + uuid.uuid4().hex[:12]
