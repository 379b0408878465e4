"""Ensemble: several detectors voting on the same series.

Each member's score is mapped onto a common level scale (1 = its WARNING threshold, 2 =
CRITICAL, 3 = EMERGENCY, linear in between; see :meth:`Thresholds.level`). The ensemble's score
at a point is the ``min_votes``-th highest member level, so its severity is the worst severity
that at least ``min_votes`` members agree on. ``min_votes=1`` is "any detector"; 2 or more trades
sensitivity for fewer false alarms.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from intelligence.anomaly.base import (
    AnomalyDetector,
    Detection,
    DetectionResult,
    Thresholds,
)

__all__ = ["Ensemble"]

LEVELS = Thresholds(1.0, 2.0, 3.0)


class Ensemble:
    """Combines member detectors by votes on a common severity-level scale."""

    name = "ensemble"

    def __init__(self, members: Sequence[AnomalyDetector], *, min_votes: int = 1) -> None:
        """Combine ``members``; ``min_votes`` members must agree on a severity to report it."""
        if not members:
            raise ValueError("an ensemble needs members")
        if not 1 <= min_votes <= len(members):
            raise ValueError("min_votes must be between 1 and the number of members")
        self.members = list(members)
        self.min_votes = min_votes

    @property
    def thresholds(self) -> Thresholds:
        """The ensemble's score is a level: 1 / 2 / 3 are WARNING / CRITICAL / EMERGENCY."""
        return LEVELS

    def reset(self) -> None:
        """Reset every member."""
        for m in self.members:
            m.reset()

    def _combine(self, levels: list[float]) -> float:
        return sorted(levels, reverse=True)[self.min_votes - 1]

    def update(self, value: ArrayLike) -> Detection:
        """Feed the value to every member and combine their verdicts."""
        detections = [m.update(value) for m in self.members]
        levels = [
            m.thresholds.level(d.score) for m, d in zip(self.members, detections, strict=True)
        ]
        s = self._combine(levels)
        evidence = {f"{m.name}.level": lv for m, lv in zip(self.members, levels, strict=True)}
        return Detection(score=s, severity=LEVELS.classify(s), evidence=evidence)

    def score(self, values: ArrayLike) -> DetectionResult:
        """Score a series with every member (batch) and combine them point by point."""
        results = [copy.deepcopy(m).score(values) for m in self.members]
        levels = np.vstack(
            [
                np.array([m.thresholds.level(float(s)) for s in r.scores])
                for m, r in zip(self.members, results, strict=True)
            ]
        )
        combined = -np.sort(-levels, axis=0)[self.min_votes - 1]
        return DetectionResult(
            detector=self.name,
            scores=combined,
            severities=LEVELS.classify_many(combined),
            thresholds=LEVELS,
        )

    def member_results(self, values: ArrayLike) -> dict[str, DetectionResult]:
        """Each member's own batch result, for evidence."""
        return {m.name: m.score(values) for m in self.members}
