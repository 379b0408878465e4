"""Anomalies in the canary's own series, judged against the stable version running beside it.

A metric that passes its tests but whose canary series is persistently anomalous is only
``Marginal``: the robust z-score and CUSUM statistics of :mod:`intelligence.anomaly`, with the
stable samples as a frozen reference.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from intelligence.anomaly import Severity, Thresholds
from intelligence.anomaly.base import median_mad
from intelligence.anomaly.robust_zscore import MAD_TO_SIGMA
from intelligence.canary.samples import paired_differences
from intelligence.canary.types import Direction, MetricConfig

__all__ = ["CUSUM_LEVELS", "ZSCORE_LEVELS", "canary_anomalies"]

ZSCORE_LEVELS = Thresholds(4.0, 6.0, 10.0)
CUSUM_LEVELS = Thresholds(8.0, 16.0, 32.0)

_SIGNS = {
    Direction.INCREASE: (1.0,),
    Direction.DECREASE: (-1.0,),
    Direction.EITHER: (1.0, -1.0),
}


def _zscores(
    stable: NDArray[np.float64], canary: NDArray[np.float64], cfg: MetricConfig, *, paired: bool
) -> NDArray[np.float64]:
    """Each canary point's robust z-score against the stable reference, clipped to +-10."""
    if paired:
        r, _ = paired_differences(stable, canary)
        _, mad_r = median_mad(r) if r.size else (0.0, 0.0)
        scale = max(MAD_TO_SIGMA * mad_r, cfg.tolerance, 1e-3)
        return np.clip(r / scale, -10.0, 10.0)
    med, mad = median_mad(stable)
    scale = max(MAD_TO_SIGMA * mad, max(cfg.tolerance, 1e-3) * abs(med), cfg.absolute_tolerance)
    scale = max(scale, 1e-9)
    return np.clip((canary - med) / scale, -10.0, 10.0)


def canary_anomalies(
    stable: NDArray[np.float64],
    canary: NDArray[np.float64],
    cfg: MetricConfig,
    *,
    paired: bool = False,
) -> tuple[int, Severity]:
    """Canary points at CRITICAL or worse against the stable samples as a frozen reference.

    The statistics of :class:`~intelligence.anomaly.RobustZScore` (median / MAD z-score, with
    the metric's tolerances as scale floors) and :class:`~intelligence.anomaly.CusumDetector`
    (two-sided CUSUM of those z-scores, allowance 0.5), computed in one pass: the stable
    version runs at the same time as the canary, so it is the reference for every canary point.
    ``paired`` (``stable`` and ``canary`` in time order, bucket by bucket): the reference of
    each canary point is the stable value of the same bucket, so a swing of load both versions
    ride is no anomaly; the z-score is the bucket's relative difference (see
    :func:`~intelligence.canary.paired_test`) over its own robust spread, floored at the
    tolerance.
    """
    z = _zscores(stable, canary, cfg, paired=paired)
    signs = _SIGNS[cfg.bad_direction]
    bad = np.max([np.maximum(sign * z, 0.0) for sign in signs], axis=0)
    z_sev = ZSCORE_LEVELS.classify_many(bad)
    cusum = np.zeros(z.size)
    for sign in signs:
        # Page's CUSUM on the signed z-scores (allowance 0.5), S_t = max(0, S_{t-1} + x_t), is
        # the running sum minus its running minimum (0 included): no Python loop.
        run = np.cumsum(sign * z - 0.5)
        cusum = np.maximum(cusum, run - np.minimum(np.minimum.accumulate(run), 0.0))
    c_sev = CUSUM_LEVELS.classify_many(cusum)
    worst = int(max(z_sev.max(initial=0), c_sev.max(initial=0)))
    flagged = (z_sev >= Severity.CRITICAL) | (c_sev >= Severity.CRITICAL)
    return int(flagged.sum()), Severity(worst)
