"""Power: the smallest regression a look could have caught, and the guard that keeps a metric
from passing when that is larger than what it must be able to detect.

A test that does not reject is not evidence of no regression when the samples are few. The
minimum detectable effect (MDE) is quoted at ``JudgeConfig.power``: Noether's formula for the
U test on the stable sample's own pairwise differences, the pooled-variance normal
approximation for two proportions (the paired test computes its own, see
:func:`~intelligence.canary.paired_test`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import special

from intelligence.canary.samples import compress, quantile
from intelligence.canary.significance import auc_sd
from intelligence.canary.types import Direction, MetricConfig, MetricVerdict

__all__ = [
    "detectable_target",
    "mde_mean_shift",
    "mde_proportion",
    "mde_shift",
    "power_guard",
]


def _mde_rise(p_s: float, n_s: int, n_c: int, z_a: float, z_b: float) -> float:
    """Smallest rise ``d`` of a rate above ``p_s`` that a one-sided level-``alpha`` test of two
    proportions detects with the power behind ``z_b`` (``z_a``: the level's critical value).

    Pooled-variance normal approximation, solved by bisection: ``d`` minus the required margin
    is negative at 0 and convex in ``d`` (the margin is a sum of square roots of concave
    functions), so it crosses zero once. ``inf`` when even a rate of 1 is not enough.
    """
    n = n_s + n_c

    def gap(d: float) -> float:
        p_c = p_s + d
        pbar = (n_s * p_s + n_c * p_c) / n
        null_sd = math.sqrt(max(pbar * (1.0 - pbar), 0.0) * (1.0 / n_s + 1.0 / n_c))
        alt_sd = math.sqrt(max(p_s * (1.0 - p_s) / n_s + p_c * (1.0 - p_c) / n_c, 0.0))
        return d - z_a * null_sd - z_b * alt_sd

    lo, hi = 0.0, 1.0 - p_s
    if hi <= 0.0 or gap(hi) < 0.0:
        return math.inf
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if gap(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return hi


def mde_proportion(
    p_s: float, n_s: int, n_c: int, *, alpha: float, power: float, direction: Direction
) -> float:
    """Minimum detectable change of the canary's rate in the metric's bad direction."""
    if direction is Direction.EITHER:
        alpha /= 2.0
    z_a, z_b = float(special.ndtri(1.0 - alpha)), float(special.ndtri(power))
    up = _mde_rise(p_s, n_s, n_c, z_a, z_b)
    down = _mde_rise(1.0 - p_s, n_s, n_c, z_a, z_b)
    return {Direction.INCREASE: up, Direction.DECREASE: down, Direction.EITHER: max(up, down)}[
        direction
    ]


def mde_shift(
    stable: NDArray[np.float64],
    n_canary: int,
    *,
    alpha: float,
    power: float,
    direction: Direction,
    overlap: float = 1.0,
) -> tuple[float, float]:
    """Minimum detectable shift of the U test: ``(absolute, relative to the stable median)``.

    Noether's sample size formula inverted: the U test at level ``alpha`` detects, with
    probability ``power``, a shift ``delta`` with ``P(X + delta > X') >= 1/2 + (z_a + z_b)
    sqrt((m + n + 1) / (12 m n))``, ``X, X'`` independent draws of the stable version. That
    probability is read off the stable sample's own pairwise differences (no distribution
    assumed); on the log scale when every sample is positive, so the shift is relative (every
    request slower by the same factor), else on the metric's scale. ``m`` and ``n`` are the
    effective sizes when points overlap (`auc_sd`).
    """
    m = stable.size
    if direction is Direction.EITHER:
        alpha /= 2.0
    z = float(special.ndtri(1.0 - alpha)) + float(special.ndtri(power))
    need = 0.5 + z * auc_sd(m, n_canary, overlap)
    ordered = np.sort(stable, kind="stable")
    ref = abs(quantile(ordered, 0.5)) or float(np.mean(np.abs(stable)))
    if need >= 1.0 or m < 2:
        return math.inf, math.inf
    positive = bool(ordered[0] > 0.0)
    v = compress(np.log(ordered) if positive else ordered, ordered=True)
    diffs = (v[:, None] - v[None, :])[~np.eye(v.size, dtype=bool)]
    delta = max(float(np.quantile(diffs, need)), 0.0)
    if positive:
        rel = math.expm1(delta) if direction is not Direction.DECREASE else -math.expm1(-delta)
        return rel * ref, rel
    return delta, (delta / ref if ref else math.inf)


def mde_mean_shift(
    pooled: NDArray[np.float64],
    m: float,
    n: float,
    *,
    alpha: float,
    power: float,
    direction: Direction,
) -> float:
    """Minimum detectable rise of the mean, from the spread of the `pooled` sample (both
    versions: under the null they share one distribution), for `m` stable and `n` canary
    samples (effective sizes when points overlap): the normal approximation of the U test at
    its efficiency 3/pi.

    For a stable sample without spread (an error ratio of 0 at every point), where Noether's
    shift (`mde_shift`) reads off the stable alone that any shift is detectable (MDE 0): an
    error regression does not shift the zeros, it makes some points non-zero, and until the
    test can show that the run is underpowered, not a pass."""
    if m < 2 or n < 1:
        return math.inf
    if direction is Direction.EITHER:
        alpha /= 2.0
    z = float(special.ndtri(1.0 - alpha)) + float(special.ndtri(power))
    spread = float(np.std(pooled, ddof=1)) if pooled.size > 1 else math.inf
    return z * spread * math.sqrt(1.0 / m + 1.0 / n) / math.sqrt(3.0 / math.pi)


def detectable_target(metric: MetricConfig, level: float) -> float:
    """The regression (effect's unit) the metric must be able to detect; NaN: no target."""
    parts = []
    if metric.detectable is not None:
        parts.append(metric.detectable * abs(level))
    if metric.detectable_absolute is not None:
        parts.append(metric.detectable_absolute)
    return max(parts) if parts else math.nan


def power_guard(
    verdict: MetricVerdict, mde: float, target: float, reasons: list[str]
) -> MetricVerdict:
    """A passing metric whose MDE is above its target could not have seen the regression."""
    if verdict in (MetricVerdict.PASS, MetricVerdict.MARGINAL) and mde > target:
        reasons.append("InsufficientPower")
        return MetricVerdict.UNDERPOWERED
    return verdict
