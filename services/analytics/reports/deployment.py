"""The deployment report: the tenant's Rollouts created in the period (read from the cluster
through the ``apis`` models), with their strategy, phase, step and analysis verdicts."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from services.analytics.reports.model import Chart, Period, Report, Table
from services.analytics.reports.sources import Sources

__all__ = ["build"]

COLUMNS = (
    "created",
    "rollout",
    "service",
    "image",
    "strategy",
    "phase",
    "step",
    "failed_runs",
    "message",
)
MESSAGE = 60


def _created(p: Any) -> dt.datetime | None:
    stamp = (p.raw.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return None
    return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).astimezone(dt.UTC)


def _short(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= MESSAGE else text[: MESSAGE - 3] + "..."


def _row(created: dt.datetime, p: Any) -> tuple[str, ...]:
    if p.obj is None:
        return (created.strftime("%Y-%m-%d %H:%M:%S"), p.name, "", "", "", "Invalid", "", "", "")
    spec, st = p.obj.spec, p.obj.status
    strategy = next(
        (k for k, v in spec.strategy.model_dump(by_alias=True).items() if v is not None), ""
    )
    return (
        created.strftime("%Y-%m-%d %H:%M:%S"),
        p.name,
        spec.target_ref.name,
        spec.image,
        strategy,
        str(st.phase) if st is not None and st.phase else "Pending",
        "" if st is None or st.current_step_index is None else str(st.current_step_index),
        str(st.failed_runs or 0) if st is not None else "0",
        _short(st.message if st is not None else ""),
    )


async def build(sources: Sources, tenant: str, period: Period, now: dt.datetime) -> Report:
    rollouts, why = await sources.objects("rollouts", tenant)
    dated = [(_created(p), p) for p in rollouts]
    rows = sorted(_row(at, p) for at, p in dated if at is not None and period.holds(at))
    phases = Counter(r[5] for r in rows)
    chart = Chart(
        "Rollouts by phase",
        "bar",
        sorted(phases),
        {"rollouts": [float(phases[p]) for p in sorted(phases)]},
        unit="count",
    )
    return Report(
        kind="deployment",
        title="Deployment report",
        tenant=tenant,
        period=period,
        generated=now,
        table=Table(COLUMNS, rows),
        summary=[
            ("Rollouts", str(len(rows))),
            *((f"Phase {p}", str(n)) for p, n in sorted(phases.items())),
        ],
        charts=[chart] if rows else [],
        notes=[why] if why else [],
    )
