"""ETag conflicts, idempotent retries, soft delete and restore, hard delete."""

from __future__ import annotations

import asyncio

from .conftest import ClientFactory


async def test_if_match_rejects_stale_versions(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    made = (await c.post("/contacts", json={"name": "Ada"})).json()
    path = f"/contacts/{made['id']}"

    r = await c.patch(path, json={"title": "CTO"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200
    assert r.headers["etag"] == '"2"'

    r = await c.patch(path, json={"title": "CEO"}, headers={"If-Match": '"1"'})
    assert r.status_code == 412
    assert r.json()["error"] == "precondition_failed"
    assert r.headers["etag"] == '"2"'
    assert (await c.get(path)).json()["title"] == "CTO"

    # Weak tags never match (strong comparison), nor does garbage; `*` matches any version.
    for value in ('W/"2"', "2", '"x"'):
        assert (
            await c.patch(path, json={"title": "x"}, headers={"If-Match": value})
        ).status_code == 412
    r = await c.patch(path, json={"title": "COO"}, headers={"If-Match": "*"})
    assert r.status_code == 200
    assert r.json()["version"] == 3
    r = await c.patch(path, json={"title": "CFO"}, headers={"If-Match": '"1", "3"'})
    assert r.status_code == 200
    assert r.json()["version"] == 4

    # Two writers holding the same ETag: exactly one wins.
    results = await asyncio.gather(
        *(
            c.patch(path, json={"title": f"writer {i}"}, headers={"If-Match": '"4"'})
            for i in range(4)
        )
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 412, 412, 412]
    winner = next(r for r in results if r.status_code == 200).json()
    assert (await c.get(path)).json()["title"] == winner["title"]

    # Delete honours If-Match too.
    assert (await c.delete(path, headers={"If-Match": '"4"'})).status_code == 412
    assert (await c.delete(path, headers={"If-Match": '"5"'})).status_code == 204


async def test_task_patch_uses_etags(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    contact = (await c.post("/contacts", json={"name": "Ada"})).json()
    base = f"/contacts/{contact['id']}/tasks"
    task = (await c.post(base, json={"title": "Call back"})).json()
    r = await c.patch(f"{base}/{task['id']}", json={"status": "done"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200
    assert r.json()["status"] == "done"
    assert r.headers["etag"] == '"2"'
    r = await c.patch(f"{base}/{task['id']}", json={"status": "open"}, headers={"If-Match": '"1"'})
    assert r.status_code == 412


async def test_idempotent_retries_return_the_first_result(
    client_for: ClientFactory, tenant: str
) -> None:
    c = client_for(tenant)
    key = {"Idempotency-Key": "create-ada-1"}
    first = await c.post("/contacts", json={"name": "Ada"}, headers=key)
    again = await c.post("/contacts", json={"name": "Ada"}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers

    # Concurrent retries of one request still make one contact.
    key2 = {"Idempotency-Key": "create-grace-1"}
    results = await asyncio.gather(
        *(c.post("/contacts", json={"name": "Grace"}, headers=key2) for _ in range(5))
    )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1

    # Same key, different request: refused, naming the header.
    r = await c.post("/contacts", json={"name": "Someone else"}, headers=key)
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "Idempotency-Key"

    # Keys are per user: another user's identical key is a new request.
    other = client_for(tenant, user="u-2")
    r = await other.post("/contacts", json={"name": "Ada"}, headers=key)
    assert r.status_code == 201
    assert r.json()["id"] != first.json()["id"]

    # Without a key every POST creates.
    a = await c.post("/contacts", json={"name": "Ada"})
    b = await c.post("/contacts", json={"name": "Ada"})
    assert a.json()["id"] != b.json()["id"]

    listed = (await c.get("/contacts", params={"limit": 100})).json()["items"]
    assert sorted(m["name"] for m in listed) == ["Ada", "Ada", "Ada", "Ada", "Grace"]

    # Children too.
    cid = first.json()["id"]
    k = {"Idempotency-Key": "note-1"}
    n1 = await c.post(f"/contacts/{cid}/notes", json={"body": "hello"}, headers=k)
    n2 = await c.post(f"/contacts/{cid}/notes", json={"body": "hello"}, headers=k)
    assert n1.json() == n2.json()
    assert len((await c.get(f"/contacts/{cid}/notes")).json()["items"]) == 1

    r = await c.post("/contacts", json={"name": "x"}, headers={"Idempotency-Key": "x" * 300})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "Idempotency-Key"


async def test_soft_delete_and_restore(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    ada = (await c.post("/contacts", json={"name": "Ada", "tags": ["vip"]})).json()
    bob = (await c.post("/contacts", json={"name": "Bob"})).json()
    path = f"/contacts/{ada['id']}"
    await c.post(f"{path}/tasks", json={"title": "Overdue", "due_date": "2020-01-01"})
    await c.post(f"{path}/interactions", json={"type": "call", "summary": "hi"})

    assert (await c.delete(path)).status_code == 204
    assert (await c.delete(path)).status_code == 204  # already deleted: still 204, no change
    assert (await c.get(path)).status_code == 404
    assert (await c.patch(path, json={"name": "x"})).status_code == 404
    assert (await c.get(f"{path}/tasks")).status_code == 404
    assert (await c.post(f"{path}/notes", json={"body": "x"})).status_code == 404
    live = (await c.get("/contacts")).json()["items"]
    assert [m["id"] for m in live] == [bob["id"]]
    trash = (await c.get("/contacts", params={"deleted": "true"})).json()["items"]
    assert [m["id"] for m in trash] == [ada["id"]]
    assert trash[0]["deleted"] is True
    assert trash[0]["deleted_at"]
    got = await c.get(path, params={"include_deleted": "true"})
    assert got.status_code == 200
    assert got.json()["deleted"] is True
    assert (await c.get("/tasks/due")).json()["items"] == []
    stats = (await c.get("/statistics")).json()
    assert stats["contacts_total"] == 1
    assert stats["contacts_deleted"] == 1
    assert stats["overdue_tasks"] == 0
    assert stats["contacts_by_tag"] == {}

    r = await c.post(f"{path}/restore")
    assert r.status_code == 200
    assert r.json()["deleted"] is False
    assert r.json()["deleted_at"] is None
    again = await c.post(f"{path}/restore")
    assert again.json()["version"] == r.json()["version"]
    assert (await c.get(path)).status_code == 200
    assert len((await c.get(f"{path}/tasks")).json()["items"]) == 1
    assert len((await c.get("/tasks/due")).json()["items"]) == 1
    assert (await c.get("/statistics")).json()["overdue_tasks"] == 1


async def test_hard_delete_purges_children(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    admin = client_for(tenant, user="boss", roles=("admin",))
    ada = (await c.post("/contacts", json={"name": "Ada"})).json()
    path = f"/contacts/{ada['id']}"
    for i in range(3):
        await c.post(f"{path}/interactions", json={"type": "email", "summary": f"m{i}"})
        await c.post(f"{path}/notes", json={"body": f"n{i}"})
        await c.post(f"{path}/tasks", json={"title": f"t{i}", "due_date": "2020-01-01"})
    assert (await admin.delete(path, params={"hard": "true"})).status_code == 204
    assert (await admin.get(path, params={"include_deleted": "true"})).status_code == 404
    assert (await admin.post(f"{path}/restore")).status_code == 404
    assert (await admin.delete(path, params={"hard": "true"})).status_code == 404
    stats = (await admin.get("/statistics")).json()
    assert stats["contacts_total"] == 0
    assert stats["contacts_deleted"] == 0
    assert stats["open_tasks"] == 0
    assert sum(w["count"] for w in stats["interactions_per_week"]) == 0
    assert (await admin.get("/tasks/due")).json()["items"] == []
