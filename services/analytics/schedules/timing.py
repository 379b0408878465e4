"""When a schedule is due, and what its missed-run policy does about late ticks.

Pure: cron expressions (croniter, five fields or an ``@alias``) read in the schedule's IANA
time zone, so ``0 9 * * *`` in ``Europe/Berlin`` stays 09:00 local across DST. No I/O and no
clock: every function takes the instants it reasons about.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

__all__ = ["POLICIES", "Plan", "Policy", "check_cron", "check_timezone", "next_due", "plan"]

Policy = Literal["skip", "catchUpOnce"]
POLICIES: tuple[str, ...] = ("skip", "catchUpOnce")
MISSED_COUNT_CAP = 1000
"""Missed due times are counted up to this many (a schedule down for a year stays cheap)."""
_SECOND = dt.timedelta(seconds=1)


def check_timezone(name: str) -> ZoneInfo:
    """The zone named ``name``; ValueError when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"expected an IANA time zone such as Europe/Berlin, got {name!r}") from exc


def check_cron(expr: str, zone: ZoneInfo | None = None) -> str:
    """``expr`` normalised; ValueError when it is not five cron fields or an alias, or it is
    never due (``0 0 30 2 *``)."""
    expr = " ".join(expr.split())
    fields = expr.split(" ")
    if not (expr.startswith("@") or len(fields) == 5) or not croniter.is_valid(expr):
        raise ValueError(f"expected five cron fields (m h dom mon dow) or an @alias, got {expr!r}")
    start = dt.datetime(2000, 1, 1, tzinfo=zone or dt.UTC)
    try:
        croniter(expr, start).get_next(dt.datetime)
    except CroniterBadDateError as exc:
        raise ValueError(f"{expr!r} is never due") from exc
    return expr


def next_due(expr: str, zone: ZoneInfo, after: dt.datetime) -> dt.datetime:
    """The first due time strictly after ``after`` (aware, UTC)."""
    out: dt.datetime = croniter(expr, after.astimezone(zone)).get_next(dt.datetime)
    return out.astimezone(dt.UTC)


def _latest_due(expr: str, zone: ZoneInfo, at: dt.datetime) -> dt.datetime:
    """The last due time at or before ``at``: due times fall on whole seconds, so the last one
    strictly before the next whole second after ``at``."""
    edge = at.astimezone(zone).replace(microsecond=0) + _SECOND
    out: dt.datetime = croniter(expr, edge).get_prev(dt.datetime)
    return out.astimezone(dt.UTC)


@dataclass(frozen=True)
class Plan:
    """What a tick does: claim ``due`` (the latest due time reached), run it or not, and how
    many earlier due times were passed over without a run."""

    due: dt.datetime
    run: bool
    missed: int
    late_seconds: float


def plan(
    *,
    cron: str,
    zone: ZoneInfo,
    policy: Policy,
    last: dt.datetime,
    now: dt.datetime,
    grace: dt.timedelta,
) -> Plan | None:
    """The tick's plan given the last due time claimed (or the schedule's creation), or None
    when nothing is due. Either policy runs at most once per tick and claims only the latest
    due time: earlier ones are missed. ``skip`` runs it only when it is at most ``grace`` late
    (a replica that was down does not run stale work); ``catchUpOnce`` runs it however late."""
    first = next_due(cron, zone, last)
    if first > now:
        return None
    latest = _latest_due(cron, zone, now)
    late = (now - latest).total_seconds()
    run = policy == "catchUpOnce" or late <= grace.total_seconds()
    earlier, t = 0, first
    while t < latest and earlier < MISSED_COUNT_CAP:
        earlier += 1
        t = next_due(cron, zone, t)
    return Plan(due=latest, run=run, missed=earlier + (0 if run else 1), late_seconds=late)
