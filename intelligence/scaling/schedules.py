"""Cron schedules that raise the instance floor for a while after each match.

The cron expression is parsed once, by croniter, when the schedule is built (a bad expression
fails there, naming itself); `active(now)` only searches back from `now`, which is passed in
(no clock reads).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = ["CronSchedule"]

_EQUAL_RANGE = re.compile(r"^(\w+)-\1(?:/\d+)?$")


def _single_values(expression: str) -> str:
    """`5-5` (or `5-5/2`) -> `5` in every field: croniter reads an equal range as the whole
    cycle (`Jan-Jan`: every month), cron and this module as the one value."""
    return " ".join(
        ",".join(_EQUAL_RANGE.sub(r"\1", part) for part in field.split(","))
        for field in expression.split()
    )


@dataclass(frozen=True)
class CronSchedule:
    """Raise the minimum to `min_instances` for `duration_seconds` after each cron match.

    `cron` has the five classic fields (minute hour day-of-month month day-of-week; `*`,
    lists, ranges and `/step`, plus croniter's names such as `MON`; Sunday is 0 or 7; when both
    day fields are restricted a day matches either, as in Vixie cron), read as wall-clock time
    in `tz` (a `datetime.tzinfo`, e.g. `zoneinfo.ZoneInfo("Europe/London")`, so daylight
    saving time moves the window with the clock). `name` labels the schedule in decisions
    (the expression when empty).
    """

    cron: str
    duration_seconds: float
    min_instances: int
    name: str = ""
    tz: tzinfo = UTC
    _parsed: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Parse the expression once; reject one that is malformed or can never match."""
        if len(self.cron.split()) != 5:
            raise ValueError(
                "cron needs 5 fields (minute hour day-of-month month day-of-week), "
                f"got {self.cron!r}"
            )
        epoch = datetime.fromtimestamp(0, tz=self.tz)
        try:
            parsed = croniter(_single_values(self.cron), epoch)
            copy.copy(parsed).get_next(float)
        except CroniterBadDateError as exc:
            raise ValueError(f"cron {self.cron!r} never matches") from exc
        except CroniterError as exc:
            raise ValueError(f"cron {self.cron!r} is not valid: {exc}") from exc
        object.__setattr__(self, "_parsed", parsed)

    def last_match(self, now: float) -> float:
        """The latest cron match at or before `now` (seconds since the epoch)."""
        # matches fall on whole minutes: the latest one before the next minute is <= now
        start = datetime.fromtimestamp((math.floor(now / 60.0) + 1) * 60.0, tz=self.tz)
        search = copy.copy(self._parsed)  # shares the parsed fields; the cursor is its own
        return float(search.get_prev(float, start_time=start))

    def active(self, now: float) -> bool:
        """True when a cron match happened in (now - duration, now]."""
        return self.last_match(now) > now - self.duration_seconds
