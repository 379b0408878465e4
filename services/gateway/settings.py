"""Gateway settings, read from the environment (prefix ``XYNERGY_GATEWAY_``).

Every setting is documented in docs/gateway.md. Lists are given as JSON in the environment,
e.g. ``XYNERGY_GATEWAY_CORS_ORIGINS='["https://app.xynergyos.com"]'``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from apis.base import DNS_LABEL
from services.gateway.cors import check_origin, check_pattern

__all__ = ["GatewaySettings"]


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_GATEWAY_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    route_source: Literal["auto", "file", "cluster"] = "auto"
    routes_file: Path | None = None
    routes_poll_seconds: float = Field(default=1.0, gt=0)
    cluster_namespace: str | None = None
    route_namespaces: list[str] = Field(default_factory=list)
    """With the cluster source: load routes only from these namespaces (all when empty)."""

    rate_limit_per_minute: int = Field(default=100, ge=1)
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    rate_limit_fail_open: bool = True
    tenant_rate_limit_per_minute: int = Field(default=1000, ge=0)
    ip_rate_limit_per_minute: int = Field(default=1000, ge=0)
    unauthenticated_rate_limit: int = Field(default=100, ge=0)
    unauthenticated_window_seconds: int = Field(default=900, ge=1)
    trusted_proxies: list[str] = Field(default_factory=list)
    stream_connect_limit_per_minute: int = Field(default=60, ge=0)
    """socket.io connections per client address per rate-limit window (0: off)."""
    stream_user_connect_limit_per_minute: int = Field(default=20, ge=0)
    """socket.io connections per signed-in user per rate-limit window (0: off)."""
    stream_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """An event stream session (engine.io handshake) without an accepted socket.io connect
    this long after its handshake is closed, so a counted session cannot be held idle."""

    cache_enabled: bool = True
    cache_max_body_bytes: int = Field(default=1 << 20, ge=0)
    cache_max_ttl_seconds: int = Field(default=3600, ge=1)

    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)

    retries: int = Field(default=2, ge=0, le=5)
    retry_backoff_seconds: float = Field(default=0.05, ge=0)
    default_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=512, ge=1)
    upstream_id_tokens: bool = True
    """Send a Google ID token (X-Serverless-Authorization) to Cloud Run (`https://*.run.app`)
    upstreams, so services that require authentication let the gateway in."""

    max_body_bytes: int = Field(default=10 << 20, ge=0)
    body_timeout_seconds: float = Field(default=20.0, gt=0)
    body_min_rate_bytes: int = Field(default=500, ge=1)

    cors_origins: list[str] = Field(default_factory=list)
    cors_origin_patterns: list[str] = Field(default_factory=lambda: ["https://*.xynergyos.com"])

    stream_path: str = "/api/xynergyos/v2/stream"
    stream_topics: list[str] = Field(
        default_factory=lambda: ["slack-messages", "email-updates", "crm-changes"]
    )
    stream_expiry_check_seconds: float = Field(default=1.0, gt=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR block (e.g. 10.0.0.0/8)"
                ) from None
        return value

    @field_validator("route_namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        for item in value:
            if len(item) > 63 or not re.fullmatch(DNS_LABEL, item):
                raise ValueError("each entry must be a namespace name (e.g. crm)")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for item in value:
            check_origin(item)
        return value

    @field_validator("cors_origin_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for item in value:
            check_pattern(item)
        return value

    access_log: bool = True
    log_level: str = "INFO"
