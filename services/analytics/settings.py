"""Analytics settings, read from the environment (prefix ``XYNERGY_ANALYTICS_``).

Every setting is listed in docs/services/analytics.md. Structured settings (the price table,
the anomaly metrics, the topics) are JSON in their variable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CONSOLIDATED_TOPICS", "AnalyticsSettings", "CloudRunPrices", "MetricQuery"]


class CloudRunPrices(BaseModel):
    """Cloud Run's instance-based prices (USD), tier 1 region, as published."""

    model_config = ConfigDict(extra="forbid")

    vcpu_second: float = Field(default=0.000018, ge=0, description="USD per vCPU-second.")
    gib_second: float = Field(default=0.000002, ge=0, description="USD per GiB-second.")


DEFAULT_WINDOWS = {"tailProbability": 240, "robustZ": 60}
"""Points per detector window: 240 for the tail detector (every fold of a leave-one-category-out
choice among 60-960 on NAB chose it, ``bench/anomaly_engine.py``), 60 for the robust z-score."""
DEFAULT_MIN_HISTORY = {"tailProbability": 50, "robustZ": 20}


class MetricQuery(BaseModel):
    """A live metric the anomaly engine watches per service: PromQL with ``$service``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    query: str = Field(min_length=1, max_length=4096)
    direction: Literal["up", "down", "both"] = "up"
    """Which deviations are anomalies (an error rate only going up)."""
    detector: Literal["tailProbability", "robustZ"] = "tailProbability"
    """``tailProbability``: ``TailProbabilityDetector`` with the low-FP profile's quiet lead-in
    (docs/intelligence/anomaly.md); an alert opens on its alarm, at most one per half window.
    ``robustZ``: ``RobustZScore``; an alert opens at WARNING (3.5 robust sigmas), which on NAB
    opens ~40x as many false alerts (``bench/anomaly_engine.py``)."""
    window: int | None = Field(default=None, ge=10, le=10_000)
    """Trailing points the detector uses, and the history it warms up on; default
    ``DEFAULT_WINDOWS[detector]``."""
    min_history: int | None = Field(default=None, ge=5, le=10_000)
    """Points before the detector scores; default ``DEFAULT_MIN_HISTORY[detector]`` (at most
    the window)."""

    @property
    def points(self) -> int:
        """The window in effect."""
        return self.window if self.window is not None else DEFAULT_WINDOWS[self.detector]

    @property
    def warmup(self) -> int:
        """The minimum history in effect."""
        given = self.min_history
        return min(self.points, given if given is not None else DEFAULT_MIN_HISTORY[self.detector])


def _default_metrics() -> list[MetricQuery]:
    svc = 'service="$service"'
    return [
        MetricQuery(
            name="request_rate",
            query=f"sum(rate(xynergy_gateway_requests_total{{{svc}}}[1m]))",
            direction="both",
        ),
        MetricQuery(
            name="error_rate",
            query=f'sum(rate(xynergy_gateway_requests_total{{{svc},status=~"5.."}}[1m]))',
        ),
    ]


CONSOLIDATED_TOPICS = (
    "ai-platform-events",
    "analytics-events",
    "content-platform-events",
    "platform-system-events",
    "workflow-events",
    "intelligence-events",
    "quality-events",
)
"""The seed's 7 consolidated Pub/Sub topics (its ``PubSubManager.consolidated_topics``)."""


class AnalyticsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_ANALYTICS_", extra="ignore")

    store: Literal["duckdb", "bigquery"] = "duckdb"
    duckdb_path: str = Field(default=":memory:", description="A file, or :memory:.")
    bigquery_project: str = ""
    bigquery_dataset: str = Field(default="xynergy_analytics", pattern=r"^[A-Za-z0-9_]{1,1024}$")
    bigquery_location: str = "US"
    bigquery_endpoint: str = Field(default="", description="API endpoint (an emulator or fake).")
    bigquery_partition_expiration_days: int = Field(default=400, ge=1)

    redis_url: str = "redis://127.0.0.1:6379/0"
    ingest_topics: list[str] = Field(
        default_factory=lambda: ["crm-changes", "slack-messages", "email-updates", "ai-usage"]
    )
    ingest_batch_seconds: float = Field(default=1.0, gt=0, le=60)
    pubsub_project: str = Field(default="", description="Google Cloud project of the ingest.")
    pubsub_subscription: str = Field(
        default="", description="A Pub/Sub subscription provisioned outside to ingest from too."
    )
    pubsub_topics: list[str] = Field(
        default_factory=lambda: list(CONSOLIDATED_TOPICS),
        description="Topics the ingest reads, each through its own subscription; created "
        "with it when missing.",
    )
    pubsub_subscription_prefix: str = Field(
        default="analytics-ingest",
        pattern=r"^[A-Za-z][-A-Za-z0-9_.~+%]{2,180}$",
        description="The ingest's subscription on topic T is <prefix>-T.",
    )
    pubsub_dead_letter_topic: str = Field(
        default="",
        pattern=r"^(|[A-Za-z][-A-Za-z0-9_.~+%]{2,254})$",
        description="Topic id malformed messages go to; '' = logged and dropped.",
    )
    pubsub_max_messages: int = Field(default=100, ge=1, le=10_000)

    ai_url: str = Field(default="http://127.0.0.1:8083", pattern=r"^https?://\S+$")
    prometheus_url: str = Field(default="", description="Prometheus HTTP API; '' = none.")
    kubernetes: bool = Field(default=True, description="Read XynergyServices and policies.")
    namespace: str = Field(default="", description="Namespace to read ('' = all).")
    usage_interval_seconds: float = Field(default=60.0, gt=0)

    prices: CloudRunPrices = Field(default_factory=CloudRunPrices)
    forecast_hours: int = Field(default=24, ge=1, le=24 * 14)

    anomaly_metrics: list[MetricQuery] = Field(default_factory=_default_metrics)
    anomaly_interval_seconds: float = Field(default=15.0, gt=0)
    anomaly_resolve_after: int = Field(default=3, ge=1, le=100)
    anomaly_services: list[str] = Field(
        default_factory=list, description="Services to watch besides the XynergyServices."
    )
    anomaly_tenant: str = Field(default="", description="Tenant of anomaly_services' alerts.")
    alert_webhooks: list[str] = Field(default_factory=list)
    escalate_after_seconds: float = Field(default=900.0, gt=0)

    step_retries: int = Field(default=1, ge=0, le=5)
    workflow_models: dict[str, str] = Field(
        default_factory=lambda: {
            "cost": "gpt-4o-mini",
            "speed": "gpt-4o-mini",
            "balanced": "gpt-4o-mini",
        },
        description="Goal (cost, speed, balanced) -> model asked of the router.",
    )
    ai_prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "gpt-4o-mini": (0.15, 0.6),
            "gpt-4o": (2.5, 10.0),
            "*": (0.5, 1.5),
        },
        description="Model -> (prompt, completion) USD per 1M tokens, for step costs.",
    )
    log_level: str = "INFO"
