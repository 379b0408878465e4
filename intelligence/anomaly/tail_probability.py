"""Tail-probability detector: complementary causal features, each calibrated against its own past.

Three raw features (four with ``context``) are computed per point, all from data up to ``t``
only:

* ``value``: robust z of ``x[t]`` against the median / MAD of the trailing ``window`` points
  (spikes and dips);
* ``level``: the mean of the last ``short_window`` points against the median / MAD of the
  ``window`` points before them, in standard errors (a two-window test for a change of level);
* ``seasonal``: robust z of the seasonal difference ``x[t] - x[t - P]`` against its own trailing
  window, when the warm-up (the first ``window`` points) shows a clear period ``P`` (an
  autocorrelation peak of at least ``season_min_acf`` after the first zero crossing). It catches
  a day that does not look like the day before (a missing peak, a flattened cycle), which a
  value or level test cannot see on a strongly seasonal series;
* ``context`` (optional, ``context_order``): the bits needed to encode the last ``short_window``
  values under an online n-gram model of the discretised series
  (:mod:`intelligence.anomaly.context`, after CAD-OSE's contextual novelty). It sees a series
  that stays in range but moves in a new way (a change of rhythm or variability).

Raw features have different, file-dependent scales, so each is turned into a tail probability
against its own causal history (a peaks-over-threshold model with an exponential tail fitted
from the history's 90th and 95th percentiles, and never below the empirical frequency of values
at least as large). The score is ``-log10`` of the smallest of the features' probabilities, so
one threshold means the same thing on every series.

Alarms are sparse: the first point at or above ``alarm_level`` raises an alarm (reported as
``evidence["alarm"] == 1``) and further alarms are suppressed for ``refractory`` points, so one
event gives one alarm; with ``escalation`` set, a point inside the refractory period still alarms
when its score exceeds the last alarm's by ``escalation`` (an event ``10**escalation`` times
rarer than the one that opened the period is news, not an echo). Pure: numpy only, no I/O, no
clock reads.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np
from numpy.typing import ArrayLike

from intelligence.anomaly._streaming import UnivariateDetector
from intelligence.anomaly.base import RingBuffer, Thresholds, median_mad
from intelligence.anomaly.context import ContextNovelty

__all__ = ["TailCalibrator", "TailProbabilityDetector", "detect_season"]

MAD_TO_SIGMA = 1.4826
FEATURES = ("value", "level", "seasonal", "context")
CONTEXT_MIN_SCALE = 1.0
"""Smallest tail scale of the context feature, in bits: less than a factor of two in probability
per event is not evidence (a perfectly repeating series otherwise alarms on a 0.1-bit wobble)."""


def detect_season(values: ArrayLike, *, min_acf: float) -> tuple[int | None, float]:
    """Dominant period of ``values`` from its autocorrelation, or ``(None, acf)`` if none.

    The candidate is the highest (unbiased) autocorrelation peak after the first zero crossing,
    among lags up to half the series; it counts only when that autocorrelation is >= ``min_acf``.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    seg = x - x.mean()
    if n < 8 or not np.any(seg):
        return None, 0.0
    ac = np.correlate(seg, seg, "full")[n - 1 :]
    ac = ac / ac[0] * n / (n - np.arange(n))
    half = n // 2
    negative = np.flatnonzero(ac[:half] < 0.0)
    if negative.size == 0:
        return None, 0.0
    first = int(negative[0])
    lag = int(np.argmax(ac[first:half]) + first)
    acf = float(ac[lag])
    return (lag if acf >= min_acf else None), acf


