"""Turns irregular, gappy observations into the regular grid every model fits on.

Metrics arrive late, twice, or not at all. Models here assume one value per `step`, so this
module bins observations onto a grid (mean per bin), fills empty bins by linear interpolation,
and says how much it had to invent. It also detects and removes the most recent level shift
(see `levelshift.py`) so seasonal models do not keep forecasting the old level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from intelligence.forecasting.base import FloatArray
from intelligence.forecasting.levelshift import LevelShift, detect_level_shift

__all__ = ["RegularSeries", "infer_step", "prepare", "relevel", "resample", "season_steps"]


@dataclass(frozen=True)
class RegularSeries:
    """Values on a regular grid: `values[i]` belongs to `start + i * step`."""

    start: float
    step: float
    values: FloatArray
    filled: npt.NDArray[np.bool_]
    notes: tuple[str, ...] = field(default=())
    level_shift: LevelShift | None = None

    @property
    def end(self) -> float:
        """Timestamp of the last grid point."""
        return self.start + self.step * (self.values.size - 1)

    @property
    def n(self) -> int:
        """Number of grid points."""
        return int(self.values.size)

    def head(self, n: int) -> RegularSeries:
        """The first `n` points, as a series of its own (for backtests)."""
        return RegularSeries(
            start=self.start,
            step=self.step,
            values=self.values[:n].copy(),
            filled=self.filled[:n].copy(),
            notes=self.notes,
            level_shift=None,
        )


def infer_step(timestamps: FloatArray) -> float:
    """The typical spacing of `timestamps`: the median of the positive differences."""
    t = np.unique(timestamps[np.isfinite(timestamps)])
    if t.size < 2:
        return 1.0
    return float(np.median(np.diff(t)))


def season_steps(step: float, period_seconds: float) -> int:
    """How many grid steps make up one seasonal period (rounded, at least 1)."""
    return max(1, round(period_seconds / step))


def resample(
    timestamps: npt.ArrayLike, values: npt.ArrayLike, *, step: float | None = None
) -> RegularSeries:
    """Bin `(timestamps, values)` onto a regular grid and fill the gaps.

    Observations are averaged per bin (a bin is centred on its grid point); NaN values are
    dropped; empty bins are linearly interpolated between their neighbours. The grid starts at
    the first finite observation. `step` defaults to the median spacing.
    """
    t = np.asarray(timestamps, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if t.size != v.size:
        raise ValueError(f"timestamps ({t.size}) and values ({v.size}) differ in length")
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    if t.size == 0:
        raise ValueError("no finite observations")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    dt = float(step) if step is not None else infer_step(t)
    if not dt > 0:
        raise ValueError(f"step must be positive, got {dt}")
    start = float(t[0])
    idx = np.rint((t - start) / dt).astype(np.int64)
    n = int(idx[-1]) + 1
    sums = np.bincount(idx, weights=v, minlength=n)
    counts = np.bincount(idx, minlength=n)
    have = counts > 0
    out = np.empty(n, dtype=np.float64)
    out[have] = sums[have] / counts[have]
    filled = ~have
    notes: list[str] = []
    if filled.any():
        grid = np.arange(n, dtype=np.float64)
        out[filled] = np.interp(grid[filled], grid[have], out[have])
        notes.append(f"filled {int(filled.sum())} of {n} grid points by interpolation")
    merged = int(have.sum()) < t.size
    if merged:
        notes.append(f"averaged {t.size} observations into {int(have.sum())} grid points")
    return RegularSeries(start=start, step=dt, values=out, filled=filled, notes=tuple(notes))


def prepare(
    timestamps: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    step: float | None = None,
    period: float | None = None,
    adjust_level_shift: bool = True,
) -> RegularSeries:
    """Resample, then (by default) re-level history before the most recent level shift.

    `period` (seconds) is the main seasonal period, removed before looking for a shift.
    """
    series = resample(timestamps, values, step=step)
    if not adjust_level_shift:
        return series
    m = season_steps(series.step, period) if period else 1
    return relevel(series, period_steps=m)


def relevel(series: RegularSeries, *, period_steps: int = 1) -> RegularSeries:
    """Move history before the most recent lasting level shift onto the new level.

    After a lasting shift (a deploy that halves the cost per request, traffic moved to another
    region), history before it is moved by the shift so every model keeps its seasonal shape
    but forecasts the new level. Returns `series` unchanged when there is no shift.
    """
    shift = detect_level_shift(series.values, period=period_steps)
    if shift is None:
        return series
    adjusted = series.values.copy()
    adjusted[: shift.index] += shift.delta
    when = series.start + series.step * shift.index
    note = f"level shift of {shift.delta:+.4g} at t={when:.0f}; earlier history re-levelled"
    return RegularSeries(
        start=series.start,
        step=series.step,
        values=adjusted,
        filled=series.filled,
        notes=(*series.notes, note),
        level_shift=shift,
    )
