"""Due-time computation and the missed-run policies, on instants given by the test (the
scheduler's clock is injected; nothing here waits)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from services.analytics.schedules.timing import (
    Plan,
    Policy,
    check_cron,
    check_timezone,
    next_due,
    plan,
)

pytestmark = pytest.mark.unit

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
GRACE = dt.timedelta(seconds=60)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


@pytest.mark.parametrize(
    "expr", ["* * * * * *", "61 * * * *", "every hour", "", "* * *", "0 0 30 2 *"]
)
def test_check_cron_refuses_what_is_not_five_valid_fields_or_never_due(expr: str) -> None:
    with pytest.raises(ValueError, match=r"expected five cron fields|never due"):
        check_cron(expr)


def test_check_cron_accepts_fields_and_aliases_normalising_spaces() -> None:
    assert check_cron(" */15  9-17 * *  mon-fri ") == "*/15 9-17 * * mon-fri"
    assert check_cron("@hourly") == "@hourly"


def test_check_timezone_names_what_it_expected() -> None:
    assert check_timezone("Europe/Berlin") == BERLIN
    for bad in ("Mars/Olympus", "../etc/passwd", ""):
        with pytest.raises(ValueError, match="IANA time zone"):
            check_timezone(bad)


def test_due_times_follow_the_local_clock_across_dst() -> None:
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC after the March change
    before = next_due("0 9 * * *", BERLIN, at("2026-03-28T10:00:00+00:00"))
    after = next_due("0 9 * * *", BERLIN, before)
    assert before == at("2026-03-29T07:00:00+00:00")
    assert after == at("2026-03-30T07:00:00+00:00")
    assert next_due("0 9 * * *", BERLIN, at("2026-03-27T00:00:00+00:00")) == at(
        "2026-03-27T08:00:00+00:00"
    )


def _plan(policy: Policy, last: str, now: str, cron: str = "0 * * * *") -> Plan | None:
    return plan(cron=cron, zone=UTC, policy=policy, last=at(last), now=at(now), grace=GRACE)


@pytest.mark.parametrize("policy", ["skip", "catchUpOnce"])
def test_nothing_is_due_before_the_next_due_time(policy: Policy) -> None:
    assert _plan(policy, "2026-01-01T10:00:00+00:00", "2026-01-01T10:59:59+00:00") is None
    # a due time already claimed is not planned again
    assert _plan(policy, "2026-01-01T11:00:00+00:00", "2026-01-01T11:00:30+00:00") is None


@pytest.mark.parametrize("policy", ["skip", "catchUpOnce"])
def test_a_tick_at_the_due_time_runs_it(policy: Policy) -> None:
    p = _plan(policy, "2026-01-01T10:00:00+00:00", "2026-01-01T11:00:00+00:00")
    assert p is not None
    assert (p.due, p.run, p.missed, p.late_seconds) == (
        at("2026-01-01T11:00:00+00:00"),
        True,
        0,
        0.0,
    )


def test_skip_runs_the_latest_due_time_within_grace_and_misses_the_earlier_ones() -> None:
    # down from 10:00 to 13:00:30: 11:00 and 12:00 are missed, 13:00 is 30 s late (in grace)
    p = _plan("skip", "2026-01-01T10:00:00+00:00", "2026-01-01T13:00:30+00:00")
    assert p is not None
    assert (p.due, p.run, p.missed) == (at("2026-01-01T13:00:00+00:00"), True, 2)


def test_skip_runs_nothing_when_the_latest_due_time_is_past_grace() -> None:
    p = _plan("skip", "2026-01-01T10:00:00+00:00", "2026-01-01T13:20:00+00:00")
    assert p is not None
    assert (p.due, p.run, p.missed) == (at("2026-01-01T13:00:00+00:00"), False, 3)
    assert p.late_seconds == 20 * 60


def test_catch_up_once_runs_the_latest_missed_due_time_once_however_late() -> None:
    p = _plan("catchUpOnce", "2026-01-01T10:00:00+00:00", "2026-01-02T09:59:00+00:00")
    assert p is not None
    # 11:00 .. 09:00 next day: 23 due times, one run (the latest), 22 missed
    assert (p.due, p.run, p.missed) == (at("2026-01-02T09:00:00+00:00"), True, 22)


def test_the_missed_count_is_capped() -> None:
    p = _plan("catchUpOnce", "2020-01-01T00:00:00+00:00", "2026-01-01T00:00:30+00:00", "* * * * *")
    assert p is not None
    assert p.run
    assert p.missed == 1000
