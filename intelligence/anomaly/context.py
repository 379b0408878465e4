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


class ContextModel:
    """Online n-gram model of integer symbols with Witten-Bell interpolation, orders 0..order.

    Stored compactly (one analytics series keeps one model): a context is an integer (its
    symbols' codes as digits, newest lowest), and what followed it is one list ``[total,
    code, count, code, count, ...]``: about 300 bytes a context where a tuple key with a dict
    of counts took about 500 (``bench/anomaly_stream.py --memory``), with the same
    probabilities and the same eviction order.
    """

    def __init__(self, order: int = 4, *, max_contexts: int = 4096, max_symbols: int = 255) -> None:
        """Configure the model.

        Args:
            order: the longest context (number of previous symbols) the model conditions on.
            max_contexts: most contexts kept; the least recently seen is forgotten first.
            max_symbols: most distinct symbols (a :class:`Quantiser` makes ``3 * bins + 1``);
                learning one more is a ``ValueError``.
        """
        if order < 0:
            raise ValueError(f"order must be >= 0, got {order}")
        if max_contexts < order + 1:
            raise ValueError(f"max_contexts must be >= order + 1, got {max_contexts}")
        if max_symbols < 1:
            raise ValueError(f"max_symbols must be >= 1, got {max_symbols}")
        self.order = order
        self.max_contexts = max_contexts
        self.max_symbols = max_symbols
        self._base = max_symbols + 1
        self._table: OrderedDict[int, list[int]] = OrderedDict()
        self._codes: dict[int, int] = {}
        self._keys: list[int] = [0]

    def probability(self, symbol: int) -> float:
        """Predictive probability of ``symbol`` as the next one (before it is learnt).

        The base distribution gives every symbol seen so far, and one slot for a symbol never
        seen, the same share; each longer context seen before then mixes its own counts with
        the estimate of the context one shorter (Witten-Bell).
        """
        code = self._codes.get(symbol, 0)
        p = 1.0 / (len(self._codes) + 1)
        table = self._table
        for key in self._keys:
            row = table.get(key)
            if row is None:
                break
            count = 0
            if code:
                for i in range(1, len(row), 2):
                    if row[i] == code:
                        count = row[i + 1]
                        break
            distinct = len(row) >> 1
            p = (count + distinct * p) / (row[0] + distinct)
        return p

    def code_length(self, symbol: int) -> float:
        """``-log2`` of the predictive probability of ``symbol``, in bits."""
        return -math.log2(self.probability(symbol))

    def learn(self, symbol: int) -> None:
        """Count ``symbol`` after each of the current contexts, then append it to the history."""
        self.update(symbol)

    def update(self, symbol: int) -> float:
        """The code length of ``symbol`` in bits (predicted before it is learnt); then learn it.

        One pass over the contexts: each one's counts are read for the prediction, then
        counted; the same numbers as :meth:`code_length` followed by :meth:`learn`.
        """
        codes = self._codes
        code = codes.get(symbol, 0)
        p = 1.0 / (len(codes) + 1)
        if not code:
            if len(codes) >= self.max_symbols:
                raise ValueError(
                    f"symbol: the model holds at most max_symbols={self.max_symbols} distinct "
                    f"symbols; {symbol!r} would be one more"
                )
            code = codes[symbol] = len(codes) + 1
        table = self._table
        keys = self._keys
        # a context is touched whenever a longer one ending in it is, and before it, so it is
        # never evicted first: once one context is new, every longer one is new too
        for key in keys:
            row = table.get(key)
            if row is None:
                table[key] = [1, code, 1]
                if len(table) > self.max_contexts:
                    table.popitem(last=False)
                continue
            table.move_to_end(key)
            distinct = len(row) >> 1
            for i in range(1, len(row), 2):
                if row[i] == code:
                    count = row[i + 1]
                    row[i + 1] = count + 1
                    break
            else:
                count = 0
                row += (code, 1)
            p = (count + distinct * p) / (row[0] + distinct)
            row[0] += 1
        base = self._base
        self._keys = [0] + [code + base * key for key in keys[: self.order]]
        return -math.log2(p)

    def __len__(self) -> int:
        """Number of distinct contexts learnt."""
        return len(self._table)


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
        alphabet = self.quantiser.highest - self.quantiser.lowest + 1
        self.model = ContextModel(order, max_contexts=max_contexts, max_symbols=alphabet)
        self._recent: deque[float] = deque(maxlen=short_window)

    def update(self, value: float) -> float:
        """Code the value (predict, then learn); the windowed sum of bits, NaN until full."""
        symbol = self.quantiser.symbol(value)
        self._recent.append(self.model.update(symbol))
        if len(self._recent) < (self._recent.maxlen or 0):
            return float("nan")
        return float(sum(self._recent))
