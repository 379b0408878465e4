"""Contacts against the Firestore emulator: CRUD, 250-contact pagination, filters, search,
validation and roles."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from services.crm.paging import Cursor

from .conftest import ClientFactory, RunningCrm, identity_headers


async def create_many(c: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create contacts, a few at a time (the machine is small), in the order given."""
    gate = asyncio.Semaphore(8)

    async def one(body: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            r = await c.post("/contacts", json=body)
            assert r.status_code == 201, r.text
            return dict(r.json())

    return list(await asyncio.gather(*(one(b) for b in bodies)))


async def pages(c: httpx.AsyncClient, **params: Any) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        q = {**params, **({"cursor": cursor} if cursor else {})}
        r = await c.get("/contacts", params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        out.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out


async def test_crud_round_trip(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    r = await c.post(
        "/contacts",
        json={
            "name": "  Ada Lovelace ",
            "email": "Ada@Analytical.EXAMPLE",
            "phone": "+44 20 7123 4567",
            "company": "Analytical Engines",
            "tags": ["VIP", "pilot", "vip"],
            "owner": "u-42",
            "status": "prospect",
        },
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert r.headers["etag"] == '"1"'
    assert r.headers["location"] == f"/api/v2/crm/contacts/{made['id']}"
    assert made["name"] == "Ada Lovelace"
    assert made["email"] == "Ada@analytical.example"
    assert made["phone"] == "+442071234567"
    assert made["tags"] == ["vip", "pilot"]
    assert made["created_by"] == "u-1"

    r = await c.get(f"/contacts/{made['id']}")
    assert r.status_code == 200
    assert r.json() == made
    assert r.headers["etag"] == '"1"'

    r = await c.patch(f"/contacts/{made['id']}", json={"status": "customer", "company": None})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "customer"
    assert r.json()["company"] is None
    assert r.json()["version"] == 2
    assert r.headers["etag"] == '"2"'

    # A patch that changes nothing writes nothing.
    r = await c.patch(f"/contacts/{made['id']}", json={"status": "customer"})
    assert r.json()["version"] == 2

    r = await c.delete(f"/contacts/{made['id']}")
    assert r.status_code == 204
    assert (await c.get(f"/contacts/{made['id']}")).status_code == 404


async def test_pagination_over_250_contacts_is_stable(
    client_for: ClientFactory, tenant: str
) -> None:
    c = client_for(tenant)
    made = await create_many(
        c,
        [
            {"name": f"Person {i:03d}", "tags": ["even" if i % 2 == 0 else "odd"]}
            for i in range(250)
        ],
    )
    # Creation order: (created_at, id). Several contacts can share a timestamp's order only
    # through the id tie-break, which the API must apply.
    expected = [m["id"] for m in sorted(made, key=lambda m: (m["created_at"], m["id"]))]

    got = await pages(c, limit=40)
    assert [len(p) for p in got] == [40] * 6 + [10]
    assert [m["id"] for p in got for m in p] == expected

    # Walking it again gives the same pages; new contacts made mid-walk come after the end.
    first = await c.get("/contacts", params={"limit": 100})
    late = await create_many(c, [{"name": "Late Comer"}])
    rest = await pages(c, limit=100, cursor=first.json()["next_cursor"])
    ids = [m["id"] for m in first.json()["items"]] + [m["id"] for p in rest for m in p]
    assert ids == [*expected, late[0]["id"]]

    by_name = await pages(c, limit=64, order="name")
    names = [m["name"] for p in by_name for m in p]
    assert names == sorted(names, key=str.casefold)
    assert len(names) == 251

    evens = await pages(c, limit=50, tag="even")
    assert sum(len(p) for p in evens) == 125
    assert all("even" in m["tags"] for p in evens for m in p)


async def test_filters_and_search(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    await create_many(
        c,
        [
            {
                "name": "Ada Lovelace",
                "email": "ada@engines.example",
                "company": "Engines",
                "owner": "u-1",
                "tags": ["vip"],
            },
            {
                "name": "Charles Babbage",
                "email": "cb@engines.example",
                "company": "engines",
                "owner": "u-2",
                "status": "customer",
            },
            {
                "name": "Grace Hopper",
                "email": "grace@navy.example",
                "company": "Navy",
                "owner": "u-1",
                "tags": ["vip"],
            },
            {"name": "Émile Zola", "email": "ez@paris.example", "status": "churned"},
        ],
    )

    async def names(**params: Any) -> list[str]:
        r = await c.get("/contacts", params={**params, "order": "name"})
        assert r.status_code == 200, r.text
        return [m["name"] for m in r.json()["items"]]

    assert await names(tag="vip") == ["Ada Lovelace", "Grace Hopper"]
    assert await names(company="ENGINES") == ["Ada Lovelace", "Charles Babbage"]
    assert await names(owner="u-1") == ["Ada Lovelace", "Grace Hopper"]
    assert await names(status="churned") == ["Émile Zola"]
    assert await names(owner="u-1", company="navy") == ["Grace Hopper"]
    # search: prefix of the name, of a word of it, or of the email; case and accents folded
    assert await names(q="ada") == ["Ada Lovelace"]
    assert await names(q="LOVE") == ["Ada Lovelace"]
    assert await names(q="grace@n") == ["Grace Hopper"]
    assert await names(q="emile") == ["Émile Zola"]
    assert await names(q="cb@") == ["Charles Babbage"]
    assert await names(q="zzz") == []
    assert await names(q="a", owner="u-1") == ["Ada Lovelace"]

    r = await c.get("/contacts", params={"q": "ada", "tag": "vip"})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "tag"


async def test_validation_names_the_field(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "x", "email": "not-an-email"}, "email"),
        ({"name": "x", "email": "a@b"}, "email"),
        ({"name": "x", "phone": "0207 123 4567"}, "phone"),
        ({"name": "x", "phone": "+0123456789"}, "phone"),
        ({"name": "x" * 201}, "name"),
        ({"name": "   "}, "name"),
        ({}, "name"),
        ({"name": "x", "status": "friend"}, "status"),
        ({"name": "x", "tags": ["no spaces"]}, "tags.0"),
        ({"name": "x", "tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"name": "x", "favourite_colour": "blue"}, "favourite_colour"),
    ]
    for body, field in cases:
        r = await c.post("/contacts", json=body)
        assert r.status_code == 422, (body, r.text)
        err = r.json()
        assert err["error"] == "validation_failed"
        assert field in [f["field"] for f in err["fields"]], (body, err)

    r = await c.get("/contacts", params={"limit": 1000})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "limit"
    forged = [
        "garbage",
        Cursor(order="created", values=("a", "b"), id="x").encode(),
        Cursor(order="created", values=("a",), id="../x").encode(),
        Cursor(order="name", values=("a",), id="x").encode(),
    ]
    for cursor in forged:
        r = await c.get("/contacts", params={"cursor": cursor})
        assert r.status_code == 422, r.text
        assert r.json()["fields"][0]["field"] == "cursor"
    r = await c.get("/contacts", params={"cursor": "garbage"})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "cursor"

    made = (await c.post("/contacts", json={"name": "Ada"})).json()
    r = await c.patch(f"/contacts/{made['id']}", json={"name": None})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "name"
    r = await c.patch(f"/contacts/{made['id']}", json={"id": "other"})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "id"
    r = await c.post(f"/contacts/{made['id']}/interactions", json={"type": "fax", "summary": "x"})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "type"
    r = await c.post(
        f"/contacts/{made['id']}/interactions",
        json={"type": "call", "summary": "x", "occurred_at": "2025-01-01T10:00:00"},
    )
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "occurred_at"
    r = await c.post(f"/contacts/{made['id']}/tasks", json={"title": "x", "due_date": "soon"})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "due_date"


async def test_roles(client_for: ClientFactory, crm: RunningCrm, tenant: str) -> None:
    editor = client_for(tenant, roles=("editor",))
    viewer = client_for(tenant, user="v", roles=("viewer",))
    nobody = client_for(tenant, user="n", roles=("member",))
    admin = client_for(tenant, user="a", roles=("admin",))
    made = (await editor.post("/contacts", json={"name": "Ada"})).json()
    path = f"/contacts/{made['id']}"

    assert (await viewer.get(path)).status_code == 200
    assert (await viewer.get("/contacts")).status_code == 200
    assert (await viewer.get("/statistics")).status_code == 200
    assert (await viewer.post("/contacts", json={"name": "B"})).status_code == 403
    assert (await viewer.patch(path, json={"name": "B"})).status_code == 403
    assert (await viewer.delete(path)).status_code == 403
    assert (await nobody.get(path)).status_code == 403
    assert (await editor.delete(path, params={"hard": "true"})).status_code == 403
    assert (await admin.delete(path, params={"hard": "true"})).status_code == 204
    assert (await admin.get(path, params={"include_deleted": "true"})).status_code == 404

    async with httpx.AsyncClient(base_url=crm.url) as raw:
        r = await raw.get("/api/v2/crm/contacts")
        assert r.status_code == 401
        forged = identity_headers(tenant=tenant)
        forged["x-xynergy-identity"] = forged["x-xynergy-identity"][:-4] + "AAAA"
        assert (await raw.get("/api/v2/crm/contacts", headers=forged)).status_code == 401
        r = await raw.get("/api/v2/crm/contacts", headers={"x-tenant-id": tenant})
        assert r.status_code == 401
