"""The gateway's response cache on real CRM traffic: the CRM marks its reads under /contacts
``private, max-age``, the gateway keeps them per user, a write through the gateway makes them
unreachable, and ``X-Cache`` says which happened. Real CRM (Firestore emulator), gateway and
redis-server."""

from __future__ import annotations

from typing import Any

from gateway.conftest import GatewayFactory, make_jwt

from .conftest import RunningCrm


def _auth(tenant: str, user: str, roles: tuple[str, ...] = ("editor",)) -> dict[str, str]:
    token = make_jwt(user_id=user, tenant_id=tenant, roles=list(roles))
    return {"Authorization": f"Bearer {token}"}


async def test_crm_reads_are_cached_per_user_and_writes_invalidate(
    crm: RunningCrm, gateway_factory: GatewayFactory, tenant: str
) -> None:
    routes = {"services": [{"name": "crm", "url": crm.url, "routes": [{"prefix": "/api/v2/crm"}]}]}
    ada, bob = _auth(tenant, "ada"), _auth(tenant, "bob", ("viewer",))
    async with gateway_factory(routes) as gw:
        made = await gw.http.post("/api/v2/crm/contacts", json={"name": "Ada"}, headers=ada)
        assert made.status_code == 201, made.text
        path = f"/api/v2/crm/contacts/{made.json()['id']}"

        first = await gw.http.get(path, headers=ada)
        assert first.status_code == 200
        assert first.headers["cache-control"] == "private, max-age=30"
        assert first.headers["x-cache"] == "MISS"
        again = await gw.http.get(path, headers=ada)
        assert again.headers["x-cache"] == "HIT"
        assert again.json() == first.json()
        assert again.headers["etag"] == first.headers["etag"]
        # private: another user of the same tenant gets their own entry
        assert (await gw.http.get(path, headers=bob)).headers["x-cache"] == "MISS"
        assert (await gw.http.get(path, headers=bob)).headers["x-cache"] == "HIT"

        listed = await gw.http.get("/api/v2/crm/contacts", headers=ada)
        assert listed.headers["x-cache"] == "MISS"
        assert (await gw.http.get("/api/v2/crm/contacts", headers=ada)).headers["x-cache"] == "HIT"

        patched = await gw.http.patch(
            path, json={"company": "Analytical"}, headers={**ada, "If-Match": first.headers["etag"]}
        )
        assert patched.status_code == 200, patched.text
        # the write made every entry of the tenant under /contacts unreachable, for both users
        for who in (ada, bob):
            after = await gw.http.get(path, headers=who)
            assert after.headers["x-cache"] == "MISS"
            assert after.json()["company"] == "Analytical"
        after_list = await gw.http.get("/api/v2/crm/contacts", headers=ada)
        assert after_list.headers["x-cache"] == "MISS"
        assert [c["company"] for c in after_list.json()["items"]] == ["Analytical"]


async def test_aggregate_reads_are_not_stored(
    crm: RunningCrm, gateway_factory: GatewayFactory, tenant: str, client_for: Any
) -> None:
    routes = {"services": [{"name": "crm", "url": crm.url, "routes": [{"prefix": "/api/v2/crm"}]}]}
    ada = _auth(tenant, "ada")
    async with gateway_factory(routes) as gw:
        for path in ("/api/v2/crm/statistics", "/api/v2/crm/tasks/due"):
            for _ in range(2):
                r = await gw.http.get(path, headers=ada)
                assert r.status_code == 200, r.text
                assert r.headers["cache-control"] == "no-store"
                assert r.headers.get("x-cache") == "MISS"  # looked up, never stored
