"""The anomaly report: the anomaly engine's alerts in the period (opened, escalated,
resolved; the engine keeps each in the store's ``anomaly-alerts`` history) and the hours whose
cost was far above the service's usual (the cost service's detector)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

from intelligence.anomaly import Severity
from services.analytics.alerts import ALERT_TOPIC
from services.analytics.costs import CostReport, Costs
from services.analytics.records import EventRow
from services.analytics.reports.cost import cost_series
from services.analytics.reports.model import Chart, Period, Report, Table
from services.analytics.reports.sources import EVENT_LIMIT, Sources, money, number

__all__ = ["build"]

COLUMNS = ("time", "source", "service", "metric", "change", "severity", "value")
SEVERITIES = [s.name for s in Severity]


def _alert_row(event: EventRow) -> tuple[str, ...] | None:
    try:
        body: dict[str, Any] = json.loads(event.payload)
        alert = body["alert"]
        return (
            event.ts.strftime("%Y-%m-%d %H:%M:%S"),
            "alert",
            str(alert["service"]),
            str(alert["metric"]),
            str(body["change"]),
            str(alert["severity"]),
            number(float(alert["value"])),
        )
    except (ValueError, KeyError, TypeError):
        return None


async def _alerts(sources: Sources, tenant: str, period: Period) -> tuple[list[Any], bool]:
    events = await sources.store.events(
        tenant, since=period.start, topic=ALERT_TOPIC, limit=EVENT_LIMIT
    )
    rows = [_alert_row(e) for e in events if period.holds(e.ts)]
    return [r for r in rows if r is not None], len(events) >= EVENT_LIMIT


async def _cost_rows(sources: Sources, tenant: str, period: Period) -> list[tuple[str, ...]]:
    series, _ = await cost_series(sources, tenant, period)
    report = CostReport(services={}, ai=[], series=series, window_hours=round(period.hours))
    return [
        (
            dt.datetime.fromisoformat(a["time"]).strftime("%Y-%m-%d %H:%M:%S"),
            "cost",
            a["service"],
            "cost_usd",
            "",
            a["severity"],
            money(a["cost_usd"]),
        )
        for a in Costs.anomalies(report)
    ]


def _chart(rows: list[tuple[str, ...]]) -> Chart:
    counts = {src: Counter(r[5] for r in rows if r[1] == src) for src in ("alert", "cost")}
    return Chart(
        "Anomalies by severity",
        "bar",
        SEVERITIES,
        {f"{src} events": [float(c[s]) for s in SEVERITIES] for src, c in counts.items()},
        unit="count",
    )


async def build(sources: Sources, tenant: str, period: Period, now: dt.datetime) -> Report:
    alerts, capped = await _alerts(sources, tenant, period)
    rows = sorted(alerts + await _cost_rows(sources, tenant, period))
    opened = sum(r[4] == "opened" for r in alerts)
    notes = [f"Only the latest {EVENT_LIMIT} alert events were read."] if capped else []
    return Report(
        kind="anomaly",
        title="Anomaly report",
        tenant=tenant,
        period=period,
        generated=now,
        table=Table(COLUMNS, rows),
        summary=[
            ("Alerts opened", str(opened)),
            ("Alerts resolved", str(sum(r[4] == "resolved" for r in alerts))),
            ("Escalations", str(sum(r[4] == "escalated" for r in alerts))),
            ("Cost anomalies", str(sum(r[1] == "cost" for r in rows))),
        ],
        charts=[_chart(rows)] if rows else [],
        notes=notes,
    )
