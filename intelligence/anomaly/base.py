"""The shared vocabulary of every anomaly detector: severities, thresholds, results, the Protocol.

Every detector in this package scores a series *causally*: the score of point ``t`` uses only the
points up to ``t``. The same detector therefore works in two ways that give identical numbers:

* streaming: ``update(value)`` once per new observation, returning a :class:`Detection`;
* batch: ``score(values)`` on a whole series, returning a :class:`DetectionResult`; it never
  touches the streaming state.

Scores are in a unit chosen by each detector (robust sigmas, IQRs, isolation depth...), larger is
more anomalous; each detector's :class:`Thresholds` turn a score into a :class:`Severity`.
Purely computational: no I/O, no clock reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "AnomalyDetector",
    "Detection",
    "DetectionResult",
    "Direction",
    "RingBuffer",
    "Severity",
    "Thresholds",
    "as_series",
    "median_mad",
    "signed_deviation",
]

Direction = Literal["both", "up", "down"]
"""Which deviations count: ``up`` (an increase is bad), ``down`` or ``both``."""


class Severity(IntEnum):
    """How bad an observation is; ordered so that ``max`` picks the worst."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2
    EMERGENCY = 3


@dataclass(frozen=True)
class Thresholds:
    """Score levels at which a point becomes WARNING, CRITICAL and EMERGENCY."""

    warning: float
    critical: float
    emergency: float

    def __post_init__(self) -> None:
        if not (self.warning <= self.critical <= self.emergency):
            raise ValueError(f"thresholds must be ordered, got {self}")

    def classify(self, score: float) -> Severity:
        """Severity of one score (NaN is INFO: no evidence of an anomaly)."""
        if math.isnan(score) or score < self.warning:
            return Severity.INFO
        if score < self.critical:
            return Severity.WARNING
        if score < self.emergency:
            return Severity.CRITICAL
        return Severity.EMERGENCY

    def classify_many(self, scores: NDArray[np.float64]) -> NDArray[np.int8]:
        """Severities of many scores, as ``Severity`` integer values."""
        s = np.nan_to_num(scores, nan=-np.inf)
        edges = np.array([self.warning, self.critical, self.emergency])
        return np.searchsorted(edges, s, side="right").astype(np.int8)

    def level(self, score: float) -> float:
        """Map a score onto a common scale where 1, 2, 3 are WARNING, CRITICAL, EMERGENCY.

        Piecewise linear and increasing, so that scores of different detectors can be combined
        (see :mod:`intelligence.anomaly.ensemble`).
        """
        if math.isnan(score):
            return 0.0
        w, c, e = self.warning, self.critical, self.emergency
        if score < w:
            return max(score, 0.0) / w if w > 0 else 0.0
        if score < c:
            return 1.0 + (score - w) / (c - w)
        step = (e - c) if e > c else 1.0
        if score < e:
            return 2.0 + (score - c) / step
        return 3.0 + (score - e) / step


@dataclass(frozen=True)
class Detection:
    """One streaming verdict: the score, its severity and the numbers behind it."""

    score: float
    severity: Severity
    evidence: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DetectionResult:
    """A batch verdict over a series: one score and one severity per point."""

    detector: str
    scores: NDArray[np.float64]
    severities: NDArray[np.int8]
    thresholds: Thresholds

    @property
    def max_severity(self) -> Severity:
        """The worst severity anywhere in the series."""
        return Severity(int(self.severities.max())) if self.severities.size else Severity.INFO

    @property
    def anomalies(self) -> NDArray[np.intp]:
        """Indices of points at WARNING or worse."""
        return np.flatnonzero(self.severities >= Severity.WARNING)

    def first_at(self, severity: Severity) -> int | None:
        """Index of the first point at ``severity`` or worse, or None."""
        hits = np.flatnonzero(self.severities >= severity)
        return int(hits[0]) if hits.size else None

    @property
    def evidence(self) -> dict[str, float]:
        """Summary numbers: points, scored points, maximum score, counts per severity."""
        finite = self.scores[np.isfinite(self.scores)]
        return {
            "points": float(self.scores.size),
            "scored_points": float(finite.size),
            "max_score": float(finite.max()) if finite.size else float("nan"),
            "warning_points": float(np.sum(self.severities == Severity.WARNING)),
            "critical_points": float(np.sum(self.severities == Severity.CRITICAL)),
            "emergency_points": float(np.sum(self.severities == Severity.EMERGENCY)),
        }


@runtime_checkable
class AnomalyDetector(Protocol):
    """What every detector offers; see the module docstring for the causal contract."""

    @property
    def name(self) -> str:
        """Short identifier used in evidence (``robust_zscore``, ``cusum``...)."""
        ...

    @property
    def thresholds(self) -> Thresholds:
        """Score levels for WARNING / CRITICAL / EMERGENCY."""
        ...

    def update(self, value: ArrayLike) -> Detection:
        """Consume the next observation (a float, or a vector for multivariate detectors)."""
        ...

    def score(self, values: ArrayLike) -> DetectionResult:
        """Score a whole series causally, from a fresh state; streaming state is untouched."""
        ...

    def reset(self) -> None:
        """Forget all history."""
        ...


class RingBuffer:
    """A fixed-capacity window of floats exposed as a contiguous numpy view (oldest first)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._data = np.empty(2 * capacity, dtype=np.float64)
        self._end = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, value: float) -> None:
        """Add a value, dropping the oldest when full."""
        if self._end == self._data.size:
            keep = self._size if self._size < self.capacity else self.capacity - 1
            self._data[:keep] = self._data[self._end - keep : self._end]
            self._end = keep
            self._size = keep
        self._data[self._end] = value
        self._end += 1
        self._size = min(self._size + 1, self.capacity)

    def view(self) -> NDArray[np.float64]:
        """The current contents, oldest first (a view: do not keep it across appends)."""
        return self._data[self._end - self._size : self._end]

    def clear(self) -> None:
        """Drop every value."""
        self._end = 0
        self._size = 0


def as_series(values: ArrayLike) -> NDArray[np.float64]:
    """A 1-D float64 copy of ``values``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D series, got shape {arr.shape}")
    return arr


def signed_deviation(deviation: float, direction: Direction) -> float:
    """Keep only the deviations that count for ``direction`` (others become 0)."""
    if direction == "up":
        return max(deviation, 0.0)
    if direction == "down":
        return max(-deviation, 0.0)
    return abs(deviation)


def median_mad(values: NDArray[np.float64]) -> tuple[float, float]:
    """Median and median absolute deviation of a small 1-D array, without numpy's overhead.

    ``np.median`` costs tens of microseconds per call in argument handling; detectors call
    this once per point, so two sorts are cheaper.
    """
    n = values.size
    if n == 0:
        return float("nan"), float("nan")
    srt = np.sort(values)
    half = n // 2
    med = float(srt[half]) if n % 2 else 0.5 * float(srt[half - 1] + srt[half])
    dev = np.sort(np.abs(srt - med))
    mad = float(dev[half]) if n % 2 else 0.5 * float(dev[half - 1] + dev[half])
    return med, mad
