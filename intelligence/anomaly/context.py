"""Context novelty: how surprising the recent sequence of discretised values is to an online model.

A detector that only measures distance from a typical level (a robust z) cannot see a series
that stays in its usual range but *moves* in an unusual way: a change of rhythm, a new
alternation between levels, a flattened or doubled cycle. This module gives such a detector a
novelty feature in the spirit of the Contextual Anomaly Detector (CAD-OSE: discretise the values,
learn value contexts online, score how new the current context is), written from that
description but with a probabilistic model instead of CAD's context neurons:

* :class:`Quantiser`: values become integer symbols of width ``(q95 - q05) / bins`` of a
  reference sample (the warm-up); values outside that range get their own symbols, so a new level
  is also a new symbol, up to ``bins`` cells beyond either end (the alphabet is bounded: at most
  ``3 * bins + 1`` symbols). Nothing of the future is used (CAD-OSE normalises with the whole file's
  minimum and maximum, which a streaming detector does not know).
* :class:`ContextModel`: an n-gram model over the symbols, orders 0 to ``order``, with
  Witten-Bell interpolation (each order backs off to the one below in proportion to how many
  distinct symbols followed its context). It is predictive: the probability of a symbol is
  computed before the model learns it, so ``-log2`` of it is the symbol's code length in bits:
  about 0 for a context seen many times, large for a symbol or transition never seen. The
  table of contexts is bounded (``max_contexts``, least recently used dropped first), so memory
  and time per point do not grow with the stream.
* :class:`ContextNovelty`: the sum of the code lengths of the last ``short_window`` symbols,
  a short run of surprising transitions rather than one odd point.

The raw novelty is in bits and its usual level depends on how predictable a series is (a noisy
series always costs some bits per point), so callers calibrate it against its own history, as
:class:`~intelligence.anomaly.tail_probability.TailProbabilityDetector` does.
Pure: numpy only, no I/O, no clock reads.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["ContextModel", "ContextNovelty", "Quantiser"]


class Quantiser:
    """Maps values to integer symbols on a grid fixed from a reference sample."""

    def __init__(self, reference: ArrayLike, *, bins: int = 8) -> None:
        """Fix the grid: ``bins`` cells between the reference's 5th and 95th percentiles.

        Args:
            reference: values the grid is fitted on (a detector's warm-up).
            bins: cells across the central 90% of the reference; the grid extends beyond it
                with cells of the same width.
        """
        if bins < 1:
            raise ValueError("bins must be >= 1")
        ref = np.asarray(reference, dtype=np.float64)
        ref = ref[np.isfinite(ref)]
        if ref.size == 0:
            raise ValueError("reference needs at least one finite value")
        lo, hi = (float(q) for q in np.quantile(ref, [0.05, 0.95]))
        self.origin = lo
        self.width = max((hi - lo) / bins, 1e-9, 1e-3 * abs(hi))
        self.lowest = -bins
        self.highest = 2 * bins

    def symbol(self, value: float) -> int:
        """The cell of ``value``; cells more than ``bins`` beyond the grid are merged."""
        cell = (value - self.origin) / self.width
        if cell < self.lowest:
            return self.lowest
        if cell >= self.highest:
            return self.highest
        return math.floor(cell)


class _Followers:
    """What followed one context: how often it was seen and each next symbol's count."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.total = 0
        self.counts: dict[int, int] = {}


class ContextModel:
    """Online n-gram model of integer symbols with Witten-Bell interpolation, orders 0..order."""

    def __init__(self, order: int = 4, *, max_contexts: int = 4096) -> None:
        """Configure the model.

        Args:
            order: the longest context (number of previous symbols) the model conditions on.
            max_contexts: most contexts kept; the least recently seen is forgotten first.
        """
        if order < 0:
            raise ValueError(f"order must be >= 0, got {order}")
        if max_contexts < order + 1:
            raise ValueError(f"max_contexts must be >= order + 1, got {max_contexts}")
        self.order = order
        self.max_contexts = max_contexts
        self._counts: OrderedDict[tuple[int, ...], _Followers] = OrderedDict()
        self._alphabet: set[int] = set()
        self._history: deque[int] = deque(maxlen=order)

    def contexts(self) -> list[tuple[int, ...]]:
        """The current contexts, shortest (empty) first."""
        return self._contexts()

    def _contexts(self) -> list[tuple[int, ...]]:
        hist = tuple(self._history)
        return [hist[len(hist) - d :] if d else () for d in range(len(hist) + 1)]

    def probability(self, symbol: int, contexts: list[tuple[int, ...]] | None = None) -> float:
        """Predictive probability of ``symbol`` as the next one (before it is learnt).

        The base distribution gives every symbol seen so far, and one slot for a symbol never
        seen, the same share; each longer context seen before then mixes its own counts with
        the estimate of the context one shorter (Witten-Bell).
        """
        p = 1.0 / (len(self._alphabet) + 1)
        for ctx in self._contexts() if contexts is None else contexts:
            seen = self._counts.get(ctx)
            if seen is None:
                break
            distinct = len(seen.counts)
            p = (seen.counts.get(symbol, 0) + distinct * p) / (seen.total + distinct)
        return p

    def code_length(self, symbol: int) -> float:
        """``-log2`` of the predictive probability of ``symbol``, in bits."""
        return -math.log2(self.probability(symbol))

    def learn(self, symbol: int, contexts: list[tuple[int, ...]] | None = None) -> None:
        """Count ``symbol`` after each of the current contexts, then append it to the history.

        ``contexts`` (from :meth:`contexts`, before this symbol) saves recomputing them.
        """
        self._alphabet.add(symbol)
        counts = self._counts
        for ctx in self._contexts() if contexts is None else contexts:
            seen = counts.get(ctx)
            if seen is None:
                seen = counts[ctx] = _Followers()
                if len(counts) > self.max_contexts:
                    counts.popitem(last=False)
            else:
                counts.move_to_end(ctx)
            seen.total += 1
            seen.counts[symbol] = seen.counts.get(symbol, 0) + 1
        self._history.append(symbol)

    def __len__(self) -> int:
        """Number of distinct contexts learnt."""
        return len(self._counts)


class ContextNovelty:
    """Bits needed to encode the last ``short_window`` values under an online context model."""

    def __init__(
        self,
        reference: ArrayLike,
        *,
        order: int = 4,
        bins: int = 8,
        short_window: int = 6,
        max_contexts: int = 4096,
    ):
        """Fix the symbol grid on ``reference`` (nothing is learnt from it yet).

        Args:
            reference: values the quantiser's grid is fitted on.
            order: longest context of the :class:`ContextModel`.
            max_contexts: most contexts the model keeps.
            bins: quantiser cells across the reference's central 90%.
            short_window: code lengths summed into one novelty value.
        """
        if short_window < 1:
            raise ValueError("short_window must be >= 1")
        self.quantiser = Quantiser(reference, bins=bins)
        self.model = ContextModel(order, max_contexts=max_contexts)
        self._recent: deque[float] = deque(maxlen=short_window)

    def update(self, value: float) -> float:
        """Code the value (predict, then learn); the windowed sum of bits, NaN until full."""
        symbol = self.quantiser.symbol(value)
        contexts = self.model.contexts()
        self._recent.append(-math.log2(self.model.probability(symbol, contexts)))
        self.model.learn(symbol, contexts)
        if len(self._recent) < (self._recent.maxlen or 0):
            return float("nan")
        return float(sum(self._recent))