class TailCalibrator:
    """Turns a raw score into ``-log10`` of its tail probability against all previous scores.

    The tail above the history's ``lower`` quantile is modelled as exponential with scale
    ``(q_upper - q_lower) / ln 2`` (so the median excess over ``q_lower`` is matched); the
    probability is never allowed below the empirical frequency of past scores at least as large,
    so a series whose big values recur does not alarm on every one of them.
    """

    def __init__(
        self,
        *,
        min_history: int = 50,
        lower: float = 0.90,
        upper: float = 0.95,
        min_scale: float = 0.0,
    ) -> None:
        """Configure the calibrator.

        Args:
            min_history: scores needed before any probability (earlier ones give 0).
            lower: quantile where the exponential tail starts.
            upper: quantile used with ``lower`` to fit the tail's scale.
            min_scale: smallest scale of the exponential tail, in the score's unit: excesses
                much smaller than this are not evidence (e.g. 1 bit for a code length, so a
                history of near-identical scores does not make a tiny excess look improbable).
        """
        if not 0.0 < lower < upper < 1.0:
            raise ValueError("need 0 < lower < upper < 1")
        if min_scale < 0.0:
            raise ValueError("min_scale must be >= 0")
        self.min_history = min_history
        self.lower = lower
        self.upper = upper
        self.min_scale = min_scale
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def surprise(self, value: float) -> float:
        """``-log10`` tail probability of ``value`` (0 below the tail or on short history)."""
        hist = self._sorted
        n = len(hist)
        if n < self.min_history or not math.isfinite(value):
            return 0.0
        q_lo = hist[int(self.lower * (n - 1))]
        if value <= q_lo:
            return 0.0
        q_hi = hist[int(self.upper * (n - 1))]
        beta = max((q_hi - q_lo) / math.log(2.0), 1e-12, 1e-3 * abs(q_hi), self.min_scale)
        log_p = -math.log10(1.0 - self.lower) + (value - q_lo) / beta / math.log(10.0)
        larger = n - bisect.bisect_left(hist, value)
        if larger > 0:
            log_p = min(log_p, -math.log10(larger / n))
        return log_p

    def add(self, value: float) -> None:
        """Absorb a score into the history (NaN is ignored)."""
        if math.isfinite(value):
            bisect.insort(self._sorted, value)

    def clear(self) -> None:
        """Forget the history."""
        self._sorted.clear()


class _RollingZ:
    """Robust z of each value against the trailing ``window`` values (expanding while warming)."""

    def __init__(self, window: int, min_history: int) -> None:
        self.min_history = min_history
        self._hist = RingBuffer(window)

    def update(self, x: float) -> tuple[float, float, float]:
        """Return ``(z, median, scale)`` of ``x`` (NaNs while warming up) and absorb it."""
        hist = self._hist.view()
        if hist.size < self.min_history:
            self._hist.append(x)
            return float("nan"), float("nan"), float("nan")
        med, mad = median_mad(hist)
        scale = max(MAD_TO_SIGMA * mad, 1e-9, 1e-3 * abs(med))
        self._hist.append(x)
        return abs(x - med) / scale, med, scale

    def clear(self) -> None:
        self._hist.clear()


