"""Rollout settings, from the environment (prefix XYNERGY_ROLLOUT_). Each documented here.

(Kept beside the kind, as the ScalingPolicy's, so the kind can be read alone.)
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RolloutSettings"]


class RolloutSettings(BaseSettings):
    """How Rollouts read metrics and pace their steps. Each field reads
    XYNERGY_ROLLOUT_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix="XYNERGY_ROLLOUT_", extra="ignore")

    prometheus_url: str | None = Field(
        default=None, description="Prometheus base URL for analysis metrics of source prometheus."
    )
    gcp_project: str | None = Field(
        default=None,
        description="Cloud Monitoring project for analysis metrics of source cloudMonitoring "
        "whose target XynergyService has no spec.cloudRun.project.",
    )
    cloudmonitoring_endpoint: str | None = Field(
        default=None,
        description="Cloud Monitoring API endpoint override, host:port (tests, fakes); Google's "
        "if unset.",
    )
    query_step_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Resolution of the analysis series (one sample per revision per step).",
    )
    query_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one metrics query."
    )
    poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Next check while waiting on a revision or an operation (not on a clock).",
    )
    verification_url: str | None = Field(
        default=None,
        description="Base URL verification checks are sent to instead of the new revision's "
        "own URL (an operator outside the cluster, development, tests).",
    )
    rolling_step_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long each traffic increment of the rolling strategy is held.",
    )
