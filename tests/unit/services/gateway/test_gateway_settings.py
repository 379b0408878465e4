"""A settings error at start names the variable (and never echoes its value)."""

from __future__ import annotations

import pytest

from services.common.settings import SettingsError
from services.gateway.__main__ import check_settings

KEY = "k" * 40


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "XYNERGY_INTERNAL_SIGNING_KEY"),
        (
            {"XYNERGY_INTERNAL_SIGNING_KEY": KEY, "XYNERGY_GATEWAY_RATE_LIMIT_PER_MINUTE": "lots"},
            "XYNERGY_GATEWAY_RATE_LIMIT_PER_MINUTE: Input should be a valid integer",
        ),
        (
            {"XYNERGY_INTERNAL_SIGNING_KEY": KEY, "XYNERGY_AUTH_LEEWAY_SECONDS": "-1"},
            "XYNERGY_AUTH_LEEWAY_SECONDS",
        ),
        (
            {"XYNERGY_INTERNAL_SIGNING_KEY": KEY, "XYNERGY_GATEWAY_ROUTE_NAMESPACES": '["CRM"]'},
            "XYNERGY_GATEWAY_ROUTE_NAMESPACES: Value error, each entry must be a namespace name",
        ),
        (
            {
                "XYNERGY_INTERNAL_SIGNING_KEY": KEY,
                "XYNERGY_GATEWAY_CORS_ORIGINS": '["https://app.example.com/lots"]',
            },
            "XYNERGY_GATEWAY_CORS_ORIGINS: Value error, each entry must be an origin, "
            "scheme://host[:port] without a path",
        ),
        (
            {"XYNERGY_INTERNAL_SIGNING_KEY": KEY, "XYNERGY_GATEWAY_CORS_ORIGINS": '["*"]'},
            "XYNERGY_GATEWAY_CORS_ORIGINS: Value error, each entry must be an origin",
        ),
        (
            {
                "XYNERGY_INTERNAL_SIGNING_KEY": KEY,
                "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS": '["https://lots.*.example.com"]',
            },
            "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS: Value error, each entry must look like "
            "https://*.example.com",
        ),
        (
            {
                "XYNERGY_INTERNAL_SIGNING_KEY": KEY,
                "XYNERGY_GATEWAY_STREAM_CONNECT_TIMEOUT_SECONDS": "0",
            },
            "XYNERGY_GATEWAY_STREAM_CONNECT_TIMEOUT_SECONDS: Input should be greater than 0",
        ),
        (
            # credentials are allowed: no pattern any website matches, nor a TLD's every site
            {"XYNERGY_INTERNAL_SIGNING_KEY": KEY, "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS": '[".*"]'},
            "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS: Value error, each entry must look like "
            "https://*.example.com: '*.' and a domain of two labels or more (credentials are "
            "allowed",
        ),
        (
            {
                "XYNERGY_INTERNAL_SIGNING_KEY": KEY,
                "xynergy_gateway_cors_origin_patterns": '["https://*.com"]',
            },
            "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS: Value error, each entry must look like",
        ),
        (
            {
                "XYNERGY_INTERNAL_SIGNING_KEY": KEY,
                "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS": '["https://*.github.io"]',
            },
            "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS: Value error, each entry's domain must be one "
            "its owner controls: github.io is a public suffix",
        ),
        (
            {
                "XYNERGY_INTERNAL_SIGNING_KEY": KEY,
                "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS": '["https://*.amazonaws.com"]',
            },
            "XYNERGY_GATEWAY_CORS_ORIGIN_PATTERNS: Value error, each entry's domain must be one "
            "its owner controls: amazonaws.com holds the public suffix",
        ),
        (
            {
                "XYNERGY_INTERNAL_SIGNING_KEY": KEY,
                "XYNERGY_GATEWAY_CORS_ORIGINS": '["https://\\u002a.example.com"]',
            },
            "XYNERGY_GATEWAY_CORS_ORIGINS: Value error, each entry must be an origin",
        ),
        (
            {"XYNERGY_INTERNAL_SIGNING_KEY": KEY, "XYNERGY_AUTH_FIREBASE_ENABLED": "false"},
            "JWT_SECRET / XYNERGY_AUTH_JWT_SECRET: required",
        ),
    ],
)
def test_a_bad_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name in ("XYNERGY_INTERNAL_SIGNING_KEY", "JWT_SECRET", "XYNERGY_AUTH_JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        check_settings()
    assert named in str(caught.value)
    assert "lots" not in str(caught.value)


def test_good_settings_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XYNERGY_INTERNAL_SIGNING_KEY", KEY)
    monkeypatch.setenv("JWT_SECRET", "j" * 40)
    check_settings()
