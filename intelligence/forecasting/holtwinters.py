"""Additive Holt-Winters (damped trend) with smoothing parameters chosen by forecast error.

The classic triple exponential smoothing that predictive autoscalers use. Parameters are
chosen from a small grid, all candidates filtered at once (vectorised over the grid), by the
sum of squared one-step and quarter-season-ahead errors. Long seasons are fitted on an
aggregated grid (at most `max_season` points per season) and the forecast is interpolated
back to the data's grid, which keeps fitting 14 days of 1-minute data fast. Without two
full seasons it becomes Holt's linear method and says so.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from intelligence.forecasting.base import (
    DAY,
    FloatArray,
    Forecast,
    NotFittedError,
    horizon_quantiles,
)
from intelligence.forecasting.resampling import RegularSeries, prepare, season_steps

__all__ = ["HoltWinters"]

_ALPHAS = (0.05, 0.15, 0.3, 0.5, 0.8)
_BETAS = (0.0, 0.01, 0.05)
_GAMMAS = (0.05, 0.2, 0.5)


def _filter(
    y: FloatArray,
    *,
    m: int,
    first: int,
    params: tuple[FloatArray, FloatArray, FloatArray, float],
    state: tuple[FloatArray, FloatArray, FloatArray],
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Run the Holt-Winters recursions over `y[first:]` for every parameter set at once.

    Returns the one-step errors and, after each step, the level, the trend and the seasonal
    value just updated (each `(steps, k)`); `state` (level `(k,)`, trend `(k,)`, season
    `(m, k)`) is updated in place to the end of the series. Works a block of at most one
    season at a time: inside a block no seasonal value is used after it is updated, so the
    (level, trend) recursion is a linear filter of `u = y - season` with the impulse
    response of its 2x2 transition matrix, and a block costs a few array operations instead
    of a few per step.
    """
    alpha, beta, gamma, phi = params
    lvl, trd, sea = state
    k = alpha.size
    steps = max(0, y.size - first)
    block = min(m, 96) if m >= 2 else 64
    block = max(1, min(block, steps))
    # (level, trend) -> (level, trend) after one step with input u: x' = F x + G u, where
    # base = c . x = level + phi * trend is the one-step forecast before the season.
    f = np.empty((k, 2, 2))
    f[:, 0, 0] = 1.0 - alpha
    f[:, 0, 1] = (1.0 - alpha) * phi
    f[:, 1, 0] = -beta
    f[:, 1, 1] = phi * (1.0 - beta)
    g = np.stack([alpha, beta], axis=1)
    reach = np.empty((block, k, 2))  # reach[i] = c F^i: how the state i steps back shows in base
    reach[0] = (1.0, phi)
    for i in range(1, block):
        reach[i] = np.einsum("kj,kji->ki", reach[i - 1], f)
    impulse = np.einsum("bkj,kj->kb", reach, g)  # impulse[:, d - 1]: input d steps back
    rows, cols = np.tril_indices(block, -1)
    toeplitz = np.zeros((k, block, block))
    toeplitz[:, rows, cols] = impulse[:, rows - cols - 1]
    errors = np.empty((steps, k))
    levels = np.empty((steps, k))
    trends = np.empty((steps, k))
    seasons = np.empty((steps, k))
    for start in range(0, steps, block):
        n = min(block, steps - start)
        t = first + start + np.arange(n)
        phase = t % m
        u = y[t][:, None] - sea[phase]
        x0 = np.stack([lvl, trd], axis=1)
        base = np.einsum("nkj,kj->nk", reach[:n], x0)
        base += np.matmul(toeplitz[:, :n, :n], u.T[:, :, None])[:, :, 0].T
        e = u - base
        out = slice(start, start + n)
        errors[out] = e
        levels[out] = base + alpha * e
        before = np.concatenate([lvl[None, :], levels[out][:-1]])  # level before each step
        trends[out] = (base - before) + beta * e  # phi * trend = base - level
        if m >= 2:
            sea[phase] += gamma * e
            seasons[out] = sea[phase]
        else:
            seasons[out] = sea[0]
        lvl, trd = levels[start + n - 1].copy(), trends[start + n - 1].copy()
    state[0][:] = lvl
    state[1][:] = trd
    return errors, levels, trends, seasons


