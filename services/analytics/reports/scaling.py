"""The scaling report: each service's instances over the period (from the sampled usage:
instance-seconds per hour / 3600 is the hour's mean instance count) next to its ScalingPolicy
(bounds, mode, the controller's desired count now)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from services.analytics.records import UsageHour
from services.analytics.reports.model import Chart, Period, Report, Table
from services.analytics.reports.sources import Sources, bucket_label, bucket_of, buckets, number

__all__ = ["build"]

COLUMNS = (
    "service",
    "instance_hours",
    "mean_instances",
    "peak_instances",
    "vcpu_hours",
    "policy",
    "mode",
    "min_max",
    "desired_now",
)
TOP = 6


def _policy_cells(policy: Any) -> tuple[str, ...]:
    if policy is None or policy.obj is None:
        return ("", "", "", "")
    spec, st = policy.obj.spec, policy.obj.status
    desired = st.desired_instances if st is not None else None
    return (
        policy.name,
        str(spec.mode),
        f"{spec.min_instances}-{spec.max_instances}",
        "" if desired is None else str(desired),
    )


def _rows(hours: list[UsageHour], policies: list[Any]) -> list[tuple[str, ...]]:
    per: dict[str, list[UsageHour]] = defaultdict(list)
    for h in hours:
        per[h.service].append(h)
    by_target = {p.obj.spec.target_ref.name: p for p in policies if p.obj is not None}
    rows = []
    for service in sorted(set(per) | set(by_target)):
        own = per.get(service, [])
        means = [h.instance_seconds / 3600 for h in own]
        usage = (
            number(sum(means)),
            number(sum(means) / len(means)) if means else "",
            number(max(means)) if means else "",
            number(sum(h.vcpu_seconds for h in own) / 3600),
        )
        rows.append((service, *usage, *_policy_cells(by_target.get(service))))
    return rows


def _chart(hours: list[UsageHour], rows: list[tuple[str, ...]], period: Period) -> Chart:
    step, xs = buckets(period)
    sums: dict[str, dict[dt.datetime, float]] = defaultdict(lambda: defaultdict(float))
    for h in hours:
        sums[h.service][bucket_of(h.hour, step)] += h.instance_seconds / 3600
    span = step.total_seconds() / 3600
    top = sorted(rows, key=lambda r: -float(r[1]))[:TOP]
    names = [r[0] for r in top if r[0] in sums]
    return Chart(
        f"Mean instances per {'day' if step.days else 'hour'}",
        "line",
        [bucket_label(x, step) for x in xs],
        {s: [sums[s].get(x, 0.0) / span for x in xs] for s in names},
        unit="instances",
    )


async def build(sources: Sources, tenant: str, period: Period, now: dt.datetime) -> Report:
    hours = await sources.usage(tenant, period)
    policies, why = await sources.objects("policies", tenant)
    rows = _rows(hours, policies)
    chart = _chart(hours, rows, period)
    total = sum(h.instance_seconds for h in hours) / 3600
    return Report(
        kind="scaling",
        title="Scaling report",
        tenant=tenant,
        period=period,
        generated=now,
        table=Table(COLUMNS, rows),
        summary=[
            ("Instance-hours", number(total)),
            ("Services", str(len(rows))),
            ("ScalingPolicies", str(len(policies))),
        ],
        charts=[chart] if chart.series else [],
        notes=[why] if why else [],
    )
