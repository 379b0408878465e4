"""Tenant isolation: a caller of tenant B, even an admin, cannot read, list, update, delete or
count tenant A's data by any route; A's ids (and guessed ones) answer 404, never 403."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import ClientFactory, RunningCrm

# (method, route template, body, query): every route of the API, with ids filled in from A.
TABLE: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
    ("GET", "/contacts/{contact_id}", None, None),
    ("GET", "/contacts/{contact_id}", None, {"include_deleted": "true"}),
    ("PATCH", "/contacts/{contact_id}", {"name": "pwned"}, None),
    ("DELETE", "/contacts/{contact_id}", None, None),
    ("DELETE", "/contacts/{contact_id}", None, {"hard": "true"}),
    ("POST", "/contacts/{contact_id}/restore", None, None),
    ("POST", "/contacts/{contact_id}/interactions", {"type": "call", "summary": "x"}, None),
    ("GET", "/contacts/{contact_id}/interactions", None, None),
    ("GET", "/contacts/{contact_id}/interactions/{interaction_id}", None, None),
    ("DELETE", "/contacts/{contact_id}/interactions/{interaction_id}", None, None),
    ("POST", "/contacts/{contact_id}/notes", {"body": "x"}, None),
    ("GET", "/contacts/{contact_id}/notes", None, None),
    ("GET", "/contacts/{contact_id}/notes/{note_id}", None, None),
    ("DELETE", "/contacts/{contact_id}/notes/{note_id}", None, None),
    ("POST", "/contacts/{contact_id}/tasks", {"title": "x"}, None),
    ("GET", "/contacts/{contact_id}/tasks", None, None),
    ("GET", "/contacts/{contact_id}/tasks/{task_id}", None, None),
    ("PATCH", "/contacts/{contact_id}/tasks/{task_id}", {"status": "done"}, None),
    ("DELETE", "/contacts/{contact_id}/tasks/{task_id}", None, None),
]
# Routes without an id: they must simply show B nothing of A's.
COLLECTION_ROUTES = {
    ("POST", "/contacts"),
    ("GET", "/contacts"),
    ("GET", "/tasks/due"),
    ("GET", "/statistics"),
}


def test_the_table_covers_every_route(crm: RunningCrm) -> None:
    routes = {
        (method.upper(), path.removeprefix("/api/v2/crm"))
        for path, ops in crm.app.openapi()["paths"].items()
        if path.startswith("/api/v2/crm")
        for method in ops
    }
    assert routes == {(m, p) for m, p, _, _ in TABLE} | COLLECTION_ROUTES


@pytest.fixture
async def seeded(client_for: ClientFactory, tenant: str) -> dict[str, Any]:
    a = client_for(tenant, user="alice", roles=("admin",))
    contact = (await a.post("/contacts", json={"name": "Secret", "tags": ["secret"]})).json()
    cid = contact["id"]
    ids = {"contact_id": cid}
    ids["interaction_id"] = (
        await a.post(f"/contacts/{cid}/interactions", json={"type": "call", "summary": "s"})
    ).json()["id"]
    ids["note_id"] = (await a.post(f"/contacts/{cid}/notes", json={"body": "s"})).json()["id"]
    ids["task_id"] = (
        await a.post(f"/contacts/{cid}/tasks", json={"title": "s", "due_date": "2020-01-01"})
    ).json()["id"]
    return {"tenant": tenant, "ids": ids, "client": a}


@pytest.mark.parametrize(("method", "template", "body", "query"), TABLE)
async def test_other_tenant_gets_404_on_every_id_route(
    client_for: ClientFactory,
    seeded: dict[str, Any],
    method: str,
    template: str,
    body: dict[str, Any] | None,
    query: dict[str, str] | None,
) -> None:
    b = client_for(seeded["tenant"] + "-b", user="mallory", roles=("admin",))
    path = template.format(**seeded["ids"])
    r = await b.request(method, path, json=body, params=query)
    assert r.status_code == 404, (method, path, r.text)
    assert "Secret" not in r.text

    # A guessed id and an unusable id look exactly the same as another tenant's id.
    for fake in ("AAAAAAAAAAAAAAAAAAAA", "__name__", "x" * 200):
        guessed = template.format(**dict.fromkeys(seeded["ids"], fake))
        g = await b.request(method, guessed, json=body, params=query)
        assert (g.status_code, g.json()) == (r.status_code, r.json())

    # And A's data is untouched.
    a = seeded["client"]
    cid = seeded["ids"]["contact_id"]
    got = await a.get(f"/contacts/{cid}")
    assert got.status_code == 200
    assert got.json()["version"] == 1
    for kind in ("interactions", "notes", "tasks"):
        items = (await a.get(f"/contacts/{cid}/{kind}")).json()["items"]
        assert len(items) == 1
        assert items[0]["version"] == 1


async def test_other_tenant_lists_and_counts_nothing(
    client_for: ClientFactory, seeded: dict[str, Any]
) -> None:
    b = client_for(seeded["tenant"] + "-b", user="mallory", roles=("admin",))
    for params in ({}, {"deleted": "true"}, {"tag": "secret"}, {"q": "secret"}):
        r = await b.get("/contacts", params=params)
        assert r.status_code == 200, params
        assert r.json()["items"] == [], params
    assert (await b.get("/tasks/due")).json()["items"] == []
    stats = (await b.get("/statistics", params={"as_of": "2020-01-02"})).json()
    assert stats["contacts_total"] == 0
    assert stats["contacts_by_tag"] == {}
    assert stats["open_tasks"] == 0
    assert stats["overdue_tasks"] == 0
    # B creating a contact lands in B's tenant only.
    assert (await b.post("/contacts", json={"name": "Mine"})).status_code == 201
    listed = (await seeded["client"].get("/contacts")).json()["items"]
    assert [m["name"] for m in listed] == ["Secret"]
    # A cursor from A's listing positions B's query inside B's data only.
    a = seeded["client"]
    for i in range(2):
        await a.post("/contacts", json={"name": f"More {i}"})
    cursor = (await a.get("/contacts", params={"limit": 1})).json()["next_cursor"]
    r = await b.get("/contacts", params={"cursor": cursor})
    assert r.status_code == 200
    assert all(m["name"] == "Mine" for m in r.json()["items"])
