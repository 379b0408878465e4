"""Ridge regression on trend, Fourier seasonal terms (daily, weekly) and recent lags.

Linear in its features, so it fits 20k points in milliseconds, and the lags let it follow
the last few minutes (a ramp, a burst) that pure seasonal models miss. Forecasts are
recursive: each predicted step feeds the lags of the next. Seasonal terms and seasonal lags
are used only when history covers two full periods; the model says which it dropped.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from intelligence.forecasting.base import (
    DAY,
    WEEK,
    FloatArray,
    Forecast,
    NotFittedError,
    horizon_quantiles,
)
from intelligence.forecasting.resampling import RegularSeries, prepare, season_steps

__all__ = ["RidgeSeasonal"]


class RidgeSeasonal:
    """Ridge regression: y_t ~ trend + sum_k Fourier_k(t) + y_{t-1..p} + y_{t-m} per period."""

    name = "ridge"

    def __init__(
        self,
        *,
        periods: tuple[float, ...] = (DAY, WEEK),
        harmonics: tuple[int, ...] = (8, 4),
        lags: int = 3,
        seasonal_lags: bool = True,
        penalty: float = 1.0,
        step: float | None = None,
        level: float = 0.8,
    ) -> None:
        """`periods` in seconds, each with its number of Fourier `harmonics`; `lags` recent
        values; `seasonal_lags` adds y one period ago; `penalty` is the ridge lambda on
        standardised features."""
        if len(harmonics) != len(periods):
            raise ValueError("one harmonics count per period")
        self.periods = periods
        self.harmonics = harmonics
        self.lags = lags
        self.seasonal_lags = seasonal_lags
        self.penalty = penalty
        self.step = step
        self.level = level
        self.notes: tuple[str, ...] = ()
        self._series: RegularSeries | None = None
        self._fourier: list[tuple[int, int]] = []  # (period steps, harmonics) in use
        self._lag_list: list[int] = []
        self._coef: FloatArray = np.zeros(0)
        self._mean_x: FloatArray = np.zeros(0)
        self._scale_x: FloatArray = np.zeros(0)
        self._mean_y = 0.0
        self._resid: FloatArray = np.zeros(0)
        self._n_trend = 1.0

    def fit(self, timestamps: npt.ArrayLike, values: npt.ArrayLike) -> Self:
        """Resample and re-level the history, then fit (see `fit_series`)."""
        main = self.periods[0] if self.periods else None
        return self.fit_series(prepare(timestamps, values, step=self.step, period=main))

    def _design(
        self, t_idx: FloatArray, history: FloatArray, rows: npt.NDArray[np.int64]
    ) -> FloatArray:
        n_cols = 1 + sum(2 * k for _, k in self._fourier) + len(self._lag_list)
        x = np.empty((t_idx.size, n_cols), dtype=np.float64, order="F")  # columns contiguous
        x[:, 0] = t_idx / self._n_trend
        col = 1
        for m, k in self._fourier:
            # harmonics by complex recurrence: one exp per period instead of 2k sin/cos
            base = np.exp(1j * (2.0 * np.pi / m) * t_idx)
            z = base.copy()
            for _ in range(k):
                x[:, col] = z.imag
                x[:, col + 1] = z.real
                col += 2
                z *= base
        for lag in self._lag_list:
            x[:, col] = history[rows - lag]
            col += 1
        return x

    def fit_series(self, series: RegularSeries) -> Self:
        """Fit on an already regular series."""
        y = series.values
        n = y.size
        notes = list(series.notes)
        self._fourier, self._lag_list = [], []
        seasonal_lag: list[int] = []
        for period, k in zip(self.periods, self.harmonics, strict=True):
            m = season_steps(series.step, period)
            if m < 2:
                continue
            if n >= 2 * m:
                self._fourier.append((m, min(k, m // 2)))
                if self.seasonal_lags and n >= 3 * m:
                    seasonal_lag.append(m)
            else:
                notes.append(
                    f"short history: {n} points < two periods of {period:.0f}s; "
                    "no seasonal terms for that period"
                )
        p = min(self.lags, max(0, n // 4))
        self._lag_list = list(range(1, p + 1)) + seasonal_lag
        start = max(self._lag_list, default=0)
        if n - start < 8:
            notes.append(f"short history: {n} points; forecasting the last value")
            self._fourier, self._lag_list, start = [], [], 0
        self._n_trend = float(max(n, 1))
        rows = np.arange(start, n, dtype=np.int64)
        if rows.size < 8:
            self._coef = np.zeros(0)
            self._mean_y = float(y[-1]) if n else 0.0
            self._resid = np.diff(y) if n > 1 else np.zeros(0)
        else:
            x = self._design(rows.astype(np.float64), y, rows)
            self._mean_x = x.mean(axis=0)
            x -= self._mean_x  # centred in place; standardised through the Gram matrix below
            cross = x.T @ x
            sd = np.sqrt(np.maximum(np.diag(cross), 0.0) / rows.size)
            self._scale_x = np.where(sd > 0, sd, 1.0)
            inv = 1.0 / self._scale_x
            target = y[rows]
            self._mean_y = float(target.mean())
            centred = target - self._mean_y
            # (X D^-1)^T (X D^-1) + lambda I on standardised features, without forming X D^-1
            gram = cross * np.outer(inv, inv) + self.penalty * np.eye(inv.size)
            self._coef = np.asarray(np.linalg.solve(gram, (x.T @ centred) * inv), dtype=np.float64)
            self._resid = centred - x @ (self._coef * inv)
        self._series = series
        self.notes = tuple(notes)
        return self

    def _lag_coefficients(self) -> dict[int, float]:
        k0 = 1 + sum(2 * k for _, k in self._fourier)
        raw = self._coef[k0:] / self._scale_x[k0:] if self._coef.size else np.zeros(0)
        return {lag: float(c) for lag, c in zip(self._lag_list, raw, strict=True)}

    def predict(self, horizon: int) -> Forecast:
        """Recursive forecast of `horizon` steps with an interval from the AR error growth."""
        series = self._series
        if series is None:
            raise NotFittedError("fit before predict")
        n = series.n
        if self._coef.size == 0:
            point = np.full(horizon, self._mean_y)
            spread = np.sqrt(np.arange(1, horizon + 1, dtype=np.float64))
        else:
            buf = np.concatenate([series.values, np.zeros(horizon)])
            future = np.arange(n, n + horizon, dtype=np.int64)
            x_fixed = self._design(future.astype(np.float64), buf, future)
            k0 = 1 + sum(2 * k for _, k in self._fourier)
            base = (x_fixed[:, :k0] - self._mean_x[:k0]) / self._scale_x[:k0] @ self._coef[:k0]
            lag_coef = self._lag_coefficients()
            lag_const = float(np.sum(self._mean_x[k0:] / self._scale_x[k0:] * self._coef[k0:]))
            for i in range(horizon):
                t = n + i
                acc = self._mean_y + float(base[i]) - lag_const
                for lag, c in lag_coef.items():
                    acc += c * buf[t - lag]
                buf[t] = acc
            point = buf[n:].copy()
            psi = np.zeros(horizon)
            psi[0] = 1.0
            for j in range(1, horizon):
                psi[j] = sum(c * psi[j - lag] for lag, c in lag_coef.items() if lag <= j)
            spread = np.sqrt(np.cumsum(psi**2))
        lo, hi = horizon_quantiles(self._resid, spread=spread, level=self.level)
        return Forecast(
            start=series.end + series.step,
            step=series.step,
            point=point,
            lower=point + lo,
            upper=point + hi,
            level=self.level,
            model=self.name,
            notes=self.notes,
        )
