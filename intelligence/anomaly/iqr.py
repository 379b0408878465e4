"""Interquartile-range detector: Tukey's fences on a trailing window.

The score is how far a point lies outside ``[Q1, Q3]`` of the trailing ``window`` points, in
IQRs; Tukey's classic fences (1.5 IQR "outlier", 3 IQR "far out") are the default WARNING and
CRITICAL levels.
"""

from __future__ import annotations

from intelligence.anomaly._streaming import UnivariateDetector
from intelligence.anomaly._windows import SortedWindow
from intelligence.anomaly.base import Direction, Thresholds

__all__ = ["IQRDetector"]


class IQRDetector(UnivariateDetector):
    """Distance outside the trailing interquartile range, in IQRs."""

    name = "iqr"

    def __init__(
        self,
        *,
        window: int = 120,
        min_history: int = 20,
        direction: Direction = "both",
        thresholds: Thresholds | None = None,
        season: int | None = None,
        min_iqr: float = 1e-9,
    ) -> None:
        """Configure the detector.

        Args:
            window: trailing points used for the quartiles.
            min_history: points needed before any score (earlier points score NaN).
            direction: which side counts (``up`` scores only points above Q3).
            thresholds: severities in IQRs outside the box (default 1.5 / 3 / 6).
            season: optional seasonal differencing lag, in points.
            min_iqr: floor of the IQR for flat series.
        """
        super().__init__(thresholds=thresholds or Thresholds(1.5, 3.0, 6.0), season=season)
        if min_history < 4 or window < min_history:
            raise ValueError("need 4 <= min_history <= window")
        self.window = window
        self.min_history = min_history
        self.direction: Direction = direction
        self.min_iqr = min_iqr
        self._hist = SortedWindow(window)  # kept sorted: quartiles in O(log n) a point

    def _absorb(self, x: float) -> None:
        self._hist.append(x)

    def _reset_state(self) -> None:
        self._hist.clear()

    def _score_point(self, x: float) -> tuple[float, dict[str, float]]:
        hist = self._hist
        if len(hist) < self.min_history:
            hist.append(x)
            return float("nan"), {"warming_up": 1.0}
        q1, q3 = hist.quantile(0.25), hist.quantile(0.75)
        iqr = max(q3 - q1, self.min_iqr)
        above = max(x - q3, 0.0) / iqr
        below = max(q1 - x, 0.0) / iqr
        if self.direction == "up":
            s = above
        elif self.direction == "down":
            s = below
        else:
            s = max(above, below)
        self._hist.append(x)
        return s, {"value": x, "q1": q1, "q3": q3, "iqr": iqr}
