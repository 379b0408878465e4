"""Interactions, notes, tasks, "tasks due" and statistics on a known data set."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from .conftest import ClientFactory

AS_OF = date(2025, 3, 12)  # a Wednesday; its ISO week starts on Monday 2025-03-10


def at(day: date, hour: int = 12) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


async def test_interactions_newest_first_with_pages(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    cid = (await c.post("/contacts", json={"name": "Ada"})).json()["id"]
    base = f"/contacts/{cid}/interactions"
    stamps = [at(AS_OF - timedelta(days=d)) for d in (5, 1, 9, 3, 3, 0, 7)]
    kinds = ["call", "email", "meeting", "slack", "note", "call", "email"]
    for stamp, kind in zip(stamps, kinds, strict=True):
        r = await c.post(
            base,
            json={
                "type": kind,
                "occurred_at": stamp,
                "summary": f"{kind} at {stamp}",
                "source_message_id": f"msg-{stamp}",
            },
        )
        assert r.status_code == 201, r.text

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = await c.get(base, params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        seen += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    occurred = [i["occurred_at"] for i in seen]
    assert occurred == sorted(occurred, reverse=True)
    assert len(seen) == 7
    assert len({i["id"] for i in seen}) == 7
    assert seen[0]["source_message_id"].startswith("msg-")
    calls = (await c.get(base, params={"type": "call"})).json()["items"]
    assert [i["type"] for i in calls] == ["call", "call"]

    one = await c.get(f"{base}/{seen[0]['id']}")
    assert one.status_code == 200
    assert one.json() == seen[0]
    assert (await c.delete(f"{base}/{seen[0]['id']}")).status_code == 204
    assert (await c.get(f"{base}/{seen[0]['id']}")).status_code == 404

    # An interaction reached through another contact of the same tenant is not found either.
    other = (await c.post("/contacts", json={"name": "Bob"})).json()["id"]
    assert (await c.get(f"/contacts/{other}/interactions/{seen[1]['id']}")).status_code == 404


async def test_notes_and_tasks(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    cid = (await c.post("/contacts", json={"name": "Ada"})).json()["id"]
    for body in ("first", "second", "third"):
        assert (await c.post(f"/contacts/{cid}/notes", json={"body": body})).status_code == 201
    notes = (await c.get(f"/contacts/{cid}/notes")).json()["items"]
    assert [n["body"] for n in notes] == ["third", "second", "first"]
    assert (await c.delete(f"/contacts/{cid}/notes/{notes[0]['id']}")).status_code == 204
    assert len((await c.get(f"/contacts/{cid}/notes")).json()["items"]) == 2

    t1 = (await c.post(f"/contacts/{cid}/tasks", json={"title": "A", "assignee": "u-9"})).json()
    await c.post(f"/contacts/{cid}/tasks", json={"title": "B", "status": "done"})
    assert t1["status"] == "open"
    assert t1["due_date"] is None
    tasks = (await c.get(f"/contacts/{cid}/tasks")).json()["items"]
    assert [t["title"] for t in tasks] == ["A", "B"]
    done = (await c.get(f"/contacts/{cid}/tasks", params={"status": "done"})).json()["items"]
    assert [t["title"] for t in done] == ["B"]
    r = await c.patch(f"/contacts/{cid}/tasks/{t1['id']}", json={"due_date": "2025-03-01"})
    assert r.status_code == 200
    assert r.json()["due_date"] == "2025-03-01"
    r = await c.patch(f"/contacts/{cid}/tasks/{t1['id']}", json={"status": None})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "status"


async def test_tasks_due_across_contacts(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    a = (await c.post("/contacts", json={"name": "A"})).json()["id"]
    b = (await c.post("/contacts", json={"name": "B"})).json()["id"]
    plan = [
        (a, "a-overdue", "2025-03-01", "open", "u-1"),
        (b, "b-today", "2025-03-12", "open", "u-2"),
        (a, "a-later", "2025-03-20", "open", "u-1"),
        (b, "b-done", "2025-03-02", "done", "u-1"),
        (b, "b-no-date", None, "open", "u-1"),
        (a, "a-early", "2025-02-01", "open", "u-2"),
    ]
    for contact, title, due, status, who in plan:
        body = {"title": title, "status": status, "assignee": who}
        if due:
            body["due_date"] = due
        assert (await c.post(f"/contacts/{contact}/tasks", json=body)).status_code == 201

    due = (await c.get("/tasks/due", params={"before": "2025-03-12"})).json()
    assert [t["title"] for t in due["items"]] == ["a-early", "a-overdue", "b-today"]
    mine = (await c.get("/tasks/due", params={"before": "2025-03-12", "assignee": "u-1"})).json()
    assert [t["title"] for t in mine["items"]] == ["a-overdue"]
    page1 = (await c.get("/tasks/due", params={"before": "2025-12-31", "limit": 2})).json()
    page2 = (
        await c.get(
            "/tasks/due",
            params={"before": "2025-12-31", "limit": 2, "cursor": page1["next_cursor"]},
        )
    ).json()
    assert [t["title"] for t in page1["items"] + page2["items"]] == [
        "a-early",
        "a-overdue",
        "b-today",
        "a-later",
    ]
    assert page2["next_cursor"] is None


async def test_statistics_on_a_known_data_set(client_for: ClientFactory, tenant: str) -> None:
    c = client_for(tenant)
    people = [
        ("A", "lead", ["vip", "pilot"]),
        ("B", "lead", ["vip"]),
        ("C", "prospect", []),
        ("D", "customer", ["pilot"]),
        ("E", "customer", ["vip"]),
        ("F", "churned", []),
        ("G", "customer", ["vip"]),  # soft-deleted below: counted only as deleted
    ]
    ids = {}
    for name, status, tags in people:
        r = await c.post("/contacts", json={"name": name, "status": status, "tags": tags})
        ids[name] = r.json()["id"]

    # Interactions: this week 3, last week 2, 3 weeks back 1, 20 weeks back 1 (outside 12).
    week = date(2025, 3, 10)
    plan = [
        ("A", AS_OF),
        ("A", week),
        ("B", week + timedelta(days=1)),
        ("C", week - timedelta(days=1)),
        ("D", week - timedelta(days=7)),
        ("E", week - timedelta(weeks=3)),
        ("A", week - timedelta(weeks=20)),
        ("G", week),  # deleted contact: not counted
    ]
    for name, day in plan:
        r = await c.post(
            f"/contacts/{ids[name]}/interactions",
            json={"type": "call", "summary": "x", "occurred_at": at(day)},
        )
        assert r.status_code == 201, r.text
    # Tasks: overdue = open and due before AS_OF.
    tasks = [
        ("A", "2025-03-11", "open"),  # overdue
        ("B", "2025-01-01", "open"),  # overdue
        ("C", "2025-03-12", "open"),  # due today: not overdue
        ("D", "2025-03-01", "done"),  # done
        ("E", None, "open"),  # no date
        ("G", "2025-01-01", "open"),  # deleted contact
    ]
    for name, due, status in tasks:
        body = {"title": "t", "status": status, **({"due_date": due} if due else {})}
        assert (await c.post(f"/contacts/{ids[name]}/tasks", json=body)).status_code == 201
    assert (await c.delete(f"/contacts/{ids['G']}")).status_code == 204

    r = await c.get("/statistics", params={"as_of": AS_OF.isoformat(), "weeks": 4})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "as_of": "2025-03-12",
        "contacts_total": 6,
        "contacts_deleted": 1,
        "contacts_by_status": {"lead": 2, "prospect": 1, "customer": 2, "churned": 1},
        "contacts_by_tag": {"vip": 3, "pilot": 2},
        "interactions_per_week": [
            {"week_start": "2025-02-17", "count": 1},
            {"week_start": "2025-02-24", "count": 0},
            {"week_start": "2025-03-03", "count": 2},
            {"week_start": "2025-03-10", "count": 3},
        ],
        "open_tasks": 4,
        "overdue_tasks": 2,
    }
    r = await c.get("/statistics", params={"as_of": AS_OF.isoformat(), "weeks": 0})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "weeks"
