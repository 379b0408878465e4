"""Adaptive-resonance novelty detector: an alarm is a window no learned category explains.

The other detectors of this package measure a point against the spread of its own past, so a
stationary stream keeps alarming at the same rate per point for ever (a calibrated tail is
exceeded a fixed share of the time). A *novelty* detector alarms less as it learns: once the
series' normal windows are categories of its model, only a window unlike all of them alarms.
This detector follows ARTime (M. Hampton's adaptive-resonance detector, the best published
NAB detector), re-written here from its published description and algorithm, with the changes
a streaming, bounded detector needs (below). Nothing is copied.

How it works, per point ``x``:

* **Downsampling.** Blocks of ``step`` points (``step = probation / (window x
  windows_per_probation)``, at least 1) become one value: the block's extreme (the one further
  from a running average of block means) when it stands more than 10 % away from the block's
  mean, else the mean, so spikes survive and noise is averaged away.
* **Levels.** The value is scaled to the stream's range, rounded to ``levels`` steps, and
  snapped to the running median when within ``snap`` of it (small wiggles around the usual
  level are not news).
* **Coding.** The last ``window`` levels form a window, coded as its *shape* (the window over its
  own range, through a full Haar transform, rescaled to [0, 1]) and its levels, then
  complement-coded (``[a, 1 - a]``), as fuzzy ART requires.
* **Dual-vigilance fuzzy ART.** Each category is a box. The match of a window with a box is
  ``fs**3 x es**2``, ``fs`` the share of the box the window's fuzzy AND keeps, ``es`` the same
  for the latest level alone. Boxes matching at the upper vigilance ``rho_ub`` or more learn the
  window (fast commit); otherwise a box matching at the lower vigilance ``rho_lb`` gets a new
  sibling category (a known kind of window, a little different); a window matching no box at
  ``rho_lb`` founds a new kind: that is the candidate anomaly.
* **Masking.** A candidate alarms only when the detector is not masking: masking lasts
  ``1.5 x window`` steps after an alarm and, after a new kind or a vigilance update, until
  ``1.5 x window`` steps pass without a new kind. A candidate inside the mask alarms anyway if
  its match is well below the last alarm's (0.9 x it right after the alarm, 0.7 x later).
* **Adaptive vigilance.** The vigilances start at the value that a trial model of the warm-up
  (ordered from least to most typical window, vigilance ``initial_vigilance``) reaches on its
  second half; every half warm-up of steps, and once after each alarm's mask, ``rho_ub`` becomes
  the mean match so far (at most 0.97) and ``rho_lb`` moves a fifth of the way up to the
  smallest recent match, or down by half the typical recent shortfall (never below the mean
  match of past alarms).
* **Output.** At an alarm, a confidence in (0, 1] from how far the match lies below both
  vigilances and how far the latest level lies from its box; 0 elsewhere.

Differences from ARTime, each for causality or bounded state:

* ARTime scales with the whole file's minimum and maximum, which a streaming detector cannot
  know. Here the scale is the warm-up's range, widened whenever a value falls outside it; the
  learned boxes, the window and the median are re-expressed in the new scale (a linear map), so
  every score uses data up to its point only and the model means what ARTime's would have meant
  had the file ended there.
* The category table holds at most ``max_categories`` boxes (least recently used replaced);
  ARTime's grows without bound. The running median is the median of a seeded 2000-value
  reservoir of the block values (ARTime: a histogram of levels); the means are running sums.

State is bounded (a fixed table, fixed windows, a fixed reservoir) and the work is constant per
point: one vectorised match against the table every ``step`` points.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numpy.typing import NDArray

from intelligence.anomaly._streaming import UnivariateDetector
from intelligence.anomaly._windows import SortedReservoir
from intelligence.anomaly.base import Thresholds

__all__ = ["AdaptiveResonanceDetector"]

RANGE_MODES = ("running", "warmup", "rank")


def haar(values: list[float]) -> list[float]:
    """Full orthonormal Haar transform of a power-of-two length list (approximation first,
    then details from the coarsest to the finest).

    A detail is the second value of its pair less the first, as in Wavelets.jl (ARTime's
    transform: its detail filter is the scaling filter with every other sign flipped, applied
    to the current sample and the one before). The sign matters here: the code rescales the
    approximation and the details together over their own range, so flipped details are not a
    mirror image of the same code (first-minus-second cost 3.3 points of NAB standard
    in-sample with the file's range, docs/intelligence/anomaly.md, seventh round)."""
    out: list[float] = []
    a = values
    r = 1.0 / math.sqrt(2.0)
    while len(a) > 1:
        pairs = range(0, len(a), 2)
        out = [(a[i + 1] - a[i]) * r for i in pairs] + out
        a = [(a[i] + a[i + 1]) * r for i in pairs]
    return a + out


def _unit(values: list[float]) -> list[float]:
    """``values`` less their minimum, over their range (all 0 when flat)."""
    low = min(values)
    span = max(values) - low
    if span == 0.0:
        return [0.0] * len(values)
    return [(v - low) / span for v in values]


def _check(
    *,
    probation: int,
    window: int,
    windows_per_probation: int,
    levels: int,
    snap: float,
    initial_vigilance: float,
    max_categories: int,
    range_mode: str,
    range_margin: float,
    relearn_growth: float | None,
    relearn_memory: float,
) -> None:
    """Refuse a parameter out of its range, by name."""
    if window < 2 or window & (window - 1):
        raise ValueError(f"window must be a power of two >= 2, got {window}")
    if windows_per_probation < 2:
        raise ValueError(f"windows_per_probation must be >= 2, got {windows_per_probation}")
    if probation < 2 * window:
        raise ValueError(f"probation must be >= 2 x window = {2 * window}, got {probation}")
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if not 0.0 <= snap < 1.0:
        raise ValueError(f"snap must be in [0, 1), got {snap}")
    if not 0.0 < initial_vigilance < 1.0:
        raise ValueError(f"initial_vigilance must be in (0, 1), got {initial_vigilance}")
    if max_categories < 2:
        raise ValueError(f"max_categories must be >= 2, got {max_categories}")
    if not 0.0 <= range_margin <= 10.0:
        raise ValueError(f"range_margin must be in [0, 10], got {range_margin}")
    if range_mode not in RANGE_MODES:
        raise ValueError(f"range_mode must be one of {RANGE_MODES}, got {range_mode!r}")
    if relearn_growth is not None and (relearn_growth < 0.0 or range_mode != "running"):
        raise ValueError(
            "relearn_growth needs range_mode='running' and a share >= 0, "
            f"got {relearn_growth!r} with range_mode={range_mode!r}"
        )
    if not 0.0 < relearn_memory <= 10.0:
        raise ValueError(f"relearn_memory must be in (0, 10] warm-ups, got {relearn_memory}")


class AdaptiveResonanceDetector(UnivariateDetector):
    """Dual-vigilance fuzzy ART over downsampled windows; alarms on new kinds of window."""

    name = "adaptive_resonance"

    def __init__(
        self,
        *,
        probation: int,
        window: int = 8,
        windows_per_probation: int = 13,
        levels: int = 80,
        snap: float = 0.075,
        initial_vigilance: float = 0.8,
        max_categories: int = 1024,
        range_mode: str = "running",
        range_margin: float = 0.0,
        relearn_growth: float | None = None,
        relearn_memory: float = 1.0,
        thresholds: Thresholds | None = None,
    ) -> None:
        """Configure the detector.

        Args:
            probation: warm-up length in points (NAB: 15 % of the file, at most 750); nothing
                alarms during it, and it sets the time scale (``step``, the vigilance updates).
            window: downsampled values per coded window (a power of two).
            windows_per_probation: windows a warm-up holds (sets ``step``).
            levels: rounding steps across the range.
            snap: distance (share of the range) within which a level snaps to the median.
            initial_vigilance: vigilance of the trial model that sets the starting vigilances.
            max_categories: most boxes the table keeps (least recently used replaced).
            range_mode: ``"running"`` (the warm-up's range, widened by later extremes) or
                ``"warmup"`` (the warm-up's range, later values clipped to it), or ``"rank"``
                (no range: a value's level is its mid-rank among a uniform sample of the values
                so far, so the coding is scale-free; the median snap is then in rank units).
            range_margin: the warm-up's range is widened by this share of its span on each side
                before it is fixed (room for ordinary excursions beyond the warm-up's).
            relearn_growth: with ``range_mode="running"``, once the range has grown by more than
                this share of its span since the table was last learned, the table is rebuilt:
                cleared and re-learned from the last block values, coded in the new scale (what
                the model would hold had the stream been scaled so from the start). None: the
                boxes are only re-expressed (a linear map). Eighth NAB round, not adopted.
            relearn_memory: block values kept for a rebuild, in warm-ups (at least ``window``).
            thresholds: severities on the confidence (default 0.3 / 0.5 / 0.8).
        """
        super().__init__(thresholds=thresholds or Thresholds(0.3, 0.5, 0.8))
        _check(
            probation=probation,
            window=window,
            windows_per_probation=windows_per_probation,
            levels=levels,
            snap=snap,
            initial_vigilance=initial_vigilance,
            max_categories=max_categories,
            range_mode=range_mode,
            range_margin=range_margin,
            relearn_growth=relearn_growth,
            relearn_memory=relearn_memory,
        )
        self.probation = probation
        self.window = window
        self.levels = levels
        self.snap = snap
        self.initial_vigilance = initial_vigilance
        self.max_categories = max_categories
        self.range_mode = range_mode
        self.range_margin = range_margin
        self.relearn_growth = relearn_growth
        self.step = max(1, probation // (window * windows_per_probation))
        self.warmup_steps = max(2 * window, probation // self.step)
        self.mask = int(1.5 * window)
        self._dim = 2 * window
        self._memory_size = (
            0 if relearn_growth is None else max(window, int(relearn_memory * self.warmup_steps))
        )
        self._reset_state()

    # ------------------------------------------------------------------ state

    def _reset_state(self) -> None:
        d2 = 2 * self._dim
        self._block: list[float] = []
        self._average = math.nan  # running average of block means (the extreme's reference)
        self._steps = 0  # downsampled values so far
        self._lo = math.inf
        self._hi = -math.inf
        self._scaled = False  # the range is fixed (end of the warm-up)
        self._raw_warmup: list[float] = []  # block values of the warm-up, unscaled
        self._memory: deque[float] = deque(maxlen=self._memory_size)  # for a rebuild, unscaled
        self._learned_span = math.nan  # the range's span when the table was last learned
        self._median = SortedReservoir(2000)
        self._levels: deque[float] = deque(maxlen=self.window)
        # fuzzy ART table
        self._w = np.zeros((self.max_categories, d2))
        self._size = np.zeros(self.max_categories)
        self._used_at = np.zeros(self.max_categories, dtype=np.int64)
        self._n = 0
        self._rho_lb = self._rho_ub = self.initial_vigilance
        # vigilance and masking
        self._match_sum = 0.0
        self._match_count = 0
        half = self.warmup_steps // 2
        self._recent_match: deque[float] = deque([1.0] * (half + 1), maxlen=half + 1)
        full = self.warmup_steps + 1
        self._shortfall: deque[float] = deque([0.0] * full, maxlen=full)
        self._alarm_step = 0
        self._alarm_match = 0.0
        self._alarm_sum = 0.0  # matches of past alarms, the latest one excluded
        self._alarm_count = 0
        self._alarm_latest = math.nan  # the latest alarm's match (lowered within its mask)
        self._rho_step = 0
        self._mask_after_new = False
        self._quiet = 0  # steps since a new kind of window
        self._last: dict[str, float] = {}

    def state_size(self) -> dict[str, int]:
        """Numbers held per part (bounded: a fixed table, fixed windows, a fixed reservoir)."""
        return {
            "categories": self._n,
            "table": int(self._w.size + self._size.size + self._used_at.size),
            "matches": len(self._recent_match) + len(self._shortfall),
            "median": len(self._median),
            "window": len(self._levels) + len(self._block) + len(self._raw_warmup),
            "memory": len(self._memory),
        }

    @property
    def categories(self) -> int:
        """Boxes in the table."""
        return self._n

    @property
    def vigilance(self) -> tuple[float, float]:
        """The current lower and upper vigilances."""
        return self._rho_lb, self._rho_ub

    # ------------------------------------------------------------------ points

    def _score_point(self, x: float) -> tuple[float, dict[str, float]]:
        if not self._scaled:
            self._lo = min(self._lo, x)
            self._hi = max(self._hi, x)
        elif (x < self._lo or x > self._hi) and self.range_mode == "running":
            self._rescale(min(self._lo, x), max(self._hi, x))
        block = self._block
        block.append(x)
        if len(block) < self.step:
            return 0.0, {"warming_up": 1.0} if not self._scaled else {}
        value = self._downsample(block)
        block.clear()
        self._steps += 1
        if not self._scaled:
            self._raw_warmup.append(value)
            self._memory.append(value)
            if self._steps < self.warmup_steps:
                return 0.0, {"warming_up": 1.0}
            self._start()
            self._learned_span = self._hi - self._lo
            return 0.0, {"warming_up": 1.0}
        growth = self.relearn_growth
        if growth is not None and self._hi - self._lo > (1.0 + growth) * self._learned_span:
            self._relearn()
        self._memory.append(value)
        features = self._features(value)
        score = self._detect(features, self._steps)
        return score, self._evidence(score)

    def _evidence(self, score: float) -> dict[str, float]:
        ev = dict(self._last)
        ev.update(
            alarm=1.0 if score > 0.0 else 0.0,
            vigilance_lower=self._rho_lb,
            vigilance_upper=self._rho_ub,
            categories=float(self._n),
        )
        return ev

    def _downsample(self, block: list[float]) -> float:
        mean = sum(block) / len(block)
        avg = mean if self._average != self._average else self._average
        avg = 0.5 * (avg + mean)
        self._average = avg
        hi, lo = max(block), min(block)
        value = lo if abs(lo - avg) > abs(hi - avg) else hi
        if abs(value - mean) < 0.1 * abs(mean):
            value = mean
        return value

    # ------------------------------------------------------------------ scale

    def _norm(self, value: float) -> float:
        span = self._hi - self._lo
        z = (value - self._lo) / span if span > 0.0 else 0.0
        return min(max(z, 0.0), 1.0)

    def _level(self, value: float, *, sampled: bool = False) -> float:
        if not sampled:
            self._median.append(value)
        n = self.levels
        if self.range_mode == "rank":
            z = round(self._rank(value) * n) / n
            return 0.5 if abs(z - 0.5) < self.snap else z
        z = round(self._norm(value) * n) / n
        med = round(self._norm(self._median.at(0.5)) * n) / n
        return med if abs(z - med) < self.snap else z

    def _rank(self, value: float) -> float:
        """Mid-rank of ``value`` in the sample, in [0, 1]."""
        at_least = self._median.fraction_at_least
        return 1.0 - 0.5 * (at_least(value) + at_least(math.nextafter(value, math.inf)))

    def _rescale(self, lo: float, hi: float) -> None:
        """Widen the range to ``[lo, hi]``; re-express the levels and the boxes in it."""
        old_span = self._hi - self._lo
        span = hi - lo
        if span <= 0.0:
            self._lo, self._hi = lo, hi
            return
        a = old_span / span
        b = (self._lo - lo) / span
        self._lo, self._hi = lo, hi
        self._levels = deque((a * v + b for v in self._levels), maxlen=self.window)
        n, d, w = self._n, self._dim, self.window
        if n:
            box = self._w[:n]
            box[:, w:d] = a * box[:, w:d] + b  # lower corners of the levels
            box[:, d + w :] = 1.0 - (a * (1.0 - box[:, d + w :]) + b)  # complemented uppers
            self._size[:n] = box.sum(axis=1)

    def _relearn(self) -> None:
        """Rebuild the table from the remembered block values, coded in the current scale."""
        self._n = 0
        self._levels.clear()
        first = self._steps - len(self._memory)
        for k, value in enumerate(self._memory):
            code = self._features(value, sampled=True)
            if code is not None:
                self._learn(code, step=first + k)
        self._learned_span = self._hi - self._lo

    # ------------------------------------------------------------------ coding

    def _features(self, value: float, *, sampled: bool = False) -> NDArray[np.float64] | None:
        self._levels.append(self._level(value, sampled=sampled))
        if len(self._levels) < self.window:
            return None
        levels = list(self._levels)
        shape = _unit(haar(_unit(levels)))
        a = shape + levels
        return np.array(a + [1.0 - v for v in a])

    def _start(self) -> None:
        """End of the warm-up: fix the range, code the warm-up, set the vigilances, learn it."""
        self._scaled = True
        margin = self.range_margin * (self._hi - self._lo)
        self._lo, self._hi = self._lo - margin, self._hi + margin
        raw, self._raw_warmup = self._raw_warmup, []
        rank = self.range_mode == "rank"
        if rank:  # every warm-up value ranks against the whole warm-up
            for v in raw:
                self._median.append(v)
        codes = [self._features(v, sampled=rank) for v in raw]
        known = [c for c in codes if c is not None]
        if len(known) >= 2:
            rho = self._trial_vigilance(np.array(known))
            self._rho_lb = self._rho_ub = rho
        for i, code in enumerate(codes, start=1):
            self._detect(code, i, warmup=True)

    def _trial_vigilance(self, codes: NDArray[np.float64]) -> float:
        """Mean best match over the second half of a trial model of the warm-up's windows,
        presented from the least to the most typical one (by summed cosine similarity)."""
        plain = codes[:, : self._dim]
        norms = np.linalg.norm(plain, axis=1)
        safe = np.where(norms == 0.0, 1.0, norms)
        sim = (plain @ plain.T) / np.outer(safe, safe)
        np.fill_diagonal(sim, 1.0)
        order = np.argsort(sim.sum(axis=0), kind="stable")
        trial = AdaptiveResonanceDetector(
            probation=self.probation,
            window=self.window,
            max_categories=max(self.max_categories, codes.shape[0] + 1),
            initial_vigilance=self.initial_vigilance,
        )
        trial._rho_lb = trial._rho_ub = self.initial_vigilance
        matches = [trial._learn(codes[j], step=k + 1)[1] for k, j in enumerate(order)]
        return float(np.mean(matches[len(matches) // 2 :]))

    # ------------------------------------------------------------------ fuzzy ART

    def _learn(self, code: NDArray[np.float64] | None, *, step: int) -> tuple[bool, float, float]:
        """Present ``code``: (founded a new kind, best match, its level match)."""
        if code is None:
            return True, 0.0, 0.0
        n = self._n
        if n == 0:
            self._add(code, step)
            return True, 0.0, 0.0
        mins, match, es = self._match(code)
        best = int(np.argmax(match))
        top, top_level = float(match[best]), float(es[best])
        resonant = np.flatnonzero(match >= self._rho_ub)
        if resonant.size:
            self._w[resonant] = mins[resonant]
            self._size[resonant] = mins[resonant].sum(axis=1)
            self._used_at[resonant] = step
            return False, top, top_level
        self._add(code, step)
        return top < self._rho_lb, top, top_level

    def _add(self, code: NDArray[np.float64], step: int) -> None:
        if self._n < self.max_categories:
            j = self._n
            self._n += 1
        else:
            j = int(np.argmin(self._used_at[: self._n]))
        self._w[j] = code
        self._size[j] = float(code.sum())
        self._used_at[j] = step

    def _detect(self, code: NDArray[np.float64] | None, i: int, *, warmup: bool = False) -> float:
        since = i - self._alarm_step
        mask_ends_now = since == self.mask
        vigilance_due = i - self._rho_step >= self.warmup_steps // 2
        in_alarm_mask = since <= self.mask
        if self._mask_after_new and i > self.warmup_steps + self.mask and self._quiet >= self.mask:
            self._mask_after_new = False
        learned = code is not None and i >= self.window
        if learned:
            new_kind, match, level_match = self._learn(code, step=i)
        else:
            new_kind, match, level_match = True, self._peek(code), 0.0
        self._quiet = 0 if new_kind else self._quiet + 1
        self._match_sum += match
        self._match_count += 1
        self._recent_match.append(match)
        self._shortfall.append(self._rho_ub - match)
        if since < self.mask and self._alarm_latest == self._alarm_latest:
            self._alarm_latest = min(self._alarm_latest, match)
        masking = self._mask_after_new or in_alarm_mask
        below_last = match < self._alarm_match * (0.9 if in_alarm_mask else 0.7)
        score = 0.0
        self._last = {"match": match, "level_match": level_match}
        if not warmup and new_kind and (not masking or below_last):
            score = self._confidence(match, level_match)
            if self._alarm_latest == self._alarm_latest:
                self._alarm_sum += self._alarm_latest
                self._alarm_count += 1
            self._alarm_latest = match
            self._alarm_match = match
            self._alarm_step = i
        self._mask_after_new = new_kind or self._mask_after_new
        if not warmup and (mask_ends_now or vigilance_due):
            self._adapt_vigilance(i)
        return score

    def _peek(self, code: NDArray[np.float64] | None) -> float:
        """Best match of ``code`` without learning (0 without a code or a table)."""
        if code is None or self._n == 0:
            return 0.0
        return float(self._match(code)[1].max())

    def _match(
        self, code: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Per box: the fuzzy AND with ``code``, the match ``fs**3 x es**2`` and ``es``."""
        n = self._n
        w = self._w[:n]
        mins = np.minimum(w, code)
        size = self._size[:n]
        fs = mins.sum(axis=1) / np.where(size == 0.0, 1e-3, size)
        d, last = self._dim, self.window * 2 - 1
        box = w[:, last] + w[:, d + last]
        kept = mins[:, last] + mins[:, d + last]
        es = np.where(box > 0.0, kept / np.where(box > 0.0, box, 1.0), 1.0)
        return mins, fs**3 * es**2, es

    def _adapt_vigilance(self, i: int) -> None:
        upper = min(0.97, self._match_sum / self._match_count)
        lower = self._rho_lb
        floor = min(self._recent_match)
        if lower <= floor:
            lower += 0.19 * (floor - lower)
        else:
            drop = 0.0
            if i > 2 * self.warmup_steps:
                short = [min(0.37, s) for s in self._shortfall if s > 0.05]
                if short:
                    drop = sum(short) / len(short)
            lower -= max(0.01, drop) / 2.0
            count = self._alarm_count + (1 if self._alarm_latest == self._alarm_latest else 0)
            if count:
                latest = self._alarm_latest if self._alarm_latest == self._alarm_latest else 0.0
                lower = max((self._alarm_sum + latest) / count, lower)
        self._rho_lb = min(upper, lower)
        self._rho_ub = upper
        self._rho_step = i
        self._mask_after_new = True

    def _confidence(self, match: float, level_match: float) -> float:
        m = min(0.999, match)
        gap = 1.0 - m
        upper = (gap - (1.0 - self._rho_ub)) / gap
        lower = (gap - (1.0 - self._rho_lb)) / gap
        return min(1.0, 0.35 * upper + 0.65 * lower + 1.5 * (1.0 - level_match))
