"""Cursors, search keys, If-Match parsing, roles and week arithmetic: the CRM's pure parts."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import pytest

from services.common.tenancy import Identity
from services.crm.deps import has_role, parse_if_match
from services.crm.paging import Cursor, CursorError, normalise_search, search_keys
from services.crm.stats import week_counts, week_start, weeks_window


def test_cursor_round_trip_keeps_types() -> None:
    stamp = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    for values in [(stamp,), ("ada lovelace",), ("2025-01-01",), (None,)]:
        cur = Cursor(order="created", values=values, id="abc123")
        assert Cursor.decode(cur.encode(), order="created") == cur


@pytest.mark.parametrize("text", ["", "not base64 !", "e30", "W10", "eyJvIjoiY3JlYXRlZCJ9"])
def test_garbage_cursors_are_refused(text: str) -> None:
    with pytest.raises(CursorError):
        Cursor.decode(text, order="created")


def test_deeply_nested_cursor_is_refused_not_a_crash() -> None:
    """A cursor is client input: JSON nested past the decoder's recursion limit is a bad
    cursor (400), not a RecursionError (500)."""
    deep = ("[" * 5000 + "]" * 5000).encode()
    text = base64.urlsafe_b64encode(deep).decode().rstrip("=")
    with pytest.raises(CursorError, match="not a cursor"):
        Cursor.decode(text, order="created")


def test_cursor_of_another_order_is_refused() -> None:
    cur = Cursor(order="name", values=("a",), id="x").encode()
    with pytest.raises(CursorError, match="order"):
        Cursor.decode(cur, order="created")


def test_search_keys_cover_name_words_and_email_prefixes() -> None:
    keys = set(search_keys(name="Émile  Zola-Smith", email="EZ@Paris.example"))
    for q in ("e", "emile", "emile zola", "zola-smith", "ez@", "ez@paris.example"):
        assert normalise_search(q) in keys
    assert "smith" not in keys  # words split on spaces, not on hyphens inside names
    assert "mile" not in keys
    assert all(len(k) <= 40 for k in search_keys(name="x" * 200, email=None))


def test_normalise_search_folds_case_accents_and_spaces() -> None:
    assert normalise_search("  ÉMILE   Zola ") == "emile zola"


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        (None, None),
        ("*", None),
        ('"3"', frozenset({3})),
        ('"1", "4"', frozenset({1, 4})),
        ('W/"3"', frozenset()),
        ("3", frozenset()),
        ('"abc"', frozenset()),
    ],
)
def test_if_match(header: str | None, versions: frozenset[int] | None) -> None:
    assert parse_if_match(header) == versions


@pytest.mark.parametrize(
    ("roles", "viewer", "editor", "admin"),
    [
        ((), False, False, False),
        (("member",), False, False, False),
        (("viewer",), True, False, False),
        (("editor",), True, True, False),
        (("admin",), True, True, True),
        (("viewer", "admin"), True, True, True),
    ],
)
def test_roles_are_ordered(roles: tuple[str, ...], viewer: bool, editor: bool, admin: bool) -> None:
    who = Identity(user_id="u", tenant_id="t", roles=roles)
    assert (has_role(who, "viewer"), has_role(who, "editor"), has_role(who, "admin")) == (
        viewer,
        editor,
        admin,
    )


def test_weeks() -> None:
    assert week_start(date(2025, 3, 12)) == date(2025, 3, 10)
    assert week_start(date(2025, 3, 10)) == date(2025, 3, 10)
    start, end = weeks_window(as_of=date(2025, 3, 12), weeks=2)
    assert (start, end) == (datetime(2025, 3, 3, tzinfo=UTC), datetime(2025, 3, 17, tzinfo=UTC))
    stamps = [
        datetime(2025, 3, 2, 23, 59, tzinfo=UTC),  # before the window
        datetime(2025, 3, 3, tzinfo=UTC),
        datetime(2025, 3, 16, 23, 59, tzinfo=UTC),
        datetime(2025, 3, 17, tzinfo=UTC),  # after it
    ]
    assert week_counts(stamps, as_of=date(2025, 3, 12), weeks=2) == [
        (date(2025, 3, 3), 1),
        (date(2025, 3, 10), 1),
    ]