class TailProbabilityDetector(UnivariateDetector):
    """Value, level, seasonal (optionally context) surprise as tail probabilities; sparse alarms.

    The score is ``-log10`` of the smallest tail probability of the features (see the module
    docstring); severities follow :class:`Thresholds` on that scale, and ``evidence["alarm"]``
    marks the first point of each event.
    """

    name = "tail_probability"

    def __init__(
        self,
        *,
        window: int = 300,
        min_history: int = 50,
        short_window: int = 6,
        season_min_acf: float = 0.5,
        alarm_level: float = 2.5,
        refractory: int | None = None,
        context_order: int | None = None,
        context_bins: int = 8,
        escalation: float | None = None,
        thresholds: Thresholds | None = None,
    ) -> None:
        """Configure the detector.

        Args:
            window: trailing points for the medians / MADs, and the warm-up used to look for a
                seasonal period (NAB: the probationary length).
            min_history: points needed before a feature is scored, and scores needed before a
                feature is calibrated.
            short_window: points in the recent window of the level test.
            season_min_acf: autocorrelation needed to treat the series as seasonal.
            alarm_level: score (``-log10`` probability) at which an alarm is raised.
            refractory: points after an alarm during which no new alarm is raised
                (default ``window // 2``).
            context_order: longest context of the context-novelty feature; None leaves the
                feature out. Its grid is fitted on the warm-up, which is then replayed through
                it (as for the seasonal feature).
            context_bins: quantiser cells across the warm-up's central 90%.
            escalation: if set, a point inside the refractory period alarms anyway when its
                score is at least the last alarm's plus this much.
            thresholds: severities on the score scale (default ``alarm_level`` / +1.5 / +3.5).
        """
        lvl = alarm_level
        super().__init__(thresholds=thresholds or Thresholds(lvl, lvl + 1.5, lvl + 3.5))
        if min_history < 2 or window < min_history:
            raise ValueError("need 2 <= min_history <= window")
        if short_window < 1:
            raise ValueError("short_window must be >= 1")
        if context_order is not None and context_order < 0:
            raise ValueError("context_order must be >= 0")
        if context_bins < 1:
            raise ValueError("context_bins must be >= 1")
        if escalation is not None and escalation <= 0.0:
            raise ValueError("escalation must be > 0")
        self.window = window
        self.min_history = min_history
        self.short_window = short_window
        self.season_min_acf = season_min_acf
        self.alarm_level = alarm_level
        self.refractory = window // 2 if refractory is None else refractory
        self.context_order = context_order
        self.context_bins = context_bins
        self.escalation = escalation
        self._reset_state()

    def _reset_state(self) -> None:
        self._t = 0
        self._value_z = _RollingZ(self.window, self.min_history)
        self._seasonal_z = _RollingZ(self.window, self.min_history)
        self._calib = {
            k: TailCalibrator(
                min_history=self.min_history,
                min_scale=CONTEXT_MIN_SCALE if k == "context" else 0.0,
            )
            for k in FEATURES
        }
        self._context: ContextNovelty | None = None
        self._recent: deque[float] = deque(maxlen=self.short_window)
        self._refs: deque[tuple[float, float]] = deque(maxlen=self.short_window)
        self._warmup: list[float] = []
        self._warm = True
        self._season: int | None = None
        self._season_acf = float("nan")
        self._season_buf: RingBuffer | None = None
        self._last_alarm = -(10**18)
        self._last_alarm_score = float("inf")

    @property
    def period(self) -> int | None:
        """The seasonal period found in the warm-up (None before it ends or when not seasonal)."""
        return self._season

    def _feature(self, name: str, raw: float) -> float:
        calib = self._calib[name]
        s = calib.surprise(raw)
        calib.add(raw)
        return s

    def _seasonal_raw(self, x: float) -> float:
        """Seasonal-difference z of ``x`` (NaN before the period is known and history exists)."""
        if self._season_buf is None:
            return float("nan")
        buf = self._season_buf
        lagged = float(buf.view()[0])
        buf.append(x)
        return self._seasonal_z.update(x - lagged)[0]

    def _end_warmup(self) -> None:
        """Look for a period in the warm-up; replay it through the seasonal and context features."""
        warm = np.asarray(self._warmup, dtype=np.float64)
        self._warmup = []
        self._warm = False
        if self.context_order is not None:
            self._context = ContextNovelty(
                warm,
                order=self.context_order,
                bins=self.context_bins,
                short_window=self.short_window,
            )
            for v in warm:
                self._calib["context"].add(self._context.update(float(v)))
        period, acf = detect_season(warm, min_acf=self.season_min_acf)
        self._season_acf = acf
        if period is None:
            return
        self._season = period
        self._season_buf = RingBuffer(period)
        for v in warm[:period]:
            self._season_buf.append(float(v))
        for v in warm[period:]:
            self._feature("seasonal", self._seasonal_raw(float(v)))

    def _score_point(self, x: float) -> tuple[float, dict[str, float]]:
        t = self._t
        self._t += 1
        z, med, scale = self._value_z.update(x)
        self._recent.append(x)
        # the level test's reference is the value window as it stood short_window - 1 points ago
        self._refs.append((med, scale))
        level = float("nan")
        if len(self._refs) == self.short_window:
            ref_med, ref_scale = self._refs[0]
            if math.isfinite(ref_med):
                mean = sum(self._recent) / self.short_window
                level = abs(mean - ref_med) / (ref_scale / math.sqrt(self.short_window))
        seasonal = self._seasonal_raw(x)
        bits = self._context.update(x) if self._context is not None else float("nan")
        surprise = {
            "value": self._feature("value", z),
            "level": self._feature("level", level),
            "seasonal": self._feature("seasonal", seasonal),
        }
        if self.context_order is not None:
            surprise["context"] = self._feature("context", bits)
        if self._warm:
            self._warmup.append(x)
            if len(self._warmup) >= self.window:
                self._end_warmup()
        score = max(surprise.values())
        alarm = score >= self.alarm_level and (
            t - self._last_alarm > self.refractory
            or (self.escalation is not None and score >= self._last_alarm_score + self.escalation)
        )
        if alarm:
            self._last_alarm = t
            self._last_alarm_score = score
        evidence = {
            "score": score,
            "alarm": 1.0 if alarm else 0.0,
            "value_z": z,
            "level_z": level,
            "seasonal_z": seasonal,
            "context_bits": bits,
            "season": float(self._season) if self._season else 0.0,
            **{f"{k}_surprise": v for k, v in surprise.items()},
        }
        return score, evidence
