"""Unit tests of the route table and path normalisation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from services.gateway.routing import (
    PathError,
    Route,
    RouteTable,
    Upstream,
    chosen_revision,
    normalise_path,
    routes_from_spec,
)

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
def test_invalid_routes_are_refused(kwargs: dict[str, Any]) -> None:
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


def test_routes_from_spec_ignores_a_trailing_slash() -> None:
    """The API allows /api/v2/crm/; the gateway serves it as /api/v2/crm (it was dropped)."""
    spec = [{"prefix": "/api/v2/crm/", "aliases": ["/api/v2/c/"]}]
    routes = routes_from_spec(service="crm", upstream=UP, routes=spec)
    assert [(r.prefix, r.aliases) for r in routes] == [("/api/v2/crm", ("/api/v2/c",))]
    table = RouteTable.build(routes)
    for path in ("/api/v2/crm/x", "/api/v2/c/x"):
        match = table.match(path)
        assert match is not None
        assert match.upstream_path == "/api/v2/crm/x"


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


def _weighted(canary: int, *, sticky: bool = False) -> RouteTable:
    upstreams = [
        Upstream("http://stable:80", 100 - canary, "ai-00001"),
        Upstream("http://canary:80", canary, "ai-ro-1"),
    ]
    spec = [{"prefix": "/api/v2/ai"}]
    return RouteTable.build(
        routes_from_spec(service="ai", upstream=UP, routes=spec, upstreams=upstreams, sticky=sticky)
    )


def test_public_flag_is_read_from_the_spec() -> None:
    spec = [{"prefix": "/api/v2/slack/events", "public": True}, {"prefix": "/api/v2/slack"}]
    routes = routes_from_spec(service="slack", upstream=UP, routes=spec)
    assert [(r.prefix, r.public) for r in routes] == [
        ("/api/v2/slack/events", True),
        ("/api/v2/slack", False),
    ]


def test_weighted_route_splits_requests_by_weight() -> None:
    table = _weighted(20)
    picks: Counter[tuple[str, str, str]] = Counter()
    for _ in range(5000):
        match = table.match("/api/v2/ai/x")
        assert match is not None
        assert match.upstream_path == "/api/v2/ai/x"
        picks[(match.route.upstream, match.route.revision, chosen_revision())] += 1
    assert set(picks) == {
        ("http://stable:80", "ai-00001", "ai-00001"),
        ("http://canary:80", "ai-ro-1", "ai-ro-1"),
    }
    share = picks[("http://canary:80", "ai-ro-1", "ai-ro-1")] / 5000
    assert 0.16 < share < 0.24  # 20 % with a 5-sigma margin


def test_weighted_route_with_one_live_upstream_is_plain_but_labelled() -> None:
    table = _weighted(0)
    match = table.match("/api/v2/ai")
    assert match is not None
    assert (match.route.upstream, match.route.upstreams, chosen_revision()) == (
        "http://stable:80",
        (),
        "ai-00001",
    )
    plain = RouteTable.build([Route("/api/v2/crm", UP)])
    assert plain.match("/api/v2/crm") is not None
    assert chosen_revision() == ""


def test_sticky_route_keeps_a_user_on_one_revision_and_moves_users_once() -> None:
    users = [f"user-{i}" for i in range(400)]

    def revisions(table: RouteTable) -> dict[str, str]:
        out = {}
        for user in users:
            match = table.match("/api/v2/ai/x")
            assert match is not None
            out[user] = table.stick(match, user).route.revision
        return out

    at10 = revisions(_weighted(10, sticky=True))
    again = revisions(_weighted(10, sticky=True))
    at50 = revisions(_weighted(50, sticky=True))
    assert at10 == again
    on_canary = {u for u, r in at10.items() if r == "ai-ro-1"}
    assert 0 < len(on_canary) < 80
    assert on_canary <= {u for u, r in at50.items() if r == "ai-ro-1"}  # nobody moves back
    assert 120 < sum(r == "ai-ro-1" for r in at50.values()) < 280
    direct = _weighted(10, sticky=True).match("/api/v2/ai", key="user-1")
    assert direct is not None
    assert direct.route.revision == at10["user-1"]  # a key given to match() counts the same


def test_non_sticky_route_ignores_stick() -> None:
    table = _weighted(50)
    match = table.match("/api/v2/ai")
    assert match is not None
    assert table.stick(match, "user-1") is match


def test_weighted_routes_refuse_bad_upstreams() -> None:
    with pytest.raises(ValueError, match="add up to more than 0"):
        Route("/api/v2/ai", UP, upstreams=(Upstream(UP, 0), Upstream(UP, 0)))
    with pytest.raises(ValueError, match="must be an http"):
        Upstream("ftp://x", 5)


def test_upstream_weight_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="weight must be >= 0"):
        Upstream(UP, -1)


def test_metrics_label_requests_by_the_chosen_revision() -> None:
    from services.gateway.metrics import GatewayMetrics

    metrics = GatewayMetrics()
    table = _weighted(50)
    seen: Counter[str] = Counter()
    for _ in range(200):
        match = table.match("/api/v2/ai/x")
        assert match is not None
        seen[match.route.revision] += 1
        metrics.request_done(match.route.prefix, "GET", 200, 0.01)
    assert table.match("/api/v2/elsewhere") is None
    metrics.request_done("unmatched", "GET", 404, 0.01)  # no revision: not counted by revision
    for revision in ("ai-00001", "ai-ro-1"):
        labels = {"route": "/api/v2/ai", "revision": revision, "status": "200"}
        count = metrics.registry.get_sample_value("xynergy_gateway_revision_requests_total", labels)
        assert count == seen[revision]
        hist = metrics.registry.get_sample_value(
            "xynergy_gateway_revision_request_duration_seconds_count",
            {"route": "/api/v2/ai", "revision": revision},
        )
        assert hist == seen[revision]
    assert (
        metrics.registry.get_sample_value(
            "xynergy_gateway_revision_requests_total",
            {"route": "unmatched", "revision": "", "status": "404"},
        )
        is None
    )
