"""Anomaly detection: one detector per module behind :class:`AnomalyDetector`.

All detectors are causal (the score at ``t`` uses data up to ``t`` only) and work both in batch
(``score(series)``) and streaming (``update(value)``) use with identical numbers. Pure: numpy,
scipy and scikit-learn only; no I/O, no clock reads.
"""

from intelligence.anomaly.adaptive_resonance import AdaptiveResonanceDetector
from intelligence.anomaly.base import (
    AnomalyDetector,
    Detection,
    DetectionResult,
    Direction,
    Severity,
    Thresholds,
)
from intelligence.anomaly.cusum import CusumDetector
from intelligence.anomaly.ensemble import Ensemble
from intelligence.anomaly.iqr import IQRDetector
from intelligence.anomaly.isolation_forest import IsolationForestDetector
from intelligence.anomaly.robust_zscore import RobustZScore
from intelligence.anomaly.tail_probability import TailProbabilityDetector
from intelligence.anomaly.threshold import FixedThreshold

__all__ = [
    "AdaptiveResonanceDetector",
    "AnomalyDetector",
    "CusumDetector",
    "Detection",
    "DetectionResult",
    "Direction",
    "Ensemble",
    "FixedThreshold",
    "IQRDetector",
    "IsolationForestDetector",
    "RobustZScore",
    "Severity",
    "TailProbabilityDetector",
    "Thresholds",
]
