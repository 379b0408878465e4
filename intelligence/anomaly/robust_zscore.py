"""Robust z-score: distance from the rolling median in units of the rolling MAD.

The median and the median absolute deviation (scaled by 1.4826 to estimate a normal sigma) of
the trailing ``window`` points (the current point excluded) are insensitive to the outliers they
are meant to find. A floor on the scale keeps flat series (MAD = 0) from producing infinite
scores on rounding noise.
"""

from __future__ import annotations

from intelligence.anomaly._streaming import UnivariateDetector
from intelligence.anomaly.base import (
    Direction,
    RingBuffer,
    Thresholds,
    median_mad,
    signed_deviation,
)

__all__ = ["RobustZScore"]

MAD_TO_SIGMA = 1.4826


class RobustZScore(UnivariateDetector):
    """Rolling median / MAD z-score, in robust sigmas."""

    name = "robust_zscore"

    def __init__(
        self,
        *,
        window: int = 120,
        min_history: int = 20,
        direction: Direction = "both",
        thresholds: Thresholds | None = None,
        season: int | None = None,
        min_scale: float = 1e-9,
        relative_min_scale: float = 1e-3,
    ) -> None:
        """Configure the detector.

        Args:
            window: trailing points used for the median and MAD.
            min_history: points needed before any score (earlier points score NaN).
            direction: which deviations count.
            thresholds: severities in robust sigmas (default 3.5 / 6 / 10).
            season: optional seasonal differencing lag, in points.
            min_scale: absolute floor of the scale.
            relative_min_scale: floor of the scale relative to ``|median|``.
        """
        super().__init__(thresholds=thresholds or Thresholds(3.5, 6.0, 10.0), season=season)
        if min_history < 2 or window < min_history:
            raise ValueError("need 2 <= min_history <= window")
        self.window = window
        self.min_history = min_history
        self.direction: Direction = direction
        self.min_scale = min_scale
        self.relative_min_scale = relative_min_scale
        self._hist = RingBuffer(window)

    def _absorb(self, x: float) -> None:
        self._hist.append(x)

    def _reset_state(self) -> None:
        self._hist.clear()

    def _score_point(self, x: float) -> tuple[float, dict[str, float]]:
        hist = self._hist.view()
        if hist.size < self.min_history:
            self._hist.append(x)
            return float("nan"), {"warming_up": 1.0}
        med, mad = median_mad(hist)
        scale = max(MAD_TO_SIGMA * mad, self.min_scale, self.relative_min_scale * abs(med))
        z = signed_deviation((x - med) / scale, self.direction)
        self._hist.append(x)
        return z, {"value": x, "median": med, "scale": scale}
