"""Cost intelligence: cost per service from usage, forecasts with intervals, cost anomalies
and recommendations in plain language.

Compute cost is instance-seconds x the instance's vCPU and GiB x Cloud Run's prices
(settings); AI cost is what the router's ledger accrued (``GET /api/v1/ai/usage``, snapshotted
into the store). Forecasts are ``intelligence.forecasting.AutoForecaster`` on hourly cost
(seasonal naive, Holt-Winters or Ridge, chosen by backtest); anomalies are
``intelligence.anomaly.RobustZScore`` on the same series.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from intelligence.anomaly import RobustZScore, Severity
from intelligence.forecasting import DAY, AutoForecaster
from services.analytics.records import UsageHour
from services.analytics.settings import CloudRunPrices
from services.analytics.stores import AnalyticsStore

__all__ = ["AI_SERVICE", "CostReport", "Costs", "hourly_cost"]

AI_SERVICE = "ai-tokens"
"""The pseudo-service AI token costs are reported under."""
HOUR = 3600.0
NIGHT_HOURS = range(0, 6)


def hourly_cost(hours: list[UsageHour], prices: CloudRunPrices) -> dict[str, dict[float, float]]:
    """service -> {hour (epoch seconds): USD}."""
    out: dict[str, dict[float, float]] = defaultdict(dict)
    for h in hours:
        cost = h.vcpu_seconds * prices.vcpu_second + h.gib_seconds * prices.gib_second
        out[h.service][h.hour.timestamp()] = cost
    return out


@dataclass
class CostReport:
    services: dict[str, float]
    ai: list[dict[str, Any]]
    series: dict[str, dict[float, float]]
    window_hours: int
    total: float = field(init=False)

    def __post_init__(self) -> None:
        self.total = sum(self.services.values())


class Costs:
    def __init__(
        self, store: AnalyticsStore, prices: CloudRunPrices, *, horizon_hours: int
    ) -> None:
        self.store = store
        self.prices = prices
        self.horizon = horizon_hours

    async def report(self, tenant: str, *, now: dt.datetime, hours: int = 24 * 7) -> CostReport:
        since = now - dt.timedelta(hours=hours)
        series = hourly_cost(await self.store.usage_hourly(tenant, since=since), self.prices)
        totals = {s: sum(v.values()) for s, v in series.items()}
        ai_rows = await self.store.ai_usage(tenant, since=since)
        ai = [
            {
                "provider": r.provider,
                "model": r.model,
                "requests": r.requests,
                "tokens": r.prompt_tokens + r.completion_tokens,
                "cost_usd": r.cost_usd,
            }
            for r in ai_rows
        ]
        if ai:
            totals[AI_SERVICE] = sum(r.cost_usd for r in ai_rows)
        return CostReport(services=totals, ai=ai, series=dict(series), window_hours=hours)

    async def forecast(self, tenant: str, service: str, *, now: dt.datetime) -> dict[str, Any]:
        report = await self.report(tenant, now=now, hours=24 * 28)
        points = report.series.get(service)
        if not points:
            return {"service": service, "forecast": [], "notes": ["no usage recorded yet"]}
        ts = np.array(sorted(points), dtype=np.float64)
        values = np.array([points[t] for t in ts], dtype=np.float64)
        if ts.size < 3:
            flat = float(values.mean())
            start = ts[-1] + HOUR
            steps = [
                {"time": _iso(start + i * HOUR), "cost_usd": flat, "lower": flat, "upper": flat}
                for i in range(self.horizon)
            ]
            note = f"{ts.size} hour(s) of history: the forecast repeats the mean"
            return {
                "service": service,
                "model": "mean",
                "forecast": steps,
                "notes": [note],
                "total_usd": flat * self.horizon,
                "level": None,
            }
        model = AutoForecaster(periods=(DAY,), step=HOUR, horizon=min(24, self.horizon))
        fc = model.fit(ts, values).predict(self.horizon)
        steps = [
            {
                "time": _iso(t),
                "cost_usd": max(0.0, float(p)),
                "lower": max(0.0, float(lo)),
                "upper": max(0.0, float(hi)),
            }
            for t, p, lo, hi in zip(fc.timestamps, fc.point, fc.lower, fc.upper, strict=True)
        ]
        return {
            "service": service,
            "model": fc.model,
            "level": fc.level,
            "forecast": steps,
            "total_usd": sum(s["cost_usd"] for s in steps),
            "notes": list(fc.notes),
        }

    @staticmethod
    def anomalies(report: CostReport) -> list[dict[str, Any]]:
        """Hours whose cost is far from the service's rolling median (robust z-score)."""
        out = []
        for service, points in report.series.items():
            ts = sorted(points)
            values = np.array([points[t] for t in ts], dtype=np.float64)
            det = RobustZScore(window=48, min_history=6, direction="up")
            result = det.score(values)
            for i in result.anomalies:
                out.append(
                    {
                        "service": service,
                        "time": _iso(ts[int(i)]),
                        "cost_usd": float(values[i]),
                        "score": float(result.scores[i]),
                        "severity": Severity(int(result.severities[i])).name,
                    }
                )
        return sorted(out, key=lambda a: (a["time"], a["service"]))


def recommendations(report: CostReport, anomalies: list[dict[str, Any]]) -> list[str]:
    """Plain-language advice from the report (each names the service and the figure)."""
    out: list[str] = []
    if report.total > 0:
        top, cost = max(report.services.items(), key=lambda kv: kv[1])
        share = cost / report.total
        if share >= 0.5 and len(report.services) > 1:
            out.append(
                f"{top} is {share:.0%} of your spend (${cost:.2f} over {report.window_hours} h)."
            )
    for service, points in report.series.items():
        night = [
            c for t, c in points.items() if dt.datetime.fromtimestamp(t, dt.UTC).hour in NIGHT_HOURS
        ]
        day = [
            c
            for t, c in points.items()
            if dt.datetime.fromtimestamp(t, dt.UTC).hour not in NIGHT_HOURS
        ]
        if night and day and np.mean(night) >= 0.8 * np.mean(day) > 0:
            monthly = float(np.mean(night)) * len(NIGHT_HOURS) * 30
            out.append(
                f"{service} runs {np.mean(night) / np.mean(day):.0%} of its daytime instances "
                f"between 00:00 and 06:00 UTC; if it is idle then, a ScalingPolicy schedule with "
                f"a lower minInstances at night would save up to ${monthly:.2f} a month."
            )
    ai = report.services.get(AI_SERVICE, 0.0)
    if ai > 0 and ai >= report.total - ai:
        top_ai = max(report.ai, key=lambda r: r["cost_usd"])
        out.append(
            f"AI tokens are {ai / report.total:.0%} of your spend, most of it {top_ai['provider']}/"
            f"{top_ai['model']} (${top_ai['cost_usd']:.2f}): the router's cache (X-AI-Cache: force "
            "for repeated prompts) or a cheaper model would cut it."
        )
    worst: dict[str, dict[str, Any]] = {}
    for a in anomalies:
        worst[a["service"]] = a
    for service, a in sorted(worst.items()):
        out.append(
            f"{service} cost ${a['cost_usd']:.2f} in the hour of {a['time']}, "
            f"far above its usual ({a['severity']})."
        )
    return out


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat() if math.isfinite(ts) else ""
