"""Pure arithmetic behind the statistics route: ISO weeks and per-week counts. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

__all__ = ["week_counts", "week_start", "weeks_window"]


def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def weeks_window(*, as_of: date, weeks: int) -> tuple[datetime, datetime]:
    """[start, end) in UTC covering ``weeks`` ISO weeks, the last one containing ``as_of``."""
    first = week_start(as_of) - timedelta(weeks=weeks - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return start, start + timedelta(weeks=weeks)


def week_counts(stamps: Iterable[datetime], *, as_of: date, weeks: int) -> list[tuple[date, int]]:
    """(Monday, count) for each of the ``weeks`` weeks ending with ``as_of``'s, zeros included."""
    start, end = weeks_window(as_of=as_of, weeks=weeks)
    counts = {(start + timedelta(weeks=i)).date(): 0 for i in range(weeks)}
    for stamp in stamps:
        stamp = stamp.astimezone(UTC)
        if start <= stamp < end:
            counts[week_start(stamp.date())] += 1
    return sorted(counts.items())
