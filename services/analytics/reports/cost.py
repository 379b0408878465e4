"""The cost report: compute cost per service from usage (Cloud Run prices) and AI token cost
per provider and model (the router's ledger) over the period, with the cost service's
recommendations."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from services.analytics.costs import AI_SERVICE, CostReport, Costs, hourly_cost, recommendations
from services.analytics.reports.model import Chart, Period, Report, Table
from services.analytics.reports.sources import (
    Sources,
    bucket_label,
    bucket_of,
    buckets,
    money,
    number,
)

__all__ = ["AiCost", "build", "cost_series"]

COLUMNS = ("service", "cost_usd", "share_pct", "billed_hours", "peak_hour_usd")
TOP = 6


@dataclass(frozen=True)
class AiCost:
    provider: str
    model: str
    tokens: int
    cost_usd: float


async def _ai(sources: Sources, tenant: str, period: Period) -> list[AiCost]:
    """Each (provider, model)'s ledger accrued inside the period: accrued since the start
    minus accrued since the end (the ledger's counters only grow)."""
    store = sources.store
    later = {(r.provider, r.model): r for r in await store.ai_usage(tenant, since=period.end)}
    out = []
    for r in await store.ai_usage(tenant, since=period.start):
        end = later.get((r.provider, r.model))
        tokens = r.prompt_tokens + r.completion_tokens
        cost = r.cost_usd
        if end is not None:
            tokens -= end.prompt_tokens + end.completion_tokens
            cost -= end.cost_usd
        if tokens > 0 or cost > 0:
            out.append(AiCost(r.provider, r.model, max(0, tokens), max(0.0, cost)))
    return out


async def cost_series(
    sources: Sources, tenant: str, period: Period
) -> tuple[dict[str, dict[float, float]], list[AiCost]]:
    """service -> {hour: USD} inside the period, and the AI ledger's part."""
    series = hourly_cost(await sources.usage(tenant, period), sources.prices)
    return dict(series), await _ai(sources, tenant, period)


def _rows(series: dict[str, dict[float, float]], ai: list[AiCost]) -> list[tuple[str, ...]]:
    costs = [(s, sum(p.values()), len(p), max(p.values())) for s, p in series.items()]
    total = sum(c for _, c, _, _ in costs) + sum(r.cost_usd for r in ai)

    def share(c: float) -> str:
        return number(100 * c / total if total > 0 else 0.0)

    rows = [(s, money(c), share(c), str(n), money(peak)) for s, c, n, peak in costs]
    rows += [
        (f"{AI_SERVICE} {r.provider}/{r.model}", money(r.cost_usd), share(r.cost_usd), "", "")
        for r in ai
    ]
    return sorted(rows, key=lambda row: (-float(row[1]), row[0]))


def _charts(
    series: dict[str, dict[float, float]], rows: list[tuple[str, ...]], period: Period
) -> list[Chart]:
    top = rows[:TOP]
    bars = Chart(
        "Cost per service (USD)",
        "bar",
        [r[0] for r in top],
        {"cost": [float(r[1]) for r in top]},
        unit="USD",
    )
    step, xs = buckets(period)
    over: dict[str, dict[dt.datetime, float]] = defaultdict(lambda: defaultdict(float))
    for service, points in series.items():
        for ts, cost in points.items():
            over[service][bucket_of(dt.datetime.fromtimestamp(ts, dt.UTC), step)] += cost
    names = [r[0] for r in top if r[0] in over]
    line = Chart(
        f"Compute cost per {'day' if step.days else 'hour'} (USD)",
        "line",
        [bucket_label(x, step) for x in xs],
        {s: [over[s].get(x, 0.0) for x in xs] for s in names},
        unit="USD",
    )
    return [bars] + ([line] if names else [])


async def build(sources: Sources, tenant: str, period: Period, now: dt.datetime) -> Report:
    series, ai = await cost_series(sources, tenant, period)
    rows = _rows(series, ai)
    totals = {s: sum(p.values()) for s, p in series.items()}
    ai_total = sum(r.cost_usd for r in ai)
    if ai:
        totals[AI_SERVICE] = ai_total
    ai_view = [{"provider": r.provider, "model": r.model, "cost_usd": r.cost_usd} for r in ai]
    whole = CostReport(services=totals, ai=ai_view, series=series, window_hours=round(period.hours))
    notes = recommendations(whole, Costs.anomalies(whole))
    return Report(
        kind="cost",
        title="Cost report",
        tenant=tenant,
        period=period,
        generated=now,
        table=Table(COLUMNS, rows),
        summary=[
            ("Total (USD)", money(whole.total)),
            ("Compute (USD)", money(whole.total - ai_total)),
            ("AI tokens (USD)", money(ai_total)),
            ("Services", str(len(series))),
        ],
        charts=_charts(series, rows, period) if rows else [],
        notes=notes or ["No recommendations for this period."],
    )
