"""Fixed thresholds: the operator's own limits (an SLO), with an optional ``for`` duration.

The score is the value itself (negated for ``direction="down"``, so that larger is always
worse); severities come straight from the configured limits. Like a Prometheus alert's ``for:``
clause, ``for_points`` requires the limit to hold for that many consecutive points before the
severity is raised (the score is always reported).
"""

from __future__ import annotations

from typing import Literal

from intelligence.anomaly._streaming import UnivariateDetector
from intelligence.anomaly.base import Severity, Thresholds

__all__ = ["FixedThreshold"]


class FixedThreshold(UnivariateDetector):
    """Static limits on the raw value."""

    name = "threshold"

    def __init__(
        self,
        *,
        warning: float,
        critical: float,
        emergency: float,
        direction: Literal["up", "down"] = "up",
        for_points: int = 1,
    ) -> None:
        """Configure the limits, in the metric's own unit.

        For ``direction="down"`` give the limits as values (e.g. availability 0.99 / 0.95 / 0.9);
        they are negated internally so that a lower value is a worse one.
        """
        sign = -1.0 if direction == "down" else 1.0
        super().__init__(thresholds=Thresholds(sign * warning, sign * critical, sign * emergency))
        if for_points < 1:
            raise ValueError("for_points must be >= 1")
        self.direction = direction
        self.for_points = for_points
        self._sign = sign
        self._run = [0, 0, 0]

    def _reset_state(self) -> None:
        self._run = [0, 0, 0]

    def _score_point(self, x: float) -> tuple[float, dict[str, float]]:
        s = self._sign * x
        limits = (self.thresholds.warning, self.thresholds.critical, self.thresholds.emergency)
        self._run = [r + 1 if s >= lim else 0 for r, lim in zip(self._run, limits, strict=True)]
        return s, {"value": x}

    def _severity(self, score: float) -> Severity:
        """Severity from the limits that have held for ``for_points`` consecutive points."""
        return Severity(sum(r >= self.for_points for r in self._run))
