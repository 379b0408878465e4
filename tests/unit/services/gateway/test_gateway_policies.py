"""Unit tests of the small policies: CORS origins, cache TTLs and keys, rate-limit headers."""

from __future__ import annotations

import pytest

from services.gateway.cache import cache_ttl, normalise_query
from services.gateway.cors import OriginPolicy
from services.gateway.ratelimit import Decision


def test_origin_policy() -> None:
    policy = OriginPolicy(origins=["http://localhost:3000"], patterns=["https://*.xynergyos.com"])
    assert policy.allows("http://localhost:3000")
    assert policy.allows("https://app.xynergyos.com")
    assert policy.allows("https://a.b.xynergyos.com")
    for origin in (
        None,
        "",
        "https://xynergyos.com",
        "http://app.xynergyos.com",
        "https://app.xynergyos.com.evil.io",
        "https://evilxynergyos.com",
        "https://app.xynergyos.com:8443",
        "http://localhost:3001",
    ):
        assert not policy.allows(origin), origin


@pytest.mark.parametrize(
    "pattern",
    ["https://*.example.co.uk", "https://*.myco.github.io", "https://*.APP.Example.com:8443"],
)
def test_a_pattern_over_a_domain_its_owner_controls_is_allowed(pattern: str) -> None:
    """The public-suffix rule refuses anyone's sites, not a company's own domain under a
    multi-label or a private-section suffix (case and port as a browser may send them)."""
    policy = OriginPolicy(origins=[], patterns=[pattern])
    host = pattern.lower().replace("*", "web")
    assert policy.allows(host)


@pytest.mark.parametrize(
    ("origins", "patterns"),
    [
        (["*"], []),
        ([], ["*"]),
        ([], ["https://x.*.com"]),
        ([], [".*"]),
        ([], ["https://*.com"]),  # every .com website
        ([], ["https://*.co.uk"]),  # a public suffix of two labels: every site under it
        ([], ["https://*.github.io"]),  # the list's private section: anyone's pages
        ([], ["https://*.a.run.app:443"]),  # anyone's Cloud Run service, port or not
        ([], ["https://*.amazonaws.com"]),  # holds s3-website.<region>.amazonaws.com, anyone's
        ([], ["https://*.core.windows.net"]),  # holds blob.core.windows.net
        ([], ["https://app.xynergyos.com"]),  # not a pattern
    ],
)
def test_origin_policy_refuses_wildcards(origins: list[str], patterns: list[str]) -> None:
    with pytest.raises(ValueError, match="CORS"):
        OriginPolicy(origins=origins, patterns=patterns)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"cache-control": "public, max-age=60"}, (60, True)),
        ({"cache-control": "max-age=60, s-maxage=30"}, (30, False)),
        ({"cache-control": "private, max-age=9999"}, (3600, False)),
        ({"cache-control": "no-store, max-age=60"}, (0, False)),
        ({"cache-control": "no-cache"}, (0, False)),
        ({"cache-control": "public"}, (0, True)),
        ({}, (0, False)),
        ({"cache-control": "max-age=60", "set-cookie": "a=b"}, (0, False)),
        ({"cache-control": "max-age=60", "vary": "Accept-Language"}, (0, False)),
    ],
)
def test_cache_ttl(headers: dict[str, str], expected: tuple[int, bool]) -> None:
    assert cache_ttl(headers, max_ttl=3600) == expected


def test_normalise_query_sorts_and_keeps_blanks() -> None:
    assert normalise_query("b=2&a=1&a=0&c=") == "a=0&a=1&b=2&c="
    assert normalise_query("") == ""


def test_rate_limit_headers() -> None:
    ok = Decision(allowed=True, limit=100, remaining=7, reset_seconds=12, window_seconds=60)
    assert dict(ok.headers()) == {
        "ratelimit-limit": "100",
        "ratelimit-remaining": "7",
        "ratelimit-reset": "12",
        "ratelimit-policy": "100;w=60",
    }
    refused = Decision(allowed=False, limit=100, remaining=0, reset_seconds=0, window_seconds=60)
    assert dict(refused.headers())["retry-after"] == "1"
