"""Seasonal naive forecaster: tomorrow looks like today. The baseline every model must beat."""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from intelligence.forecasting.base import (
    DAY,
    FloatArray,
    Forecast,
    NotFittedError,
    horizon_quantiles,
)
from intelligence.forecasting.resampling import RegularSeries, prepare, season_steps

__all__ = ["SeasonalNaive"]


class SeasonalNaive:
    """Repeats the last full season; with less than one season of history, the last value.

    Its interval widens with every season crossed (the error of repeating a season k times
    grows like sqrt(k)).
    """

    name = "seasonal_naive"

    def __init__(
        self, *, period: float = DAY, step: float | None = None, level: float = 0.8
    ) -> None:
        """`period` is the season in seconds; `step` the grid (default: median spacing)."""
        self.period = period
        self.step = step
        self.level = level
        self._series: RegularSeries | None = None
        self._m = 1
        self.notes: tuple[str, ...] = ()

    def fit(self, timestamps: npt.ArrayLike, values: npt.ArrayLike) -> Self:
        """Resample the history (see `resampling.prepare`) and remember it."""
        return self.fit_series(prepare(timestamps, values, step=self.step, period=self.period))

    def fit_series(self, series: RegularSeries) -> Self:
        """Fit on an already regular series."""
        m = season_steps(series.step, self.period)
        notes = list(series.notes)
        if series.n < m + 1:
            notes.append(
                f"short history: {series.n} points < one season ({m}); repeating the last value"
            )
            m = 1
        self._series, self._m, self.notes = series, m, tuple(notes)
        return self

    def predict(self, horizon: int) -> Forecast:
        """Repeat the last season for `horizon` steps."""
        if self._series is None:
            raise NotFittedError("fit before predict")
        y, m = self._series.values, self._m
        steps = np.arange(horizon)
        point = y[y.size - m + (steps % m)].astype(np.float64)
        resid: FloatArray = y[m:] - y[:-m] if y.size > m else np.zeros(0)
        spread = np.sqrt(steps // m + 1.0)
        lo, hi = horizon_quantiles(resid, spread=spread, level=self.level)
        return Forecast(
            start=self._series.end + self._series.step,
            step=self._series.step,
            point=point,
            lower=point + lo,
            upper=point + hi,
            level=self.level,
            model=self.name,
            notes=self.notes,
        )
