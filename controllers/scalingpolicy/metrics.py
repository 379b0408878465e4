"""Operator metrics of ScalingPolicies: decisions, fallbacks, forecast error, sync latency and
lateness (served with the operator's other metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["DECISIONS", "FALLBACKS", "FORECAST_ERROR", "SYNC_LATENESS", "SYNC_SECONDS"]

DECISIONS = Counter(
    "xynergy_scalingpolicy_decisions_total",
    "Scaling decisions by the mode that made them and the reason of the result.",
    ["mode", "reason"],
)
FALLBACKS = Counter(
    "xynergy_scalingpolicy_fallbacks_total",
    "Syncs that did not use the forecast (or held for lack of metrics), by reason.",
    ["reason"],
)
FORECAST_ERROR = Gauge(
    "xynergy_scalingpolicy_forecast_smape_percent",
    "The forecast model's recent error (backtest sMAPE) per policy.",
    ["namespace", "name"],
)
SYNC_SECONDS = Histogram(
    "xynergy_scalingpolicy_sync_seconds",
    "Time one sync takes (metrics read, decision, action).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SYNC_LATENESS = Histogram(
    "xynergy_scalingpolicy_sync_lateness_seconds",
    "How long after its slot a periodic sync started.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
