"""Operator settings, from the environment (prefix XYNERGY_). Every setting is documented here.

One class for the whole operator: a kind's settings carry the kind's name as a prefix
(`scaling_*` is read from XYNERGY_SCALING_*), so `OperatorContext.settings` holds them all.
"""

from __future__ import annotations

import secrets

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OperatorSettings"]


class OperatorSettings(BaseSettings):
    """How the operator process runs. Each field reads XYNERGY_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix="XYNERGY_", extra="ignore")

    liveness_endpoint: str | None = Field(
        default=None,
        description="kopf liveness URL, e.g. http://127.0.0.1:8080/healthz (off if unset).",
    )
    metrics_port: int | None = Field(
        default=None, description="Port for the Prometheus /metrics endpoint (off if unset)."
    )
    metrics_address: str = Field(
        default="127.0.0.1", description="Address the metrics endpoint binds (0.0.0.0 in a Pod)."
    )
    namespace: str | None = Field(
        default=None, description="Watch only this namespace; cluster-wide when unset."
    )
    peering: str | None = Field(
        default=None,
        description="kopf peering object name for HA (standalone, no peering, when unset).",
    )
    peering_priority: int = Field(
        default_factory=lambda: 1 + secrets.randbelow(2**31 - 1),
        ge=0,
        description=(
            "kopf peering priority of this replica: the live replica with the highest acts, the "
            "others pause. Random by default, so two replicas never tie (kopf pauses every "
            "replica of a tied priority)."
        ),
    )
    drift_check_seconds: float = Field(
        default=600.0, gt=0, description="Default period of the drift check (with jitter)."
    )
    resync_concurrency: int = Field(
        default=16, ge=1, le=512, description="Most resync (drift) checks running at once."
    )
    resync_deadline_seconds: float = Field(
        default=180.0,
        gt=0,
        description="Longest one resync check may run before it is cancelled and retried.",
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=1,
        description=(
            "Deployment progressDeadlineSeconds: a rollout without progress for this long is "
            "Stalled (ProgressDeadlineExceeded)."
        ),
    )
    cloudrun_endpoint: str | None = Field(
        default=None,
        description="Cloud Run Admin API endpoint override (tests, fakes); Google's if unset.",
    )
    secretmanager_endpoint: str | None = Field(
        default=None,
        description=(
            "Secret Manager API endpoint override (tests, fakes; anonymous credentials), for "
            "Cloud Run env from secretKeyRef; Google's if unset."
        ),
    )
    api_concurrency: int = Field(
        default=32, ge=1, le=512, description="Most Kubernetes API calls in flight at once."
    )
    worker_limit: int | None = Field(
        default=128,
        ge=1,
        description=(
            "Most objects handled at once per watched kind (kopf's queueing.worker_limit); "
            "events of the others wait as raw events. Unset for no limit."
        ),
    )

    # ScalingPolicy (docs/scalingpolicy.md)
    scaling_prometheus_url: str | None = Field(
        default=None,
        description="Prometheus base URL for ScalingPolicies without metric.prometheusUrl.",
    )
    scaling_gcp_project: str | None = Field(
        default=None,
        description="Cloud Monitoring project for cloudMonitoring policies whose target has none.",
    )
    scaling_cloudmonitoring_endpoint: str | None = Field(
        default=None,
        description="Cloud Monitoring API endpoint override, host:port (tests, fakes); Google's "
        "if unset.",
    )
    scaling_refit_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often a policy's forecast model is refitted (not on every sync).",
    )
    scaling_refit_concurrency: int = Field(
        default=2, ge=1, le=64, description="Most model fits running at once (CPU-bound)."
    )
    scaling_history_points: int = Field(
        default=4000,
        ge=100,
        le=10_000,
        description="About how many points of history a fit reads (sets the range step).",
    )
    scaling_query_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one metrics query."
    )
    scaling_status_refresh_seconds: float = Field(
        default=600.0,
        gt=0,
        description=(
            "An unchanged scaling decision writes no status; its moving fields (current load, "
            "forecast window, calibration, lastReconcileTime) are refreshed at most this often."
        ),
    )
