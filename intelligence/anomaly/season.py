"""Seasonal period detection that needs several cycles before it trusts a period.

A single autocorrelation peak in a short warm-up is weak evidence: an AR-like series gives
spurious short "periods" (8, 12, 54 points) and a warm-up that holds 2.6 days cannot show a
daily period reliably. So a period ``P`` is trusted only when

* the series searched holds at least ``min_cycles`` cycles (``P <= n / min_cycles``), and
* ``P`` is a peak of the autocorrelation (not the end of a slope cut off by the search range),
  and the autocorrelation is at least ``min_acf`` at ``P`` and at every multiple ``kP`` up to
  half the series (a real cycle repeats; a noise peak does not line up at ``2P``).

:class:`SeasonSearch` keeps looking after the warm-up, on a bounded window of the latest
``horizon`` points, every ``every`` points, until a period is trusted; autocorrelations come
from an FFT, so one search costs O(horizon log horizon) and the cost per point is constant.
With ``refine_gain`` set it keeps looking after that, and a later search that trusts a
multiple of the period replaces it when the multiple removes at least that share of what the
period leaves unexplained (``1 - acf`` at the period, both read on the same points) and raises
the autocorrelation by more than two of its standard errors (``2 / sqrt(n)``): a warm-up
too short to show a weekly cycle (at most a quarter of the searched points) finds the daily
one first, and the weekly one takes over once the window holds four weeks and it explains
clearly more (nyc_taxi: 0.85 -> 0.96), while a multiple of a clean cycle that is a peak only by
noise (0.006 more) does not.
Pure: numpy only.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from intelligence.anomaly.base import RingBuffer

__all__ = ["SeasonSearch", "autocorrelation", "detect_season"]


def autocorrelation(values: ArrayLike) -> NDArray[np.float64]:
    """Unbiased autocorrelation of ``values`` at lags ``0..n-1`` (via FFT); zeros if constant."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    seg = x - x.mean()
    if n == 0 or not np.any(seg):
        return np.zeros(n)
    size = 1 << (2 * n - 1).bit_length()
    spec = np.fft.rfft(seg, size)
    ac = np.fft.irfft(spec * np.conj(spec), size)[:n]
    return np.asarray(ac / ac[0] * n / (n - np.arange(n)), dtype=np.float64)


def detect_season(
    values: ArrayLike, *, min_acf: float, min_cycles: int = 4
) -> tuple[int | None, float]:
    """Dominant period of ``values``, or ``(None, acf)`` if none is trusted (module docstring).

    The candidate is the highest autocorrelation peak after the first zero crossing among lags
    up to ``n / min_cycles``; the returned ``acf`` is its autocorrelation.
    """
    if min_cycles < 2:
        raise ValueError(f"min_cycles must be >= 2, got {min_cycles}")
    return _season_of(autocorrelation(values), min_acf=min_acf, min_cycles=min_cycles)


def _season_of(
    ac: NDArray[np.float64], *, min_acf: float, min_cycles: int
) -> tuple[int | None, float]:
    """:func:`detect_season` on an autocorrelation already computed."""
    n = ac.size
    longest = n // min_cycles
    if n < 8 or longest < 2 or ac[0] == 0.0:
        return None, 0.0
    negative = np.flatnonzero(ac[:longest] < 0.0)
    if negative.size == 0:
        return None, 0.0
    first = int(negative[0])
    lag = int(np.argmax(ac[first : longest + 1]) + first)
    acf = float(ac[lag])
    multiples = ac[lag : n // 2 + 1 : lag]
    peak = lag + 1 < n and ac[lag] >= ac[lag + 1]  # not a slope cut off by the search range
    trusted = peak and lag > 0 and acf >= min_acf and bool(np.all(multiples >= min_acf))
    return (lag if trusted else None), acf


class SeasonSearch:
    """Looks for a trusted period on the latest ``horizon`` points, every ``every`` points."""

    def __init__(
        self,
        *,
        horizon: int,
        every: int,
        min_acf: float,
        min_cycles: int,
        refine_gain: float | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if min_cycles < 2:
            raise ValueError(f"min_cycles must be >= 2, got {min_cycles}")
        if refine_gain is not None and not 0.0 <= refine_gain < 1.0:
            raise ValueError(f"refine_gain must be in [0, 1) or None, got {refine_gain}")
        self.horizon = horizon
        self.refine_gain = refine_gain
        self.every = every
        self.min_acf = min_acf
        self.min_cycles = min_cycles
        self.period: int | None = None
        self.acf = float("nan")
        self._hist = RingBuffer(horizon)
        self._since = 0

    def history(self) -> NDArray[np.float64]:
        """The points kept for the search, oldest first (a view)."""
        return self._hist.view()

    def update(self, x: float) -> bool:
        """Absorb ``x``; True when a period has just been trusted or replaced by a multiple of
        itself (look at ``period``)."""
        if self.period is not None and self.refine_gain is None:
            return False
        self._hist.append(x)
        self._since += 1
        if self._since < self.every:
            return False
        return self.search()

    def search(self) -> bool:
        """Search now (the detector calls it at the end of its warm-up); True if trusted."""
        self._since = 0
        ac = autocorrelation(self._hist.view())
        period, self.acf = _season_of(ac, min_acf=self.min_acf, min_cycles=self.min_cycles)
        if period is None:
            return False
        if self.period is not None and not self._refines(period, ac):
            return False
        self.period = period
        return True

    def _refines(self, period: int, ac: NDArray[np.float64]) -> bool:
        """True when ``period``, trusted on the autocorrelation ``ac`` of the kept points,
        should replace the trusted ``self.period``: a longer cycle that contains it, removes
        ``refine_gain`` of what it leaves unexplained, and explains more by more than the
        estimate's noise."""
        assert self.period is not None
        assert self.refine_gain is not None
        if period <= self.period or period % self.period:
            return False
        before = float(ac[self.period])
        # more than the estimate's noise (two standard errors of an autocorrelation, Bartlett)
        # and the set share of what the period leaves unexplained
        noise = 2.0 / math.sqrt(ac.size)
        return self.acf - before >= max(noise, self.refine_gain * (1.0 - before))

    def release(self) -> None:
        """Drop the kept points once the caller has used them (the search is over; with
        ``refine_gain`` it never is, and the points stay)."""
        if self.refine_gain is None:
            self._hist = RingBuffer(1)
