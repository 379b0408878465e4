"""Pure: what a report is (tables, charts, notes for a tenant and a period), and the
validation of what a caller asks for (kind, format, period), each error naming its parameter.

A report has one main table, the rows its CSV holds and its PDF prints; charts and notes go
to the PDF only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "FORMATS",
    "KINDS",
    "MAX_DAYS",
    "Chart",
    "Period",
    "Report",
    "ReportError",
    "Table",
    "parse_format",
    "parse_kind",
    "parse_period",
]

KINDS = ("cost", "scaling", "anomaly", "deployment")
FORMATS = ("csv", "pdf")
MAX_DAYS = 92
DEFAULT_DAYS = 7


class ReportError(ValueError):
    """A bad request for a report; ``parameter`` is the one to fix."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC."""

    start: dt.datetime
    end: dt.datetime

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def holds(self, at: dt.datetime) -> bool:
        return self.start <= at < self.end

    def label(self) -> str:
        return f"{_stamp(self.start)} to {_stamp(self.end)}"


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    """Cells already formatted: the CSV and the PDF print the same text."""


@dataclass(frozen=True)
class Chart:
    title: str
    kind: Literal["bar", "line"]
    categories: list[str]
    """The x axis: one label per point."""
    series: dict[str, list[float]]
    """Name -> one value per category."""
    unit: str = ""


@dataclass(frozen=True)
class Report:
    kind: str
    title: str
    tenant: str
    period: Period
    generated: dt.datetime
    table: Table
    summary: list[tuple[str, str]] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def filename(self, fmt: str) -> str:
        day = "%Y%m%d"
        return (
            f"{self.kind}-report-{self.tenant}-{self.period.start.strftime(day)}-"
            f"{self.period.end.strftime(day)}.{fmt}"
        )


def parse_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ReportError("kind", f"expected one of {', '.join(KINDS)}, got {kind[:40]!r}")
    return kind


def parse_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ReportError("format", f"expected one of {', '.join(FORMATS)}, got {fmt[:40]!r}")
    return fmt


def _instant(parameter: str, text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(
            parameter, f"expected an ISO 8601 date or time (2026-03-01T00:00Z), got {text[:40]!r}"
        ) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def parse_period(start: str | None, end: str | None, *, now: dt.datetime) -> Period:
    """``from`` and ``to`` (ISO 8601; no zone = UTC). ``to`` defaults to now and ``from`` to
    seven days before ``to``; the period is at most :data:`MAX_DAYS` days."""
    stop = _instant("to", end) if end else now
    begin = _instant("from", start) if start else stop - dt.timedelta(days=DEFAULT_DAYS)
    if begin >= stop:
        raise ReportError(
            "from", f"expected a time before to ({_stamp(stop)}), got {_stamp(begin)}"
        )
    if stop - begin > dt.timedelta(days=MAX_DAYS):
        raise ReportError("from", f"expected a period of at most {MAX_DAYS} days")
    return Period(begin, stop)


def _stamp(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")
