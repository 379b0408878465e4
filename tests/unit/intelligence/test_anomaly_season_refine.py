"""A trusted seasonal period may grow into a multiple of itself (``season_refine_gain``)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from intelligence.anomaly import TailProbabilityDetector
from intelligence.anomaly.season import SeasonSearch
from intelligence.anomaly.tail_probability import FeatureOptions

DAY = 24
WEEK = 7 * DAY


def weekly(n: int, *, seed: int = 0) -> NDArray[np.float64]:
    """Hourly load: a daily cycle, weekends at a third of the weekday level, mild noise."""
    t = np.arange(n)
    day = 1.0 + np.sin(2 * np.pi * t / DAY)
    weekday = np.where((t // DAY) % 7 < 5, 1.0, 0.35)
    noise = np.random.default_rng(seed).normal(0.0, 0.05, n)
    return np.asarray(10.0 * day * weekday + noise, dtype=np.float64)


def search(*, refine_gain: float | None) -> SeasonSearch:
    return SeasonSearch(
        horizon=8 * WEEK, every=DAY, min_acf=0.5, min_cycles=4, refine_gain=refine_gain
    )


def periods_seen(s: SeasonSearch, x: NDArray[np.float64]) -> list[int]:
    seen: list[int] = []
    for v in x:
        if s.update(float(v)):
            assert s.period is not None
            seen.append(s.period)
    return seen


def test_the_weekly_cycle_replaces_the_daily_one_once_four_weeks_are_held() -> None:
    s = search(refine_gain=0.5)
    seen = periods_seen(s, weekly(8 * WEEK))
    assert seen[0] == DAY  # the first cycle a short history can trust
    assert seen[-1] == WEEK
    assert s.history().size == 8 * WEEK  # the search goes on, so its points stay (bounded)


def test_without_refinement_the_first_period_is_kept() -> None:
    s = search(refine_gain=None)
    assert periods_seen(s, weekly(8 * WEEK)) == [DAY]
    s.release()
    assert s.history().size <= 1


def test_a_multiple_that_explains_little_more_does_not_replace_the_period() -> None:
    # a pure daily cycle: every multiple of the day is as strong a peak as the day itself
    t = np.arange(8 * WEEK)
    x = 10.0 * np.sin(2 * np.pi * t / DAY) + np.random.default_rng(3).normal(0.0, 0.5, t.size)
    strict = search(refine_gain=0.5)
    assert periods_seen(strict, x) == [DAY]
    assert strict.period == DAY


def test_refine_gain_is_checked() -> None:
    with pytest.raises(ValueError, match="refine_gain"):
        search(refine_gain=1.0)
    with pytest.raises(ValueError, match="season_refine_gain"):
        FeatureOptions(season_refine_gain=-0.1)


def test_the_detector_compares_with_the_same_day_a_week_before() -> None:
    """A weekday that looks like a weekend (a holiday) is seasonal news only against last week:
    against the day before it is what every Saturday and Monday look like."""
    x = weekly(10 * WEEK)
    holiday = slice(9 * WEEK + 2 * DAY, 9 * WEEK + 3 * DAY)  # a Wednesday
    x[holiday] *= 0.35
    refined, on_holiday = _seasonal_during(FeatureOptions(season_refine_gain=0.5), x, holiday)
    daily, on_holiday_daily = _seasonal_during(FeatureOptions(), x, holiday)
    assert refined.period == WEEK
    assert daily.period == DAY
    assert max(on_holiday) >= 3.0
    assert max(on_holiday) > max(on_holiday_daily) + 1.0


def _seasonal_during(
    opts: FeatureOptions, x: NDArray[np.float64], span: slice
) -> tuple[TailProbabilityDetector, list[float]]:
    """The detector after ``x[:span.stop]`` and its seasonal surprises over ``span``."""
    det = TailProbabilityDetector(window=3 * DAY, season_horizon=8 * WEEK, options=opts)
    out = [det.update(float(v)).evidence["seasonal_surprise"] for v in x[: span.stop]]
    return det, out[span.start :]


def test_refinement_keeps_the_detector_causal_and_its_state_bounded() -> None:
    x = weekly(12 * WEEK, seed=5)
    opts = FeatureOptions(season_refine_gain=0.5)
    make = lambda: TailProbabilityDetector(  # noqa: E731
        window=3 * DAY, season_horizon=8 * WEEK, options=opts
    )
    full = make().score(x).scores
    short = make().score(x[: 9 * WEEK]).scores
    np.testing.assert_array_equal(short, full[: 9 * WEEK])
    det = make()
    for v in x:
        det.update(float(v))
    assert det.state_size()["season_search"] == 8 * WEEK
