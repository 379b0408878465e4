"""Report generation as one plain function: what a route answers with and what a scheduled
workflow step can call (``generate_report(parts, kind=..., tenant=..., ...)``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.analytics.reports import anomaly, cost, deployment, scaling
from services.analytics.reports.model import Period, Report, parse_format, parse_kind
from services.analytics.reports.pdf import render_pdf
from services.analytics.reports.sources import Sources
from services.analytics.reports.tabular import render_csv

__all__ = ["MEDIA_TYPES", "ReportFile", "build_report", "generate_report", "render"]

Builder = Callable[[Sources, str, Period, dt.datetime], Awaitable[Report]]
BUILDERS: dict[str, Builder] = {
    "cost": cost.build,
    "scaling": scaling.build,
    "anomaly": anomaly.build,
    "deployment": deployment.build,
}
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@dataclass(frozen=True)
class ReportFile:
    filename: str
    media_type: str
    content: bytes


async def build_report(
    sources: Sources, *, kind: str, tenant: str, period: Period, now: dt.datetime | None = None
) -> Report:
    """The report's data; ``kind`` is checked (:class:`ReportError` naming it)."""
    builder = BUILDERS[parse_kind(kind)]
    return await builder(sources, tenant, period, now or dt.datetime.now(dt.UTC))


def render(report: Report, fmt: str) -> ReportFile:
    fmt = parse_format(fmt)
    content = render_pdf(report) if fmt == "pdf" else render_csv(report)
    return ReportFile(report.filename(fmt), MEDIA_TYPES[fmt], content)


async def generate_report(
    parts: Any, *, kind: str, tenant: str, period: Period, fmt: str = "pdf"
) -> ReportFile:
    """A report of the service's data (``parts``: :class:`services.analytics.deps.Analytics`)
    as a file; a bad kind or format raises :class:`ReportError` before anything is read."""
    parse_format(fmt)
    report = await build_report(Sources.of(parts), kind=kind, tenant=tenant, period=period)
    return render(report, fmt)
