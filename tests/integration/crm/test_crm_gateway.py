"""End to end through the gateway: a Firebase-emulator user creates a contact and a socket.io
client (the real JavaScript one) of the same tenant receives the crm-changes event; a client
of another tenant does not."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis
from emulators import FirebaseEmulator
from gateway.conftest import GatewayFactory
from gateway.test_gateway_stream import JsClient

from services.common.events import publish_event

from .conftest import RunningCrm


async def test_contact_created_through_the_gateway_reaches_the_tenants_stream(
    crm: RunningCrm,
    gateway_factory: GatewayFactory,
    firebase_emulator: FirebaseEmulator,
    redis_client: aioredis.Redis,
) -> None:
    tenant_a = "gw-a-" + uuid.uuid4().hex[:8]
    tenant_b = "gw-b-" + uuid.uuid4().hex[:8]
    routes = {"services": [{"name": "crm", "url": crm.url, "routes": [{"prefix": "/api/v2/crm"}]}]}
    token_a = await firebase_emulator.user_token(
        f"{tenant_a}@example.com", {"tenant_id": tenant_a, "roles": ["editor"]}
    )
    token_b = await firebase_emulator.user_token(
        f"{tenant_b}@example.com", {"tenant_id": tenant_b, "roles": ["admin"]}
    )
    async with gateway_factory(routes) as gw:
        a = await JsClient.start(gw.url, token_a)
        b = await JsClient.start(gw.url, token_b)
        try:
            for client in (a, b):
                await client.next_of("connect")
                await client.next_of("subscribed")

            auth_a = {"Authorization": f"Bearer {token_a}"}
            r = await gw.http.post(
                "/api/v2/crm/contacts",
                json={"name": "Ada Lovelace", "email": "ada@example.com"},
                headers={**auth_a, "Idempotency-Key": "gw-1"},
            )
            assert r.status_code == 201, r.text
            contact = r.json()
            assert contact["created_by"]  # the Firebase uid, forwarded as the signed identity

            # Every message from Redis reaches the sockets in order: after a final marker,
            # a client has seen everything published before it.
            for tenant in (tenant_a, tenant_b):
                await publish_event(
                    redis_client, tenant_id=tenant, topic="crm-changes", payload={"final": True}
                )
            got_a = await a.events_until_final()
            got_b = await b.events_until_final()
        finally:
            await a.close()
            await b.close()

        assert [(e["event"], e["data"].get("action")) for e in got_a[:-1]] == [
            ("crm-changes", "created")
        ]
        event = got_a[0]["data"]
        assert {k: event[k] for k in ("tenant", "kind", "id")} == {
            "tenant": tenant_a,
            "kind": "contact",
            "id": contact["id"],
        }
        assert got_b[:-1] == []

        # The rest of the contract through the gateway: ETag and If-Match, the xynergyos
        # mirror, and the other tenant's 404.
        path = f"/api/xynergyos/v2/crm/contacts/{contact['id']}"
        got = await gw.http.get(path, headers=auth_a)
        assert got.status_code == 200
        assert got.headers["etag"] == '"1"'
        stale = await gw.http.patch(
            path, json={"title": "CTO"}, headers={**auth_a, "If-Match": '"0"'}
        )
        assert stale.status_code == 412
        ok = await gw.http.patch(path, json={"title": "CTO"}, headers={**auth_a, "If-Match": '"1"'})
        assert ok.status_code == 200
        assert ok.headers["etag"] == '"2"'
        other = await gw.http.get(path, headers={"Authorization": f"Bearer {token_b}"})
        assert other.status_code == 404
        assert (await gw.http.get(path)).status_code == 401
