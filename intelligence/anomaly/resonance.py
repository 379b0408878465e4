"""Resonance novelty: how far the recent window's shape lies from every learned normal window.

The features of :mod:`intelligence.anomaly.tail_probability` measure a point against the spread
of its own past (a robust z, a code length); a weak false alarm and a weak first hit are then the
same event, a value in the top fraction of a percent of its history. A model of the series'
normal *behaviour* can separate them: a window that looks like a learned one is normal however
large its values, a window unlike any learned one is new however small. This module gives the
detector such a model, after ARTime (Hampton's adaptive-resonance detector for NAB, written from
its published description and code, not copied):

* the series is downsampled by ``step`` points (a block's extreme when it stands out from the
  block mean by more than ``chomp`` of the reference range, else the block mean, so a spike
  survives and noise is averaged away), and the last ``window`` downsampled values form the
  window;
* the window is coded as its *shape* and its *level* (the reference's 5-95% range mapped to
  [0.25, 0.75], clipped to [0, 1]), then complement-coded (``[a, 1 - a]``), as fuzzy ART
  requires. The shape is, with ``shape="window"`` (ARTime's), the window less its minimum over
  its own range (floored at ``chomp`` of the reference range); with ``shape="reference"``, the
  window less its mean over the reference range, centred on 0.5 and clipped: the amplitude is
  kept, so noise on a flat stretch stays a small wiggle instead of being blown up to a full
  shape;
* a fuzzy ART table of at most ``categories`` hyper-boxes is the model. The window *resonates*
  with a category when the box grown to hold it keeps a match ``|I ^ w| / |I|`` of at least
  ``vigilance``; it then learns (the box grows, ``learning_rate`` 1 is ART's fast learning).
  Otherwise it founds a new category, replacing the least recently used one when the table is
  full (ARTime's table grows without bound; ours does not).

The raw novelty is computed before learning: the L1 distance (per coded dimension) from the
window to the nearest learned box, ``min_j (|w_j| - |I ^ w_j|) / |I|``: 0 inside a learned box,
large for a shape or level never seen. It is emitted once per ``step`` points (NaN between).

:class:`ErrorLikelihood` is the optional output stage after HTM's anomaly likelihood (Ahmad et
al., 2017): the mean of the last ``short`` errors against the mean and standard deviation of
that short mean over the last ``long`` values, as a Gaussian tail, ``-log10 Q(z)``: sustained
error is news, an error as large as usual is not.

State is bounded (a fixed table, fixed windows) and the work per point is constant: one
vectorised match against at most ``categories`` boxes every ``step`` points. Pure: numpy only.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from intelligence.anomaly._recent import RecentMean

__all__ = ["ErrorLikelihood", "ResonanceNovelty"]

SHAPES = ("window", "reference")


class ResonanceNovelty:
    """Fuzzy ART over downsampled, complement-coded windows; novelty is the distance to a box."""

    def __init__(
        self,
        reference: ArrayLike,
        *,
        window: int = 8,
        step: int = 1,
        vigilance: float = 0.9,
        categories: int = 64,
        learning_rate: float = 1.0,
        chomp: float = 0.1,
        shape: str = "window",
    ) -> None:
        """Fix the coding from ``reference`` (a warm-up) and start with an empty table.

        Args:
            reference: values whose 5-95% range scales the level code and the shape floor.
            window: downsampled values per coded window.
            step: raw points per downsampled value.
            vigilance: match a window needs to resonate with a category (0 < vigilance <= 1).
            categories: most categories the table keeps (least recently used replaced).
            learning_rate: how far a resonating box moves towards the window (1: fast learning).
            chomp: fraction of the reference range below which deviations are noise.
            shape: how the window's shape is scaled: ``"window"`` (by its own range) or
                ``"reference"`` (by the reference range, amplitude kept).
        """
        _check(window, step, vigilance, categories, learning_rate, chomp)
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
        self.shape = shape
        ref = np.asarray(reference, dtype=np.float64)
        ref = ref[np.isfinite(ref)]
        if ref.size == 0:
            raise ValueError("reference needs at least one finite value")
        lo, hi = (float(q) for q in np.quantile(ref, [0.05, 0.95]))
        self.window, self.step, self.vigilance = window, step, vigilance
        self.categories, self.learning_rate, self.chomp = categories, learning_rate, chomp
        self._lo = lo
        self._span = max(hi - lo, 1e-9, 1e-3 * abs(hi))
        self._half = 2.0 * window  # |I| of a complement-coded window of 2 * window values
        self._weights = np.zeros((categories, 4 * window))
        self._sizes = np.zeros(categories)  # |w_j| per category
        self._last_use = np.zeros(categories, dtype=np.int64)
        self._used = 0
        self._steps = 0
        self._values: deque[float] = deque(maxlen=window)
        self._block: list[float] = []
        self._trend = math.nan
        self._last = math.nan

    def __len__(self) -> int:
        """Categories in the table (at most ``categories``)."""
        return self._used

    def update(self, x: float) -> float:
        """Absorb ``x``; every ``step`` points return the window's novelty (else NaN)."""
        block = self._block
        block.append(x)
        if len(block) < self.step:
            return math.nan
        d, self._trend = self._downsample(block)
        block.clear()
        self._values.append(d)
        if len(self._values) < self.window:
            return math.nan
        self._last = self._resonate(self._code(self._values))
        return self._last

    def pending(self) -> float:
        """Novelty of the window that ends with the latest point, without learning it.

        Right after a step's last point it is the novelty :meth:`update` returned; inside a
        step the partial block stands in for the window's last value. NaN before the first
        full window or when the table is empty.
        """
        block = self._block
        if not block:
            return self._last
        if len(self._values) < self.window - 1 or not self._used:
            return math.nan
        d, _ = self._downsample(block)
        values = [*list(self._values)[1 - self.window :], d]
        return self._match(self._code(values))[2]

    def _downsample(self, block: list[float]) -> tuple[float, float]:
        """The block's mean, or its extreme when that stands out (a spike survives); and the
        updated trend (the running mean the extreme is measured from)."""
        mean = sum(block) / len(block)
        trend = mean if self._trend != self._trend else 0.5 * (self._trend + mean)
        hi, lo = max(block), min(block)
        extreme = hi if abs(hi - trend) >= abs(lo - trend) else lo
        return (extreme if abs(extreme - mean) >= self.chomp * self._span else mean), trend

    def _code(self, values: Iterable[float]) -> NDArray[np.float64]:
        """Shape and level of a window, complement-coded (plain floats: 8 values are cheaper
        in Python than through a dozen numpy calls)."""
        w = list(values)
        span, lo = self._span, self._lo
        if self.shape == "window":
            low = min(w)
            scale = max(max(w) - low, self.chomp * span)
            a = [(v - low) / scale for v in w]
        else:
            mean = sum(w) / len(w)
            a = [min(max(0.5 + (v - mean) / span, 0.0), 1.0) for v in w]
        a += [min(max(0.25 + 0.5 * (v - lo) / span, 0.0), 1.0) for v in w]
        a += [1.0 - v for v in a]
        return np.array(a)

    def _resonate(self, code: NDArray[np.float64]) -> float:
        """Distance of ``code`` to the nearest box before learning; then learn or found."""
        self._steps += 1
        n = self._used
        if n == 0:
            self._found(code)
            return math.nan
        mins, overlap, novelty = self._match(code)
        expansion = self._sizes[:n] - overlap
        expansion[overlap < self.vigilance * self._half] = np.inf  # boxes it cannot resonate with
        j = int(np.argmin(expansion))
        if expansion[j] == np.inf:
            self._found(code)
            return novelty
        lr = self.learning_rate
        if lr == 1.0:  # fast learning: the box becomes the grown box
            self._weights[j] = mins[j]
            self._sizes[j] = float(overlap[j])
        else:
            self._weights[j] = lr * mins[j] + (1.0 - lr) * self._weights[j]
            self._sizes[j] = float(self._weights[j].sum())
        self._last_use[j] = self._steps
        return novelty

    def _match(
        self, code: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
        """``code ^ w_j`` per category, their sizes, and the distance to the nearest box."""
        n = self._used
        mins = np.minimum(self._weights[:n], code)
        overlap = mins.sum(axis=1)
        novelty = max(float((self._sizes[:n] - overlap).min()), 0.0) / self._half
        return mins, overlap, novelty

    def _found(self, code: NDArray[np.float64]) -> None:
        """A new category at ``code``: a free slot, else the least recently used one."""
        n = self._used
        j = n if n < self.categories else int(np.argmin(self._last_use[:n]))
        self._weights[j] = code
        self._sizes[j] = self._half
        self._last_use[j] = self._steps
        self._used = max(n, j + 1)


def _check(
    window: int, step: int, vigilance: float, categories: int, learning_rate: float, chomp: float
) -> None:
    """Refuse parameters the model cannot work with, naming each."""
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if not 0.0 < vigilance <= 1.0:
        raise ValueError(f"vigilance must be in (0, 1], got {vigilance}")
    if categories < 1:
        raise ValueError(f"categories must be >= 1, got {categories}")
    if not 0.0 < learning_rate <= 1.0:
        raise ValueError(f"learning_rate must be in (0, 1], got {learning_rate}")
    if chomp < 0.0:
        raise ValueError(f"chomp must be >= 0, got {chomp}")


LOG10_HALF = math.log10(0.5)


def gaussian_tail_surprise(z: float) -> float:
    """``-log10 P(Z >= z)`` of a standard normal (0 for ``z <= 0``; asymptotic far out)."""
    if not z > 0.0:
        return 0.0
    if z < 30.0:
        return -math.log10(0.5 * math.erfc(z / math.sqrt(2.0)))
    return (z * z / 2.0) / math.log(10.0) + math.log10(z * math.sqrt(2.0 * math.pi))


class ErrorLikelihood:
    """HTM-style likelihood: short mean of an error against the long history of that mean."""

    def __init__(self, *, short: int = 10, long: int = 500, min_history: int = 50) -> None:
        """Configure the windows (in error values, i.e. emitted points).

        Args:
            short: errors averaged into the short mean.
            long: short means whose mean and spread are the reference.
            min_history: short means needed before any surprise (earlier ones give 0).
        """
        if short < 1 or long < 2:
            raise ValueError(f"need short >= 1 and long >= 2, got short={short} long={long}")
        if not 2 <= min_history <= long:
            raise ValueError(f"min_history must be in [2, long={long}], got {min_history}")
        self.min_history = min_history
        self._short = RecentMean(short)
        self._mean = RecentMean(long)
        self._square = RecentMean(long)

    def __len__(self) -> int:
        """Short means held in the long reference (at most ``long``)."""
        return len(self._mean)

    def update(self, error: float) -> float:
        """``-log10`` Gaussian tail of the short mean including ``error`` (NaN passes as NaN)."""
        if not math.isfinite(error):
            return math.nan
        self._short.append(error)
        a = self._short.mean()
        out = 0.0
        if len(self._mean) >= self.min_history:
            mu = self._mean.mean()
            sd = math.sqrt(max(self._square.mean() - mu * mu, 0.0))
            out = gaussian_tail_surprise((a - mu) / max(sd, 1e-6, 1e-3 * abs(mu)))
        self._mean.append(a)
        self._square.append(a * a)
        return out
