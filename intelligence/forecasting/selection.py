"""Automatic model choice by rolling-origin backtest, with the backtest's errors as evidence.

`AutoForecaster` resamples the history once, then for each candidate model refits on the
history up to each of the last few origins and forecasts the next `horizon` steps (the data
after the origin is never seen). The model with the lowest mean MASE is refitted on all the
history. With too little history to backtest it falls back to the simplest model and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

from intelligence.forecasting.base import DAY, WEEK, FloatArray, Forecast, NotFittedError
from intelligence.forecasting.holtwinters import HoltWinters
from intelligence.forecasting.metrics import mape, mase, naive_scale, smape
from intelligence.forecasting.naive import SeasonalNaive
from intelligence.forecasting.resampling import RegularSeries, relevel, resample, season_steps
from intelligence.forecasting.ridge import RidgeSeasonal

__all__ = [
    "AutoForecaster",
    "BacktestScore",
    "SeriesForecaster",
    "backtest",
    "default_candidates",
]


class SeriesForecaster(Protocol):
    """A forecaster that can also fit on an already regular series (all models here can)."""

    name: str
    notes: tuple[str, ...]

    def fit_series(self, series: RegularSeries) -> Self:
        """Fit on a regular series."""
        ...

    def predict(self, horizon: int) -> Forecast:
        """Forecast `horizon` steps after the series."""
        ...


Factory = Callable[[], SeriesForecaster]


@dataclass(frozen=True)
class BacktestScore:
    """Errors of one model over a rolling-origin backtest (percentages for MAPE / sMAPE)."""

    model: str
    mape: float
    smape: float
    mase: float
    coverage: float
    origins: int
    horizon: int
    notes: tuple[str, ...] = field(default=())


def backtest(
    factories: Sequence[Factory],
    raw: RegularSeries,
    *,
    horizon: int,
    origins: int,
    period: int,
    adjust_level_shift: bool = True,
) -> list[BacktestScore]:
    """Rolling-origin backtest of each model on the last `origins` windows of `raw`.

    Origins are `horizon` apart, so test windows do not overlap. At each origin every model
    sees only the history before it (re-levelled on that history alone). Errors are pooled
    over all windows and counted only at observed points (never against interpolated gaps);
    MASE is scaled per window by the seasonal naive error of its history.
    """
    k = len(factories)
    actual: list[FloatArray] = []
    predicted: list[list[FloatArray]] = [[] for _ in range(k)]
    scaled: list[list[float]] = [[] for _ in range(k)]
    inside = [0] * k
    notes: list[tuple[str, ...]] = [() for _ in range(k)]
    names = [""] * k
    for i in range(origins, 0, -1):
        cut = raw.n - i * horizon
        observed = ~raw.filled[cut : cut + horizon]
        if not observed.any():
            continue  # the whole window was interpolated: nothing real to score against
        head = raw.head(cut)
        if adjust_level_shift:
            head = relevel(head, period_steps=period)
        truth = raw.values[cut : cut + horizon][observed]
        actual.append(truth)
        scale = naive_scale(head.values, period=period)
        for j, factory in enumerate(factories):
            model = factory().fit_series(head)
            fc = model.predict(horizon)
            point = fc.point[observed]
            predicted[j].append(point)
            scaled[j].append(mase(truth, point, scale=scale))
            lower, upper = fc.lower[observed], fc.upper[observed]
            inside[j] += int(np.sum((truth >= lower) & (truth <= upper)))
            notes[j], names[j] = model.notes, model.name
    if not actual:
        nan = float("nan")
        return [
            BacktestScore(f().name, nan, nan, nan, nan, 0, horizon, ("no observed window",))
            for f in factories
        ]
    a = np.concatenate(actual)
    scores = []
    for j in range(k):
        p = np.concatenate(predicted[j])
        scores.append(
            BacktestScore(
                model=names[j],
                mape=mape(a, p),
                smape=smape(a, p),
                mase=float(np.mean(scaled[j])),
                coverage=inside[j] / a.size,
                origins=len(actual),
                horizon=horizon,
                notes=notes[j],
            )
        )
    return scores


def default_candidates(*, periods: Sequence[float], step: float, level: float) -> list[Factory]:
    """Seasonal naive, Holt-Winters and Ridge, configured for `periods` (seconds)."""
    main = periods[0] if periods else DAY
    harmonics = tuple(8 if i == 0 else 4 for i in range(len(periods)))
    return [
        lambda: SeasonalNaive(period=main, step=step, level=level),
        lambda: HoltWinters(period=main, step=step, level=level),
        lambda: RidgeSeasonal(periods=tuple(periods), harmonics=harmonics, step=step, level=level),
    ]


class AutoForecaster:
    """Picks the candidate with the lowest rolling-origin MASE and forecasts with it.

    After `fit`, `scores` holds every candidate's backtest, `chosen` the winner's, and
    `notes` explains the choice and any fallback, in words.
    """

    name = "auto"

    def __init__(
        self,
        *,
        periods: Sequence[float] = (DAY, WEEK),
        step: float | None = None,
        horizon: int = 60,
        origins: int = 3,
        level: float = 0.8,
        candidates: Sequence[Factory] | None = None,
    ) -> None:
        """`horizon` steps per backtest window, `origins` windows; `level` of the intervals."""
        self.periods = tuple(periods)
        self.step = step
        self.horizon = horizon
        self.origins = origins
        self.level = level
        self._candidates = candidates
        self.scores: tuple[BacktestScore, ...] = ()
        self.chosen: BacktestScore | None = None
        self.notes: tuple[str, ...] = ()
        self._model: SeriesForecaster | None = None

    def fit(self, timestamps: npt.ArrayLike, values: npt.ArrayLike) -> Self:
        """Resample, backtest every candidate, refit the best on all the history."""
        return self.fit_series(resample(timestamps, values, step=self.step))

    def fit_series(self, raw: RegularSeries) -> Self:
        """Like `fit`, on an already regular (not yet re-levelled) series."""
        period = season_steps(raw.step, self.periods[0]) if self.periods else 1
        factories = self._candidates or default_candidates(
            periods=self.periods, step=raw.step, level=self.level
        )
        notes: list[str] = []
        horizon = max(1, min(self.horizon, raw.n // 4))
        min_train = max(8, min(2 * period, raw.n // 2))
        origins = min(self.origins, max(0, (raw.n - min_train) // horizon))
        scores: list[BacktestScore] = []
        if origins >= 1:
            scores = backtest(factories, raw, horizon=horizon, origins=origins, period=period)
            finite = [s for s in scores if np.isfinite(s.mase)]
            best = min(finite, key=lambda s: s.mase) if finite else scores[0]
            winner = factories[scores.index(best)]
            ranking = ", ".join(f"{s.model} {s.mase:.2f}" for s in scores)
            notes.append(
                f"chose {best.model} by backtest MASE over {origins}x{horizon} steps ({ranking})"
            )
            self.chosen = best
        else:
            winner = factories[0]
            self.chosen = None
            notes.append(
                f"short history: {raw.n} points is too short to backtest; "
                "using the first candidate (seasonal naive) without a measured error"
            )
        self.scores = tuple(scores)
        model = winner().fit_series(relevel(raw, period_steps=period))
        self._model = model
        self.notes = (*notes, *model.notes)
        return self

    def predict(self, horizon: int) -> Forecast:
        """Forecast with the chosen model; its notes include the choice and the scores."""
        if self._model is None:
            raise NotFittedError("fit before predict")
        fc = self._model.predict(horizon)
        return Forecast(
            start=fc.start,
            step=fc.step,
            point=fc.point,
            lower=fc.lower,
            upper=fc.upper,
            level=fc.level,
            model=fc.model,
            notes=self.notes,
        )
