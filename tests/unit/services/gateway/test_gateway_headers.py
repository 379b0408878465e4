"""Which client headers may reach a service, and whose X-Forwarded-For is believed."""

from __future__ import annotations

import pytest

from services.gateway.headers import (
    ForwardedFor,
    TrustedProxies,
    client_may_send,
    response_headers,
)


@pytest.mark.parametrize(
    "name",
    [
        "x-xynergy-identity",
        "X_Xynergy_Identity",
        "x_tenant_id",
        "X-User_Id",
        "x-original-user",
        "x-real-ip",
        "x_real_ip",
        "true-client-ip",
        "x-forwarded-host",
        "x_forwarded_for",
        "forwarded",
        "impersonate-user",
        "x-remote-group",
        "x-goog-iap-jwt-assertion",
        "cf-access-authenticated-user-email",
        "x-http-method-override",
    ],
)
def test_identity_and_proxy_headers_are_refused_in_any_spelling(name: str) -> None:
    assert not client_may_send(name)


@pytest.mark.parametrize(
    "name", ["content-type", "accept", "if-match", "idempotency-key", "x-custom_thing", "xuser"]
)
def test_ordinary_headers_pass(name: str) -> None:
    assert client_may_send(name)


TRUSTED = TrustedProxies(["10.0.0.0/8", "192.168.1.1"])


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    got = ForwardedFor.resolve(peer="203.0.113.5", xff=["1.2.3.4"], trusted=TRUSTED)
    assert got == ForwardedFor(client="203.0.113.5", header="203.0.113.5")
    nobody = ForwardedFor.resolve(peer="10.1.1.1", xff=["1.2.3.4"], trusted=TrustedProxies([]))
    assert nobody.client == "10.1.1.1"


def test_a_trusted_peer_names_the_client_rightmost_untrusted_first() -> None:
    got = ForwardedFor.resolve(
        peer="10.0.0.2", xff=["6.6.6.6, 198.51.100.7", "192.168.1.1"], trusted=TRUSTED
    )
    assert got.client == "198.51.100.7"  # 6.6.6.6 was written by the client itself
    assert got.header == "6.6.6.6, 198.51.100.7, 192.168.1.1, 10.0.0.2"
    only_proxies = ForwardedFor.resolve(peer="10.0.0.2", xff=["10.0.0.9"], trusted=TRUSTED)
    assert only_proxies.client == "10.0.0.9"
    direct = ForwardedFor.resolve(peer="10.0.0.2", xff=[], trusted=TRUSTED)
    assert direct == ForwardedFor(client="10.0.0.2", header="10.0.0.2", via_proxy=True)


def test_upstream_cors_headers_are_dropped_in_any_case() -> None:
    """The gateway owns CORS: an upstream's own Access-Control-* headers, in whatever case,
    never reach the client (Starlette's middleware only replaces lower-case names, so a
    mixed-case one would go out next to the echoed origin: two values, refused by browsers)."""
    raw = [
        (b"Content-Type", b"application/json"),
        (b"Access-Control-Allow-Origin", b"*"),
        (b"access-control-allow-credentials", b"true"),
        (b"ACCESS-CONTROL-EXPOSE-HEADERS", b"x-secret"),
        (b"Vary", b"Accept-Encoding"),
    ]
    kept = response_headers(raw, None)
    assert kept == [(b"content-type", b"application/json"), (b"vary", b"Accept-Encoding")]


def test_response_header_names_go_out_lower_case_with_hop_by_hop_dropped() -> None:
    raw = [
        (b"ETag", b'"v1"'),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Request-ID", b"upstream-id"),
        (b"X-Drop-Me", b"1"),
    ]
    assert response_headers(raw, "X-Drop-Me") == [(b"etag", b'"v1"')]
