"""Sample preparation shared by the judge's tests: cleaning, counts, sorted-sample quantiles.

Samples are sorted once by the judge; these helpers read quantiles off a sorted sample without
partitioning it again, and summarise large samples by their quantiles where an estimate needs
all pairs.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "MAX_HL_POINTS",
    "clean",
    "compress",
    "counts",
    "infinite_sign",
    "median_and_band",
    "paired_differences",
    "quantile",
    "quantiles",
    "z_critical",
]

MAX_HL_POINTS = 200
"""Samples larger than this are summarised by this many quantiles for the Hodges-Lehmann
estimate; its interval's order statistics are taken at the ranks of the full samples (the U test
always uses every sample)."""


def quantiles(ordered: NDArray[np.float64], q: ArrayLike) -> NDArray[np.float64]:
    """``np.quantile(x, q)`` (linear interpolation) of an already sorted ``x``, no partition."""
    pos = np.asarray(q, dtype=np.float64) * (ordered.size - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, ordered.size - 1)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


def quantile(ordered: NDArray[np.float64], q: float) -> float:
    """One quantile of an already sorted sample."""
    return float(quantiles(ordered, q))


def compress(sample: NDArray[np.float64], *, ordered: bool = False) -> NDArray[np.float64]:
    """The sample itself, or its `MAX_HL_POINTS` mid-quantiles when it is larger."""
    if sample.size <= MAX_HL_POINTS:
        return sample
    q = (np.arange(MAX_HL_POINTS) + 0.5) / MAX_HL_POINTS
    return quantiles(sample if ordered else np.sort(sample, kind="stable"), q)


@lru_cache(maxsize=16)
def z_critical(confidence: float) -> float:
    """The two-sided normal critical value of a `confidence` interval."""
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def median_and_band(values: NDArray[np.float64], k: int) -> tuple[float, float, float]:
    """The median of `values` and its `k`-th smallest and largest (one partition, no sort)."""
    size = values.size
    k = min(max(k, 0), (size - 1) // 2)
    mid = ((size - 1) // 2, size // 2)
    part = np.partition(values, sorted({k, size - 1 - k, *mid}))
    est = 0.5 * float(part[mid[0]] + part[mid[1]])
    return est, float(part[k]), float(part[size - 1 - k])


def clean(values: ArrayLike) -> tuple[NDArray[np.float64], int]:
    """The finite values, flattened, and how many were not."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    ok = np.isfinite(arr)
    return arr[ok], int(arr.size - ok.sum())


def counts(values: ArrayLike) -> tuple[NDArray[np.float64], int, int]:
    """``(events, trials)`` rows -> (finite rows, rows dropped, raw rows)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2)), 0, 0
    if arr.ndim == 1 and arr.size == 2:
        arr = arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"a proportion metric needs (events, trials) rows, got {arr.shape}")
    ok = np.isfinite(arr).all(axis=1) & (arr[:, 1] >= 0) & (arr[:, 0] >= 0)
    ok &= arr[:, 0] <= arr[:, 1]
    return arr[ok], int(arr.shape[0] - ok.sum()), int(arr.shape[0])


def paired_differences(
    s: NDArray[np.float64], c: NDArray[np.float64]
) -> tuple[NDArray[np.float64], bool]:
    """Per-bucket differences of two aligned series and whether they are relative (``2 (c - s) /
    (c + s)``, non-negative series, buckets idle on both sides dropped) or plain differences
    over the stable median."""
    if s.shape != c.shape:
        raise ValueError(f"paired samples need the same buckets, got {s.shape} and {c.shape}")
    if bool((s >= 0.0).all() and (c >= 0.0).all()):
        # a bucket where both read 0 (no load at all) carries no information: dropped
        tot = s + c
        busy = tot > 0.0
        return 2.0 * (c[busy] - s[busy]) / tot[busy], True
    ref = abs(float(np.median(s))) if s.size else 0.0
    return (c - s) / (ref or 1.0), False


def infinite_sign(x: float) -> float:
    """``inf``, ``-inf`` or 0 with the sign of `x` (a relative change on a zero baseline)."""
    return math.inf if x > 0 else (-math.inf if x < 0 else 0.0)
