"""Forecasting models: accuracy on known seasonal series, short history, gaps, level shifts."""

from __future__ import annotations

import numpy as np
import pytest

from intelligence.forecasting import (
    DAY,
    AutoForecaster,
    Forecaster,
    HoltWinters,
    NotFittedError,
    RidgeSeasonal,
    SeasonalNaive,
    detect_level_shift,
    mape,
    mase,
    naive_scale,
    resample,
    smape,
)

STEP = 300.0  # 5 minutes
T0 = 1_700_000_000.0


def seasonal(days: float, *, noise: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(int(days * DAY / STEP)) * STEP
    y = 100 + 30 * np.sin(2 * np.pi * t / DAY) + 10 * np.cos(4 * np.pi * t / DAY)
    return t, y + rng.normal(0, noise, t.size)


def truth(t: np.ndarray) -> np.ndarray:
    return 100 + 30 * np.sin(2 * np.pi * t / DAY) + 10 * np.cos(4 * np.pi * t / DAY)


MODELS = [
    lambda: SeasonalNaive(period=DAY),
    lambda: HoltWinters(period=DAY),
    lambda: RidgeSeasonal(periods=(DAY,), harmonics=(6,)),
    lambda: AutoForecaster(periods=(DAY,), horizon=48),
]


@pytest.mark.parametrize("make", MODELS)
def test_known_seasonal_series_is_forecast_within_tolerance(make) -> None:
    t, y = seasonal(7)
    model = make()
    assert isinstance(model, Forecaster)
    fc = model.fit(t, y).predict(144)  # half a day ahead
    assert fc.start == pytest.approx(t[-1] + STEP)
    expected = truth(fc.timestamps)
    # noise sd is 2; repeating a noisy season costs about 2 * 0.8; the others do better
    assert np.mean(np.abs(fc.point - expected)) < 3.0
    assert np.all(fc.lower <= fc.point)
    assert np.all(fc.point <= fc.upper)
    noisy = expected + np.random.default_rng(1).normal(0, 2.0, expected.size)
    coverage = np.mean((noisy >= fc.lower) & (noisy <= fc.upper))
    assert 0.6 <= coverage <= 1.0  # an 80 % interval


def test_seasonal_naive_repeats_the_last_season_exactly() -> None:
    t, y = seasonal(3, noise=0.0)
    fc = SeasonalNaive(period=DAY).fit(t, y).predict(300)
    m = int(DAY / STEP)
    assert np.allclose(fc.point[:m], y[-m:])
    assert np.allclose(fc.point[m:300], y[-m : -m + 300 - m])


def test_models_refuse_to_predict_before_fit() -> None:
    for model in (SeasonalNaive(), HoltWinters(), RidgeSeasonal(), AutoForecaster()):
        with pytest.raises(NotFittedError):
            model.predict(3)


def test_short_history_falls_back_and_says_so() -> None:
    t, y = seasonal(0.25)  # six hours of a daily pattern
    naive = SeasonalNaive(period=DAY).fit(t, y)
    assert any("short history" in n for n in naive.notes)
    assert np.allclose(naive.predict(5).point, y[-1])
    hw = HoltWinters(period=DAY).fit(t, y)
    assert any("no seasonal component" in n for n in hw.notes)
    ridge = RidgeSeasonal(periods=(DAY,), harmonics=(6,)).fit(t, y)
    assert any("no seasonal terms" in n for n in ridge.notes)
    auto = AutoForecaster(periods=(DAY,)).fit(t[:6], y[:6])
    assert auto.chosen is None
    assert any("too short to backtest" in n for n in auto.predict(3).notes)


def test_irregular_and_gappy_samples_are_resampled_and_still_forecast() -> None:
    t, y = seasonal(7)
    rng = np.random.default_rng(3)
    keep = rng.random(t.size) > 0.3
    keep[(t > t[-1] - 1.5 * DAY) & (t < t[-1] - 1.4 * DAY)] = False  # a 2.4-hour outage
    jitter = rng.uniform(-40, 40, t.size)
    series = resample(t[keep] + jitter[keep], y[keep], step=STEP)
    assert series.step == STEP
    assert series.filled.sum() >= 20
    assert any("filled" in n for n in series.notes)
    fc = RidgeSeasonal(periods=(DAY,), harmonics=(6,), step=STEP).fit(t[keep], y[keep])
    out = fc.predict(144)
    assert np.mean(np.abs(out.point - truth(out.timestamps))) < 4.0


def test_resample_averages_duplicates_and_drops_nans() -> None:
    series = resample([0, 0, 60, 120, 120, 180], [1, 3, np.nan, 5, 7, 8], step=60)
    assert series.values.tolist() == [2.0, 4.0, 6.0, 8.0]
    assert series.filled.tolist() == [False, True, False, False]


def test_level_shift_is_detected_and_forecasts_follow_the_new_level() -> None:
    t, y = seasonal(6)
    shift_at = t.size - int(0.4 * DAY / STEP)
    y = y.copy()
    y[shift_at:] += 50
    m = int(DAY / STEP)
    found = detect_level_shift(y, period=m)
    assert found is not None
    assert abs(found.index - shift_at) <= 3
    assert found.delta == pytest.approx(50, abs=5)
    fc = SeasonalNaive(period=DAY).fit(t, y).predict(m)
    assert any("level shift" in n for n in fc.notes)
    assert np.mean(np.abs(fc.point - (truth(fc.timestamps) + 50))) < 5
    plain = SeasonalNaive(period=DAY)
    plain_series = resample(t, y)
    plain.fit_series(plain_series)  # no re-levelling
    assert np.mean(np.abs(plain.predict(m).point - (truth(fc.timestamps) + 50))) > 20


def test_no_level_shift_on_clean_seasonal_series_or_slow_drift() -> None:
    _t, y = seasonal(6, seed=5)
    assert detect_level_shift(y, period=int(DAY / STEP)) is None
    drift = y + np.linspace(0, 40, y.size)
    assert detect_level_shift(drift, period=int(DAY / STEP)) is None


def test_auto_forecaster_reports_backtest_errors_and_beats_naive_on_trend() -> None:
    t, y = seasonal(8)
    y = y + np.linspace(0, 60, y.size)  # a trend repeating the last day cannot follow
    auto = AutoForecaster(periods=(DAY,), horizon=72, origins=3).fit(t, y)
    assert {s.model for s in auto.scores} == {"seasonal_naive", "holt_winters", "ridge"}
    assert auto.chosen is not None
    assert auto.chosen.model != "seasonal_naive"
    naive = next(s for s in auto.scores if s.model == "seasonal_naive")
    assert auto.chosen.mase < naive.mase
    assert all(np.isfinite([s.mape, s.smape, s.mase, s.coverage]).all() for s in auto.scores)
    assert "chose" in auto.notes[0]


def test_error_measures_on_known_values() -> None:
    a = np.array([100.0, 200.0, 0.0])
    p = np.array([110.0, 180.0, 0.0])
    assert mape(a, p) == pytest.approx(10.0)
    assert smape(a, p) == pytest.approx(100 * (20 / 210 + 40 / 380) / 3)
    hist = np.array([1.0, 2.0, 1.0, 2.0, 1.0])
    assert naive_scale(hist, period=2) == 0.0
    assert naive_scale(hist, period=1) == 1.0
    assert mase(a, p, scale=10.0) == pytest.approx(1.0)


def _reference_filter(y, *, m, first, params, state):
    """The Holt-Winters recursions one step at a time (what the block filter must equal)."""
    alpha, beta, gamma, phi = params
    lvl, trd, sea = (a.copy() for a in state)
    rows = []
    for t in range(first, y.size):
        j = t % m
        base = lvl + phi * trd
        e = y[t] - (base + sea[j])
        lvl, trd = base + alpha * e, phi * trd + beta * e
        sea[j] = sea[j] + gamma * e
        rows.append((e, lvl, trd, sea[j].copy()))
    return [np.array([r[i] for r in rows]) for i in range(4)], (lvl, trd, sea)


@pytest.mark.parametrize(
    ("n", "m", "phi"),
    [(700, 96, 1.0), (700, 96, 0.98), (250, 24, 0.9), (130, 1, 1.0), (9, 4, 1.0), (3, 1, 1.0)],
)
def test_holt_winters_block_filter_equals_the_step_by_step_recursions(n, m, phi) -> None:
    from intelligence.forecasting.holtwinters import _filter

    rng = np.random.default_rng(n + m)
    y = 50 + 10 * np.sin(np.arange(n) * 2 * np.pi / max(m, 2)) + rng.gamma(2.0, 3.0, n)
    grid = np.meshgrid((0.05, 0.5, 0.8), (0.0, 0.05), (0.05, 0.5) if m > 1 else (0.0,))
    alpha, beta, gamma = (g.ravel() for g in grid)
    k = alpha.size
    first = m if m > 1 else 1
    season0 = y[:m] - y[:m].mean() if m > 1 else np.zeros(1)
    start = (np.full(k, y[:first].mean()), np.zeros(k), np.tile(season0[:, None], (1, k)))
    expected, (lvl, trd, sea) = _reference_filter(
        y, m=m, first=first, params=(alpha, beta, gamma, phi), state=start
    )
    state = (start[0].copy(), start[1].copy(), start[2].copy())
    got = _filter(y, m=m, first=first, params=(alpha, beta, gamma, phi), state=state)
    for g, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(g.reshape(want.shape), want, rtol=1e-9, atol=1e-9)
    for g, want in zip(state, (lvl, trd, sea), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-9)
