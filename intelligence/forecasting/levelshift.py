"""Detection of the most recent lasting level shift in a (possibly seasonal) series.

A level shift is a step change in the mean that persists, unlike a spike. We remove the
seasonal profile (median per phase) when there are two full seasons, find the single best
split by CUSUM, and accept it only when the step is large against the noise on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from intelligence.forecasting.base import FloatArray

__all__ = ["LevelShift", "deseasonalize", "detect_level_shift"]

_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class LevelShift:
    """A step of `delta` starting at grid index `index`; `score` is delta / noise."""

    index: int
    delta: float
    score: float


def deseasonalize(values: FloatArray, *, period: int) -> FloatArray:
    """`values` minus their median seasonal profile (unchanged without two full periods).

    The profile is taken from the linearly detrended values; the trend itself stays in.
    """
    if period < 2 or values.size < 2 * period:
        return values.copy()
    n_full = (values.size // period) * period
    # detrend first, or a drift leaks into the profile as a sawtooth (steps at period ends)
    x = np.arange(values.size, dtype=np.float64)
    slope, intercept = (float(c) for c in np.polyfit(x, values, 1))
    detrended = values - (slope * x + intercept)
    profile = np.median(detrended[:n_full].reshape(-1, period), axis=0)
    profile -= np.median(profile)
    phase = np.arange(values.size) % period
    out: FloatArray = values - profile[phase]
    return out


def _robust_sigma(x: FloatArray) -> float:
    if x.size < 2:
        return 0.0
    return float(_MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))


def detect_level_shift(
    values: FloatArray,
    *,
    period: int = 1,
    min_segment: int | None = None,
    threshold: float = 4.0,
) -> LevelShift | None:
    """The most significant lasting level shift in `values`, or None.

    `min_segment` (default: a quarter period, at least 12 points) is how long both sides must
    be, so a spike is never taken for a shift. The step is accepted when it exceeds
    `threshold` times the larger robust noise of the two sides, and the medians of the two
    sides agree with it (the step is not just a slow drift).
    """
    n = values.size
    seg = min_segment if min_segment is not None else max(12, period // 4)
    if n < 2 * seg:
        return None
    r = deseasonalize(values, period=period)
    centred = r - r.mean()
    cusum = np.cumsum(centred)[:-1]
    candidates = np.arange(1, n)
    valid = (candidates >= seg) & (candidates <= n - seg)
    if not valid.any():
        return None
    k = int(candidates[valid][np.argmax(np.abs(cusum[valid[: cusum.size]]))])
    before, after = r[max(0, k - 4 * seg) : k], r[k : k + 4 * seg]
    delta = float(np.median(after) - np.median(before))
    noise = max(_robust_sigma(before), _robust_sigma(after))
    if noise == 0.0:
        noise = 1e-9 * max(1.0, float(np.abs(r).max()))
    score = abs(delta) / noise
    if score < threshold:
        return None
    # A drift also has a best split; a step keeps both sides flat around their medians.
    near_before = np.median(r[max(0, k - seg) : k])
    near_after = np.median(r[k : k + seg])
    if abs((near_after - near_before) - delta) > 0.5 * abs(delta):
        return None
    return LevelShift(index=k, delta=delta, score=score)
