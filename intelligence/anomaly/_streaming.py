"""The common machinery of univariate detectors: NaN handling, seasonal differencing, batch.

A concrete detector implements ``_score_point(x)`` on the (optionally seasonally differenced)
value and keeps whatever state it needs; this base turns that into the ``update`` / ``score`` /
``reset`` trio of :class:`~intelligence.anomaly.base.AnomalyDetector`. Batch scoring replays the
series through a fresh copy, so batch and streaming results are identical by construction.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod

import numpy as np
from numpy.typing import ArrayLike

from intelligence.anomaly.base import (
    Detection,
    DetectionResult,
    RingBuffer,
    Severity,
    Thresholds,
    as_series,
)

__all__ = ["UnivariateDetector"]


class UnivariateDetector(ABC):
    """Base class of the univariate streaming detectors.

    ``season`` (points), when given, makes the detector score ``x[t] - x[t - season]`` instead
    of ``x[t]``, which removes a known daily or weekly pattern before scoring.
    """

    name: str = "univariate"

    def __init__(self, *, thresholds: Thresholds, season: int | None = None) -> None:
        if season is not None and season < 1:
            raise ValueError("season must be >= 1")
        self._thresholds = thresholds
        self.season = season
        self._lagged = RingBuffer(season) if season else None

    @property
    def thresholds(self) -> Thresholds:
        """Score levels for WARNING / CRITICAL / EMERGENCY."""
        return self._thresholds

    @abstractmethod
    def _score_point(self, x: float) -> tuple[float, dict[str, float]]:
        """Score one finite (pre-processed) value and absorb it into the state."""

    @abstractmethod
    def _reset_state(self) -> None:
        """Forget the detector-specific history."""

    def _absorb(self, x: float) -> None:
        """Take a (pre-processed) value into the history without scoring it."""
        self._score_point(x)

    def prime(self, values: ArrayLike) -> None:
        """Learn from reference history without scoring it (e.g. the stable version's samples).

        NaNs are skipped. Cheaper than ``update`` because nothing is scored; detectors with a
        running statistic (CUSUM) start accumulating at the first ``update`` after priming.
        """
        for v in as_series(values):
            x = float(v)
            if not math.isfinite(x):
                continue
            if self._lagged is not None:
                buf = self._lagged
                full = len(buf) == buf.capacity
                lagged = float(buf.view()[0]) if full else float("nan")
                buf.append(x)
                if not full:
                    continue
                x = x - lagged
            self._absorb(x)

    def reset(self) -> None:
        """Forget all history."""
        if self._lagged is not None:
            self._lagged.clear()
        self._reset_state()

    def update(self, value: ArrayLike) -> Detection:
        """Consume the next observation; NaN scores NaN (INFO) and leaves the state unchanged."""
        x = value if type(value) is float else float(np.asarray(value, dtype=np.float64))
        if not math.isfinite(x):
            return Detection(score=float("nan"), severity=Severity.INFO, evidence={"nan": 1.0})
        if self._lagged is not None:
            buf = self._lagged
            full = len(buf) == buf.capacity
            lagged = float(buf.view()[0]) if full else float("nan")
            buf.append(x)
            if not full:
                return Detection(
                    score=float("nan"), severity=Severity.INFO, evidence={"warming_up": 1.0}
                )
            x = x - lagged
        s, evidence = self._score_point(x)
        return Detection(score=s, severity=self._severity(s), evidence=evidence)

    def _severity(self, score: float) -> Severity:
        """Severity of the score just computed (subclasses may add conditions)."""
        return self._thresholds.classify(score)

    def score(self, values: ArrayLike) -> DetectionResult:
        """Score a whole series causally from a fresh state (streaming state untouched)."""
        series = as_series(values)
        fresh = copy.deepcopy(self)
        fresh.reset()
        scores = np.empty(series.size, dtype=np.float64)
        severities = np.empty(series.size, dtype=np.int8)
        for i, v in enumerate(series):
            d = fresh.update(v)
            scores[i] = d.score
            severities[i] = d.severity
        return DetectionResult(
            detector=self.name,
            scores=scores,
            severities=severities,
            thresholds=self._thresholds,
        )
