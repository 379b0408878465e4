"""The forecasting contract: the `Forecaster` protocol and the `Forecast` it returns.

Every model in this package fits on `(timestamps, values)` (seconds since the epoch, any
spacing) and predicts a number of steps ahead on its own regular grid, with a point forecast
and a central prediction interval. Pure: no I/O, no clock reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

__all__ = [
    "DAY",
    "WEEK",
    "FloatArray",
    "Forecast",
    "Forecaster",
    "NotFittedError",
    "horizon_quantiles",
]

FloatArray = npt.NDArray[np.float64]

DAY = 86_400.0
WEEK = 7 * DAY


class NotFittedError(RuntimeError):
    """Raised when `predict` is called before `fit`."""


@dataclass(frozen=True)
class Forecast:
    """A forecast on a regular grid: `point[i]` is the value expected at `start + i * step`.

    `lower` / `upper` bound a central interval of probability `level` (0.8 means the 10 % and
    90 % quantiles). `notes` says, in words, what the model had to give up (short history,
    filled gaps, a level shift it corrected for) so a status message can explain itself.
    """

    start: float
    step: float
    point: FloatArray
    lower: FloatArray
    upper: FloatArray
    level: float
    model: str
    notes: tuple[str, ...] = field(default=())

    @property
    def timestamps(self) -> FloatArray:
        """Seconds since the epoch of every forecast step."""
        return self.start + self.step * np.arange(self.point.size, dtype=np.float64)

    @property
    def horizon(self) -> int:
        """Number of forecast steps."""
        return int(self.point.size)


@runtime_checkable
class Forecaster(Protocol):
    """A model that learns from a series and predicts it forward with an interval."""

    name: str

    def fit(self, timestamps: npt.ArrayLike, values: npt.ArrayLike) -> Self:
        """Learn from `values` observed at `timestamps` (seconds, any spacing, gaps allowed)."""
        ...

    def predict(self, horizon: int) -> Forecast:
        """Forecast `horizon` steps after the last observation, with a prediction interval."""
        ...


def horizon_quantiles(
    residuals: FloatArray, *, spread: FloatArray, level: float
) -> tuple[FloatArray, FloatArray]:
    """Lower and upper offsets of a central `level` interval, per forecast step.

    `residuals` are one-step errors (actual - predicted) of the model on its own history;
    `spread[h]` is how many times wider the error at step h is than at one step (for instance
    sqrt(h) for a random walk). Uses the empirical residual quantiles when there are enough
    residuals (so skewed load errors give a skewed interval), a normal quantile otherwise.
    """
    alpha = (1.0 - level) / 2.0
    finite = residuals[np.isfinite(residuals)]
    if finite.size >= 30:
        centre = float(np.median(finite))
        lo = float(np.quantile(finite, alpha)) - centre
        hi = float(np.quantile(finite, 1.0 - alpha)) - centre
    else:
        sigma = float(np.std(finite)) if finite.size >= 2 else 0.0
        z = float(ndtri(1.0 - alpha))
        lo, hi = -z * sigma, z * sigma
    return lo * spread, hi * spread
