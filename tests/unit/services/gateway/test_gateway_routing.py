"""Unit tests of the route table and path normalisation."""

from __future__ import annotations

import pytest

from services.gateway.routing import PathError, Route, RouteTable, normalise_path, routes_from_spec

UP = "http://crm.internal:8080"


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("/api/v2/crm", "/api/v2/crm"),
        ("/api//v2///crm/", "/api/v2/crm/"),
        ("/api/v2/./crm/a/../b", "/api/v2/crm/b"),
        ("/api/v2/crm/../../v2/slack", "/api/v2/slack"),
    ],
)
def test_normalise(raw: str, norm: str) -> None:
    assert normalise_path(raw) == norm


@pytest.mark.parametrize("raw", ["/..", "/api/../../x", "relative", "/a\x00b", "/a/b/../../../c"])
def test_normalise_refuses_escapes(raw: str) -> None:
    with pytest.raises(PathError):
        normalise_path(raw)


def table() -> RouteTable:
    return RouteTable.build(
        [
            Route(prefix="/api/v2/crm", upstream=UP + "/", service="crm"),
            Route(prefix="/api/v2/gmail", upstream="http://gmail", aliases=("/api/v2/email",)),
            Route(prefix="/api/v2/crm/reports", upstream="http://reports"),
            Route(prefix="/api/v2/crm", upstream="http://duplicate"),
        ]
    )


def test_longest_prefix_wins_and_segments_must_match() -> None:
    t = table()
    m = t.match("/api/v2/crm/contacts/7")
    assert m is not None
    assert m.route.upstream == UP
    assert m.upstream_path == "/api/v2/crm/contacts/7"
    assert m.resource == "/api/v2/crm/contacts"
    reports = t.match("/api/v2/crm/reports/q1")
    assert reports is not None
    assert reports.route.upstream == "http://reports"
    assert t.match("/api/v2/crmx") is None
    assert t.match("/api/v2") is None
    exact = t.match("/api/v2/crm")
    assert exact is not None
    assert exact.resource == "/api/v2/crm"


def test_aliases_and_xynergyos_mirror_rewrite_to_the_canonical_prefix() -> None:
    t = table()
    m = t.match("/api/v2/email/inbox")
    assert m is not None
    assert m.upstream_path == "/api/v2/gmail/inbox"
    assert m.resource == "/api/v2/gmail/inbox"
    m = t.match("/api/xynergyos/v2/email/inbox")
    assert m is not None
    assert m.upstream_path == "/api/v2/gmail/inbox"
    m = t.match("/api/xynergyos/v2/crm/contacts")
    assert m is not None
    assert m.upstream_path == "/api/v2/crm/contacts"


def test_first_duplicate_wins() -> None:
    m = table().match("/api/v2/crm/x")
    assert m is not None
    assert m.route.upstream == UP


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prefix": "api/v2/x", "upstream": UP},
        {"prefix": "/api/v2/x/", "upstream": UP},
        {"prefix": "/api/v2/../x", "upstream": UP},
        {"prefix": "/api/v2/x", "upstream": "ftp://x"},
    ],
)
def test_invalid_routes_are_refused(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - PathError is a ValueError too
        Route(**kwargs)


def test_routes_from_spec_skips_bad_entries_and_needs_a_url() -> None:
    spec = [
        {"prefix": "/api/v2/crm", "aliases": ["/api/v2/c"], "timeoutSeconds": 5},
        {"prefix": "no-slash"},
        {"aliases": []},
        "junk",
        {"prefix": "/api/v2/crm2", "rateLimitPerMinute": 7},
    ]
    routes = routes_from_spec(service="crm", upstream=UP, routes=spec)
    assert [(r.prefix, r.aliases, r.timeout_seconds, r.rate_limit_per_minute) for r in routes] == [
        ("/api/v2/crm", ("/api/v2/c",), 5.0, None),
        ("/api/v2/crm2", (), None, 7),
    ]
    assert routes_from_spec(service="crm", upstream=None, routes=spec) == []


@pytest.mark.parametrize(
    "entry",
    [
        {"prefix": "/api/v2/x", "timeout": 5},  # a misspelt field: the CRD would refuse it
        {"prefix": "/api/v2/x", "rateLimitPerMinute": 0},  # below the contract's minimum
        {"prefix": "/api/v2/x", "timeoutSeconds": 99999},  # above it
        {"prefix": "/api/v2/x", "aliases": ["/api/v2/y"] * 9},  # more aliases than allowed
    ],
)
def test_route_entries_are_read_through_the_api_model(entry: dict[str, object]) -> None:
    """The gateway reads spec.routes with apis' Route model, not its own parsing: what the
    contract refuses never becomes a route."""
    good = {"prefix": "/api/v2/ok"}
    routes = routes_from_spec(service="crm", upstream=UP, routes=[entry, good])
    assert [r.prefix for r in routes] == ["/api/v2/ok"]
