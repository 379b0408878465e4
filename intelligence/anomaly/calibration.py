"""Tail calibration: a feature's raw value turned into ``-log10`` of its tail probability.

Raw features have different, file-dependent scales; each is calibrated against a uniform sample
of its own past values (:class:`~intelligence.anomaly._windows.SortedReservoir`, bounded).
:class:`TailCalibrator` models the tail above the sample's ``lower`` quantile as exponential,
with a scale read off two quantiles. A feature with a heavy tail (recurring large values of a
spiky series) then gets surprises that grow linearly with the value while the data's tail falls
off more slowly, so large but ordinary values look rarer than they are. Extreme value theory
(Pickands-Balkema-de Haan) says excesses over a high threshold follow a generalised Pareto
distribution (GPD): ``P(Y > y) = (1 + xi y / sigma) ^ (-1 / xi)``, the exponential being
``xi = 0``. :class:`GPDTailCalibrator` fits ``sigma`` and ``xi`` to the excesses in its sample
by probability-weighted moments (Hosking and Wallis, 1987: closed form, no optimiser, robust on
a few hundred excesses), refitted every ``refit_every`` values so the time per point stays
small, and keeps the floor at the empirical frequency. Pure: numpy only.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from intelligence.anomaly._windows import SortedReservoir

__all__ = ["GPDTailCalibrator", "TailCalibrator", "fit_gpd_pwm"]

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)


class TailCalibrator:
    """Turns a raw score into ``-log10`` of its tail probability against recent scores.

    The tail above the history's ``lower`` quantile is modelled as exponential with scale
    ``(q_upper - q_lower) / ln 2`` (so the median excess over ``q_lower`` is matched); the
    probability is never allowed below the empirical frequency of past scores at least as large,
    so a series whose big values recur does not alarm on every one of them. The history is a
    uniform sample of at most ``capacity`` past scores (a reservoir), so memory and time per
    score are bounded while the calibration still reflects the whole stream.
    """

    def __init__(
        self,
        *,
        min_history: int = 50,
        lower: float = 0.90,
        upper: float = 0.95,
        min_scale: float = 0.0,
        capacity: int = 2000,
    ) -> None:
        """Configure the calibrator.

        Args:
            min_history: scores needed before any probability (earlier ones give 0).
            lower: quantile where the exponential tail starts.
            upper: quantile used with ``lower`` to fit the tail's scale.
            min_scale: smallest scale of the exponential tail, in the score's unit: excesses
                much smaller than this are not evidence (e.g. 1 bit for a code length, so a
                history of near-identical scores does not make a tiny excess look improbable).
            capacity: size of the uniform sample of all past scores the tail is fitted on
                (:class:`~intelligence.anomaly._windows.SortedReservoir`).
        """
        if not 0.0 < lower < upper < 1.0:
            raise ValueError(f"need 0 < lower < upper < 1, got lower={lower} upper={upper}")
        if min_scale < 0.0:
            raise ValueError(f"min_scale must be >= 0, got {min_scale}")
        if capacity < min_history:
            raise ValueError(f"capacity must be >= min_history ({min_history}), got {capacity}")
        self.min_history = min_history
        self.lower = lower
        self.upper = upper
        self.min_scale = min_scale
        self._hist = SortedReservoir(capacity)
        self._sorted = self._hist.sorted_values()
        self._log_p_lower = -math.log10(1.0 - lower)
        self._read = -1  # the sample's `changes` when the tail below was read off it
        self._q_lo = math.inf  # where the tail starts (inf: history too short)
        self._beta = 1.0  # the tail's scale

    def __len__(self) -> int:
        return len(self._hist)

    def surprise(self, value: float) -> float:
        """``-log10`` tail probability of ``value`` (0 below the tail or on short history)."""
        if self._read != self._hist.changes:
            self._read_tail()
        q_lo = self._q_lo
        if not value > q_lo or value == math.inf:  # below the tail, short history, NaN, inf
            return 0.0
        log_p = self._log_p_lower + (value - q_lo) / self._beta / _LN10
        srt = self._sorted  # the reservoir's fraction_at_least(), inlined: a call a feature
        n = len(srt)
        larger = (n - bisect.bisect_left(srt, value)) / n
        if larger > 0.0:
            log_p = min(log_p, -math.log10(larger))
        return log_p

    def _read_tail(self) -> None:
        """Read the tail's start and scale off the sample, which changed since they were
        last read (once the sample is full it changes at fewer and fewer values: reading
        them once per change, not once per value, pays for the sample's compact store)."""
        srt = self._sorted
        n = len(srt)
        self._read = self._hist.changes
        if n < self.min_history:
            self._q_lo = math.inf
            return
        q_lo = srt[int(self.lower * (n - 1))]
        q_hi = srt[int(self.upper * (n - 1))]
        self._q_lo = q_lo
        self._beta = max((q_hi - q_lo) / _LN2, 1e-12, 1e-3 * abs(q_hi), self.min_scale)

    def fraction_at_least(self, value: float) -> float:
        """Fraction of the history at least as large as ``value`` (NaN on short history)."""
        if len(self._hist) < self.min_history:
            return math.nan
        return self._hist.fraction_at_least(value)

    def add(self, value: float) -> None:
        """Absorb a score into the history (NaN is ignored)."""
        self._hist.append(value)

    def clear(self) -> None:
        """Forget the history."""
        self._hist.clear()


MIN_EXCESSES = 10
"""Fewer excesses than this: the exponential tail of the parent is used."""


def fit_gpd_pwm(excesses: np.ndarray) -> tuple[float, float]:
    """``(sigma, xi)`` of a GPD fitted to positive ``excesses`` (sorted ascending) by PWM.

    Hosking and Wallis (1987): with ``a0`` the mean excess and ``a1`` the mean of
    ``(1 - p_i) y_i`` for plotting positions ``p_i = (i - 0.35) / n``, ``sigma = 2 a0 a1 /
    (a0 - 2 a1)`` and ``xi = 2 - a0 / (a0 - 2 a1)``.
    """
    n = excesses.size
    p = (np.arange(1, n + 1) - 0.35) / n
    a0 = float(excesses.mean())
    a1 = float(np.mean((1.0 - p) * excesses))
    denom = a0 - 2.0 * a1
    if denom <= 0.0 or a0 <= 0.0:
        return max(a0, 1e-12), 0.0
    return 2.0 * a0 * a1 / denom, 2.0 - a0 / denom


class GPDTailCalibrator(TailCalibrator):
    """:class:`TailCalibrator` with a GPD tail (shape clipped to ``[xi_min, xi_max]``)."""

    def __init__(
        self,
        *,
        refit_every: int = 25,
        xi_min: float = 0.0,
        xi_max: float = 1.0,
        **kwargs: float,
    ) -> None:
        """Configure the calibrator (``kwargs`` as for :class:`TailCalibrator`).

        Args:
            refit_every: values absorbed between two fits of the tail's scale and shape.
            xi_min: smallest shape allowed (0: never lighter than exponential, whose bounded
                tail would make values past its end infinitely surprising).
            xi_max: largest shape allowed.
        """
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if refit_every < 1:
            raise ValueError(f"refit_every must be >= 1, got {refit_every}")
        if not xi_min <= xi_max:
            raise ValueError(f"need xi_min <= xi_max, got xi_min={xi_min} xi_max={xi_max}")
        self.refit_every = refit_every
        self.xi_min = xi_min
        self.xi_max = xi_max
        self._since_fit = refit_every
        self._fit: tuple[float, float] | None = None

    def surprise(self, value: float) -> float:
        """``-log10`` tail probability of ``value`` under the fitted GPD tail."""
        hist = self._hist
        if self._fit is None or len(hist) < self.min_history or not math.isfinite(value):
            return super().surprise(value)
        q_lo = hist.at(self.lower)
        if value <= q_lo:
            return 0.0
        sigma, xi = self._fit
        y = (value - q_lo) / sigma
        log_s = -y / math.log(10.0) if xi == 0.0 else -math.log10(1.0 + xi * y) / xi
        log_p = -math.log10(1.0 - self.lower) - log_s
        larger = hist.fraction_at_least(value)
        return min(log_p, -math.log10(larger)) if larger > 0.0 else log_p

    def add(self, value: float) -> None:
        """Absorb a score; refit the tail every ``refit_every`` values."""
        super().add(value)
        self._since_fit += 1
        if self._since_fit >= self.refit_every and len(self._hist) >= self.min_history:
            self._since_fit = 0
            self._refit()

    def _refit(self) -> None:
        q_lo = self._hist.at(self.lower)
        excess = np.asarray(self._hist.above(q_lo)) - q_lo
        if excess.size < MIN_EXCESSES:
            self._fit = None
            return
        sigma, xi = fit_gpd_pwm(excess)
        sigma = max(sigma, 1e-12, self.min_scale)
        self._fit = (sigma, min(max(xi, self.xi_min), self.xi_max))

    def clear(self) -> None:
        """Forget the history and the fit."""
        super().clear()
        self._fit = None
        self._since_fit = self.refit_every
