"""ScalingPolicy settings, from the environment (prefix XYNERGY_SCALING_). Each documented here.

(Kept beside the kind rather than in `controllers/settings.py` so the kind can be read alone;
they belong there once the operator's settings are merged into one place.)
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ScalingSettings"]


class ScalingSettings(BaseSettings):
    """How ScalingPolicies read metrics and refit models. Each field reads
    XYNERGY_SCALING_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix="XYNERGY_SCALING_", extra="ignore")

    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus base URL for policies without metric.prometheusUrl.",
    )
    gcp_project: str | None = Field(
        default=None,
        description="Cloud Monitoring project for cloudMonitoring policies whose target has none.",
    )
    cloudmonitoring_endpoint: str | None = Field(
        default=None, description="Cloud Monitoring API endpoint override (tests, fakes)."
    )
    refit_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often a policy's forecast model is refitted (not on every sync).",
    )
    refit_concurrency: int = Field(
        default=2, ge=1, le=64, description="Most model fits running at once (CPU-bound)."
    )
    history_points: int = Field(
        default=4000,
        ge=100,
        le=10_000,
        description="About how many points of history a fit reads (sets the range step).",
    )
    query_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one metrics query."
    )
