"""The anomaly engine: detectors from ``intelligence.anomaly`` run on each service's live
metrics, deduplicated alerts with open / resolved state, escalation and webhooks.

Every ``interval`` the engine reads each watched (tenant, service, metric)'s current value from
Prometheus and feeds it to that series' streaming detector (``MetricQuery.detector``, warmed up
from the metric's recent history the first time it is seen). A point that opens (the tail
detector's alarm, in the metric's direction; a robust z-score's WARNING) opens an alert for the
series unless one is open; while one is open a worse severity escalates it; an open alert is
resolved after ``resolve_after`` consecutive normal points (below WARNING), and escalated once
when it stays open longer than ``escalate_after``. Each opening, escalation and resolution is
POSTed to the webhooks and kept in the store's event history (topic ``anomaly-alerts``).

That history is also where alerts live: before each tick the engine restores each watched
tenant's alerts from it (the latest change of each alert id in the last ``RESTORE_DAYS``), so
a restarted service keeps its open alerts, and replicas sharing a store (BigQuery) see, and do
not re-open, each other's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

from intelligence.anomaly import Detection, RobustZScore, Severity, TailProbabilityDetector
from intelligence.anomaly.base import AnomalyDetector
from services.analytics.prometheus import PrometheusClient, PrometheusError
from services.analytics.records import EventRow, utc
from services.analytics.settings import MetricQuery
from services.analytics.stores import AnalyticsStore

__all__ = ["Alert", "AnomalyEngine", "Watch"]

log = logging.getLogger("xynergy.analytics")
ALERT_TOPIC = "anomaly-alerts"
RESTORE_DAYS = 30
_RESTORE_LIMIT = 10_000


@dataclass(frozen=True)
class Watch:
    tenant: str
    service: str


@dataclass
class Alert:
    id: str
    tenant: str
    service: str
    metric: str
    severity: str
    state: str  # open | resolved
    value: float
    score: float
    opened_at: float
    updated_at: float
    resolved_at: float | None = None
    escalated: bool = False
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass
class _Series:
    detector: AnomalyDetector
    points: int = 0  # values fed, history included
    warmed: bool = False
    normal_streak: int = 0
    last: dict[str, Any] = field(default_factory=dict)


def make_detector(metric: MetricQuery, *, min_history: int | None = None) -> AnomalyDetector:
    """The metric's detector, in its direction: the tail detector with the low-FP profile's
    quiet lead-in (no escalation through its refractory half window), or the robust z-score."""
    window, warmup = metric.points, min_history or metric.warmup
    if metric.detector == "robustZ":
        return RobustZScore(window=window, min_history=warmup, direction=metric.direction)
    return TailProbabilityDetector(
        window=window,
        min_history=warmup,
        quiet_window=window // 2,
        quiet_penalty=1.0,
        escalation=None,
        direction=metric.direction,
    )


Change = Literal["opened", "abnormal", "normal", "resolved"]


def alert_step(
    metric: MetricQuery, det: Detection, *, is_open: bool, streak: int, resolve_after: int
) -> tuple[Change | None, int]:
    """One point of a series' alert rule: what happens to its alert and the new count of
    normal points in a row. No alert: `det` opens one (`opens`) or nothing happens. An open
    one: a point at WARNING or worse keeps it (abnormal), `resolve_after` points below it in a
    row resolve it."""
    if not is_open:
        return ("opened", 0) if opens(metric, det) else (None, streak)
    if det.severity >= Severity.WARNING:
        return "abnormal", 0
    streak += 1
    return ("resolved" if streak >= resolve_after else "normal"), streak


def opens(metric: MetricQuery, det: Detection) -> bool:
    """Whether `det` opens an alert: the tail detector's alarm (at most one per refractory half
    window, only in the metric's direction), the robust z-score's WARNING."""
    if metric.detector == "robustZ":
        return det.severity >= Severity.WARNING
    return det.evidence.get("alarm", 0.0) > 0.0


class AnomalyEngine:
    def __init__(
        self,
        prometheus: PrometheusClient,
        store: AnalyticsStore,
        *,
        metrics: list[MetricQuery],
        interval: float,
        resolve_after: int,
        escalate_after: float,
        webhooks: list[str],
        http: httpx.AsyncClient,
        watches: Callable[[], Awaitable[list[Watch]]],
    ) -> None:
        self.prometheus = prometheus
        self.store = store
        self.metrics = metrics
        self.interval = interval
        self.resolve_after = resolve_after
        self.escalate_after = escalate_after
        self.webhooks = webhooks
        self.http = http
        self.watches = watches
        self.series: dict[tuple[str, str, str], _Series] = {}
        self.open: dict[tuple[str, str, str], Alert] = {}
        self.history: list[Alert] = []
        self.ticks = 0

    def alerts(self, tenant: str) -> list[Alert]:
        """The tenant's open alerts, then the last resolved ones (newest first)."""
        live = [a for a in self.open.values() if a.tenant == tenant]
        done = [a for a in reversed(self.history) if a.tenant == tenant and a.state == "resolved"]
        return sorted(live, key=lambda a: -a.opened_at) + done[:50]

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("anomaly tick failed")
            await asyncio.sleep(self.interval)

    async def restore(self, tenant: str, *, now: float) -> None:
        """Bring the tenant's alerts up to the store's history (the latest change of each id):
        alerts opened or resolved elsewhere (an earlier run, another replica) are taken in;
        this process's own objects stay when the store has nothing newer."""
        since = utc(now - RESTORE_DAYS * 86400)
        rows = await self.store.events(tenant, since=since, topic=ALERT_TOPIC, limit=_RESTORE_LIMIT)
        latest: dict[str, Alert] = {}
        for row in reversed(rows):  # oldest first: later changes win
            with contextlib.suppress(ValueError, TypeError, KeyError):
                alert = Alert(**json.loads(row.payload)["alert"])
                if alert.tenant == tenant:
                    latest[alert.id] = alert
        for alert in sorted(latest.values(), key=lambda a: a.updated_at):
            key = (alert.tenant, alert.service, alert.metric)
            mine = self.open.get(key)
            if alert.state == "resolved" and mine is not None and mine.id == alert.id:
                del self.open[key]
            elif alert.state == "open" and (
                mine is None or (mine.id == alert.id and mine.updated_at < alert.updated_at)
            ):
                self.open[key] = alert
        known = {a.id: a for a in self.history}
        done = [known.get(a.id, a) for a in latest.values() if a.state == "resolved"]
        others = [a for a in self.history if a.tenant != tenant]
        self.history = [*others, *sorted(done, key=lambda a: a.updated_at)][-500:]

    async def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        watches = await self.watches()
        for tenant in sorted({w.tenant for w in watches}):
            try:
                await self.restore(tenant, now=now)
            except Exception as exc:
                log.warning("alerts not restored from the store: %s", type(exc).__name__)
        for watch in watches:
            for metric in self.metrics:
                await self._observe(watch, metric, now)
        self.ticks += 1

    def _query(self, metric: MetricQuery, service: str) -> str:
        return metric.query.replace("$service", service)

    async def _observe(self, watch: Watch, metric: MetricQuery, now: float) -> None:
        key = (watch.tenant, watch.service, metric.name)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series(make_detector(metric))
        query = self._query(metric, watch.service)
        try:
            if not series.warmed:
                await self._warm(series, query, metric, now)
            value = await self.prometheus.instant(query)
        except PrometheusError as exc:
            log.warning("metric not read: %s", exc)
            return
        if value is None:
            return
        det = series.detector.update(value)
        series.points += 1
        series.last = {
            "value": value,
            "score": det.score,
            "severity": det.severity.name,
            "time": now,
        }
        await self._judge(key, series, metric, det, value, now)

    async def _warm(self, series: _Series, query: str, metric: MetricQuery, now: float) -> None:
        span = metric.points * self.interval
        points = await self.prometheus.history(query, start=now - span, end=now, step=self.interval)
        for _, v in points[-metric.points :]:
            series.detector.update(v)
            series.points += 1
        series.warmed = True

    async def _judge(
        self,
        key: tuple[str, str, str],
        series: _Series,
        metric: MetricQuery,
        det: Detection,
        value: float,
        now: float,
    ) -> None:
        alert = self.open.get(key)
        change, series.normal_streak = alert_step(
            metric,
            det,
            is_open=alert is not None,
            streak=series.normal_streak,
            resolve_after=self.resolve_after,
        )
        severity = det.severity
        if change == "opened":
            self.open[key] = alert = Alert(
                id=uuid.uuid4().hex[:12],
                tenant=key[0],
                service=key[1],
                metric=key[2],
                severity=max(severity, Severity.WARNING).name,
                state="open",
                value=value,
                score=det.score,
                opened_at=now,
                updated_at=now,
                evidence=dict(det.evidence),
            )
            await self._tell("opened", alert)
        elif alert is None or change == "normal":
            return
        elif change == "abnormal":
            if severity > Severity[alert.severity]:
                alert.severity, alert.value, alert.score, alert.updated_at = (
                    severity.name,
                    value,
                    det.score,
                    now,
                )
                await self._tell("escalated", alert)
            elif not alert.escalated and now - alert.opened_at >= self.escalate_after:
                alert.escalated = True
                await self._tell("escalated", alert)
        else:  # resolved
            alert.state, alert.resolved_at, alert.updated_at = "resolved", now, now
            del self.open[key]
            self.history = [*self.history[-499:], alert]
            await self._tell("resolved", alert)

    async def _tell(self, change: str, alert: Alert) -> None:
        body = {"change": change, "alert": asdict(alert)}
        log.info(
            "alert %s",
            change,
            extra={
                "fields": {
                    "service": alert.service,
                    "metric": alert.metric,
                    "severity": alert.severity,
                }
            },
        )
        row = EventRow(
            tenant=alert.tenant,
            topic=ALERT_TOPIC,
            ts=utc(alert.updated_at),
            event_id=uuid.uuid4().hex,
            seq=None,
            payload=json.dumps(body),
        )
        try:
            await self.store.add_events([row])
        except Exception:
            log.exception("alert not recorded")
        for url in self.webhooks:
            try:
                await self.http.post(url, json=body, timeout=5)
            except httpx.HTTPError as exc:
                log.warning("alert webhook failed: %s", type(exc).__name__)

    async def detect(
        self, watch: Watch, *, now: float, span: float = 3600.0
    ) -> list[dict[str, Any]]:
        """On demand: each metric's last ``span`` seconds scored by its detector (streamed from
        a window of history before them, as the live series warms up), plus live state."""
        out = []
        for metric in self.metrics:
            query = self._query(metric, watch.service)
            step = max(self.interval, span / 240)
            start = now - span - metric.points * step
            points = await self.prometheus.history(query, start=start, end=now, step=step)
            det = make_detector(metric, min_history=min(metric.warmup, max(5, len(points) // 2)))
            severities: list[Severity] = []
            anomalies: list[dict[str, Any]] = []
            for t, v in points:
                d = det.update(v)
                if t > now - span:
                    severities.append(d.severity)
                    if opens(metric, d):
                        anomalies.append(
                            {"time": utc(t).isoformat(), "value": v, "severity": d.severity.name}
                        )
            key = (watch.tenant, watch.service, metric.name)
            live, alert = self.series.get(key), self.open.get(key)
            out.append(
                {
                    "metric": metric.name,
                    "points": len(severities),
                    "severity": (severities[-1] if severities else Severity.INFO).name,
                    "worst": max(severities, default=Severity.INFO).name,
                    "anomalies": anomalies[-20:],
                    "live": live.last if live else None,
                    "open_alert": asdict(alert) if alert else None,
                }
            )
        return out