class HoltWinters:
    """Additive Holt-Winters with a damped trend.

    Give `alpha`, `beta` and `gamma` to fix the smoothing parameters (as predictive HPA's
    configuration does); leave them None to choose them from a grid by forecast error.
    """

    name = "holt_winters"

    def __init__(
        self,
        *,
        period: float = DAY,
        step: float | None = None,
        level: float = 0.8,
        damping: float = 0.98,
        alpha: float | None = None,
        beta: float | None = None,
        gamma: float | None = None,
        max_season: int = 96,
    ) -> None:
        """See the class docstring; `period` and `step` are in seconds."""
        self.period = period
        self.step = step
        self.level = level
        self.damping = damping
        self.fixed = (alpha, beta, gamma)
        self.max_season = max_season
        self.notes: tuple[str, ...] = ()
        self.params: dict[str, float] = {}
        self._state: tuple[float, float, FloatArray] | None = None
        self._resid: FloatArray = np.zeros(0)
        self._series: RegularSeries | None = None
        self._factor = 1
        self._m = 1
        self._n_coarse = 0
        self._within = 0.0

    def fit(self, timestamps: npt.ArrayLike, values: npt.ArrayLike) -> Self:
        """Resample and re-level the history, then fit (see `fit_series`)."""
        return self.fit_series(prepare(timestamps, values, step=self.step, period=self.period))

    def fit_series(self, series: RegularSeries) -> Self:
        """Fit on an already regular series."""
        notes = list(series.notes)
        m_native = season_steps(series.step, self.period)
        factor = max(1, math.ceil(m_native / self.max_season))
        if series.n // factor < 2 * self.max_season:
            factor = 1  # under two coarse seasons: no season anyway, keep every point
        n_coarse = series.n // factor
        # aggregate the most recent points so the last coarse bin ends at the last observation
        y = series.values[series.n - n_coarse * factor :].reshape(n_coarse, factor).mean(axis=1)
        m = max(1, round(m_native / factor))
        if factor > 1:
            notes.append(f"fitted on a {factor}x coarser grid ({m} points per season)")
        if y.size < 2 * m or m < 2:
            if m >= 2:
                notes.append(
                    f"short history: {series.n} points < two seasons ({2 * m_native}); "
                    "no seasonal component (Holt's linear method)"
                )
            m = 1
        if y.size < 3:
            y = np.concatenate([np.full(3 - y.size, y[0] if y.size else 0.0), y])
        self._fit_coarse(y, m)
        if factor > 1:
            tail = series.values[series.n - n_coarse * factor :].reshape(n_coarse, factor)
            self._within = float(np.std(tail - tail.mean(axis=1, keepdims=True)))
        else:
            self._within = 0.0
        self._series, self._factor, self._m, self._n_coarse = series, factor, m, y.size
        self.notes = tuple(notes)
        return self

    def _grid(self, seasonal: bool) -> tuple[FloatArray, FloatArray, FloatArray]:
        a_fixed, b_fixed, g_fixed = self.fixed
        alphas = (a_fixed,) if a_fixed is not None else _ALPHAS
        betas = (b_fixed,) if b_fixed is not None else _BETAS
        gammas = (g_fixed,) if g_fixed is not None else (_GAMMAS if seasonal else (0.0,))
        if not seasonal:
            gammas = (0.0,)
        a, b, g = np.meshgrid(alphas, betas, gammas, indexing="ij")
        return a.ravel(), b.ravel(), g.ravel()

    def _fit_coarse(self, y: FloatArray, m: int) -> None:
        seasonal = m >= 2
        alpha, beta, gamma = self._grid(seasonal)
        k = alpha.size
        phi = self.damping
        if seasonal:
            level0 = float(y[:m].mean())
            trend0 = 0.0  # a trend must be learnt (beta > 0), never frozen from two points
            season0 = y[:m] - level0
            first = m
        else:
            level0 = float(y[0])
            trend0 = 0.0
            season0 = np.zeros(1)
            first = 1
        lvl = np.full(k, level0)
        trd = np.full(k, trend0)
        sea = np.tile(season0[:, None], (1, k))  # (m, k): one row per phase
        steps = y.size - first
        # the state after every step, so the `lead`-step-ahead errors are scored vectorised
        errors, levels, trends, seasons = _filter(
            y, m=m, first=first, params=(alpha, beta, gamma, phi), state=(lvl, trd, sea)
        )
        # Parameters are chosen on one-step AND `lead`-step errors: one-step error alone
        # favours a large alpha that chases noise and forecasts badly a few steps out.
        lead = max(2, m // 4) if seasonal else 4
        far_sse = np.zeros(k)
        if steps > lead:
            origin = np.arange(steps - lead)  # the step each `lead`-ahead forecast is made at
            # the seasonal value for phase (t + lead) % m as of step t: last updated m - lead
            # steps earlier (or at t itself when lead is a multiple of m), else still initial
            back = lead % m - m if lead % m else 0
            src = origin + back
            phase = (first + origin + lead) % m
            season_term = np.where(
                (src >= 0)[:, None], seasons[np.maximum(src, 0)], season0[phase][:, None]
            )
            damp_lead = float(np.sum(phi ** np.arange(1, lead + 1)))
            ahead = levels[origin] + damp_lead * trends[origin] + season_term
            far_sse = np.sum((y[first + origin + lead][:, None] - ahead) ** 2, axis=0)
        burn = min(errors.shape[0] // 4, m)
        sse = np.sum(errors[burn:] ** 2, axis=0) if errors.shape[0] > burn else np.zeros(k)
        sse = sse + far_sse
        best = int(np.argmin(sse))
        self.params = {
            "alpha": float(alpha[best]),
            "beta": float(beta[best]),
            "gamma": float(gamma[best]),
            "damping": phi,
        }
        self._state = (float(lvl[best]), float(trd[best]), sea[:, best].copy())
        self._resid = errors[burn:, best].copy()

    def predict(self, horizon: int) -> Forecast:
        """Forecast `horizon` steps of the data's grid after the last observation."""
        if self._state is None or self._series is None:
            raise NotFittedError("fit before predict")
        lvl, trd, sea = self._state
        f, m, phi = self._factor, self._m, self.damping
        coarse_h = math.ceil(horizon / f) + 1
        hs = np.arange(1, coarse_h + 1, dtype=np.float64)
        damp = np.cumsum(phi**hs)
        phase = (self._n_coarse - 1 + hs.astype(np.int64)) % m
        coarse = lvl + damp * trd + sea[phase]
        a, b, g = self.params["alpha"], self.params["beta"], self.params["gamma"]
        c = a + b * np.cumsum(phi ** hs[:-1]) if coarse_h > 1 else np.zeros(0)
        c = c + g * ((np.arange(1, coarse_h) % m) == 0)
        var = np.concatenate([[1.0], 1.0 + np.cumsum(c**2)])
        # coarse point i covers native offsets (i*f - f/2, i*f + f/2] after the last bin centre
        centre_offset = (f - 1) / 2.0  # native steps from the last coarse centre to the end
        native = np.arange(1, horizon + 1, dtype=np.float64)
        coarse_pos = np.concatenate([[0.0], hs * f]) - centre_offset
        last_fit = float(lvl)  # the level at the last coarse bin
        anchor = np.concatenate([[last_fit + sea[(self._n_coarse - 1) % m]], coarse])
        point = np.interp(native, coarse_pos, anchor)
        spread = np.sqrt(np.interp(native, hs * f, var))
        lo, hi = horizon_quantiles(self._resid, spread=spread, level=self.level)
        if self._within > 0:  # the coarse fit does not see variation inside a coarse bin
            z = float(ndtri(0.5 + self.level / 2.0)) * self._within
            lo, hi = -np.sqrt(lo**2 + z**2), np.sqrt(hi**2 + z**2)
        series = self._series
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
