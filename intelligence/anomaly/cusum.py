"""Change-point detector: Page's two-sided CUSUM on robustly standardised values.

Each value is standardised against a reference (median / MAD of the trailing ``window`` points
that end ``lag`` points before it), then accumulated::

    S+[t] = max(0, S+[t-1] + z[t] - drift)      S-[t] = max(0, S-[t-1] - z[t] - drift)

A sustained shift of the mean (a level shift or a slow drift) makes one sum grow linearly while
isolated noise keeps both near zero. The score is the sum that counts for ``direction``, in
robust sigmas; the default WARNING level 8 with ``drift`` 0.5 is the textbook choice
(k = 0.5) with h = 8 rather than 5, because the reference is estimated from a short window;
the in-control run length is then thousands of points.
"""

from __future__ import annotations

import numpy as np

from intelligence.anomaly._streaming import UnivariateDetector
from intelligence.anomaly.base import Direction, RingBuffer, Thresholds, median_mad

__all__ = ["CusumDetector"]

MAD_TO_SIGMA = 1.4826


class CusumDetector(UnivariateDetector):
    """Two-sided CUSUM in robust sigmas against a trailing (optionally lagged) reference."""

    name = "cusum"

    def __init__(
        self,
        *,
        window: int = 120,
        lag: int = 0,
        min_history: int = 30,
        drift: float = 0.5,
        direction: Direction = "both",
        thresholds: Thresholds | None = None,
        season: int | None = None,
        min_scale: float = 1e-9,
        relative_min_scale: float = 1e-3,
        clip: float = 10.0,
    ) -> None:
        """Configure the detector.

        Args:
            window: points in the reference window.
            lag: points between the end of the reference window and the scored point; a lag
                keeps a slow drift from leaking into its own reference.
            min_history: reference points needed before any score (earlier points score NaN).
            drift: the allowance ``k`` subtracted per step, in sigmas.
            direction: ``up`` scores only S+, ``down`` only S-, ``both`` the larger.
            thresholds: severities in accumulated sigmas (default 8 / 16 / 32).
            season: optional seasonal differencing lag, in points.
            min_scale: absolute floor of the reference scale.
            relative_min_scale: floor of the scale relative to ``|median|``.
            clip: largest single-step contribution, so one spike cannot raise an alarm alone.
        """
        super().__init__(thresholds=thresholds or Thresholds(8.0, 16.0, 32.0), season=season)
        if min_history < 2 or window < min_history or lag < 0:
            raise ValueError("need 2 <= min_history <= window and lag >= 0")
        self.window = window
        self.lag = lag
        self.min_history = min_history
        self.drift = drift
        self.direction: Direction = direction
        self.min_scale = min_scale
        self.relative_min_scale = relative_min_scale
        self.clip = clip
        self._hist = RingBuffer(window + lag)
        self._pos = 0.0
        self._neg = 0.0

    def _absorb(self, x: float) -> None:
        self._hist.append(x)

    def _reset_state(self) -> None:
        self._hist.clear()
        self._pos = 0.0
        self._neg = 0.0

    def _score_point(self, x: float) -> tuple[float, dict[str, float]]:
        hist = self._hist.view()
        ref = hist[: hist.size - self.lag] if self.lag else hist
        if ref.size < self.min_history:
            self._hist.append(x)
            return float("nan"), {"warming_up": 1.0}
        med, mad = median_mad(ref)
        scale = max(MAD_TO_SIGMA * mad, self.min_scale, self.relative_min_scale * abs(med))
        z = float(np.clip((x - med) / scale, -self.clip, self.clip))
        self._pos = max(0.0, self._pos + z - self.drift)
        self._neg = max(0.0, self._neg - z - self.drift)
        self._hist.append(x)
        if self.direction == "up":
            s = self._pos
        elif self.direction == "down":
            s = self._neg
        else:
            s = max(self._pos, self._neg)
        return s, {"z": z, "s_pos": self._pos, "s_neg": self._neg, "median": med, "scale": scale}
