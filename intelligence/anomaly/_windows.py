"""A sliding window kept sorted: order statistics of the last ``capacity`` values in O(log n).

The tail-probability detector needs, at every point, medians and quartiles of a trailing
window and quantiles and exceedance counts of each feature's recent scores. Sorting the window
again at every point costs tens of microseconds; keeping it sorted as values enter and leave
costs one binary search and one memory move each (about a microsecond at a thousand values),
and the memory is fixed by ``capacity``, however long the stream. Pure: stdlib only.
"""

from __future__ import annotations

import bisect
import math
import random
from array import array
from collections import deque

__all__ = ["SortedReservoir", "SortedWindow"]


class SortedWindow:
    """The last ``capacity`` finite values, in arrival order and in sorted order."""

    __slots__ = ("_arrivals", "_sorted", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._arrivals: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def append(self, value: float) -> None:
        """Add ``value`` (NaN and infinities are ignored), dropping the oldest when full."""
        if not math.isfinite(value):
            return
        srt = self._sorted
        if len(srt) == self.capacity:
            del srt[bisect.bisect_left(srt, self._arrivals.popleft())]
        bisect.insort(srt, value)
        self._arrivals.append(value)

    def sorted_values(self) -> list[float]:
        """The window in ascending order: the live list, for readers in a hot loop (read it,
        never change it; it stays the same object for the window's life)."""
        return self._sorted

    def at(self, q: float) -> float:
        """The value at rank ``int(q * (n - 1))`` (a lower quantile); needs a non-empty window."""
        srt = self._sorted
        return srt[int(q * (len(srt) - 1))]

    def quantile(self, q: float) -> float:
        """The ``q`` quantile interpolated as ``numpy.quantile`` does by default (its linear
        method, the same arithmetic, so the same float); needs a non-empty window."""
        srt = self._sorted
        n = len(srt)
        pos = (n - 1) * q  # numpy's virtual index for its linear method
        if pos >= n - 1:
            return srt[-1]
        i = max(math.floor(pos), 0)
        t = pos - i
        a, b = srt[i], srt[i + 1]
        diff = b - a
        return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t

    def median(self) -> float:
        """The median (mean of the two middle values for an even count)."""
        srt = self._sorted
        n = len(srt)
        half = n // 2
        return srt[half] if n % 2 else 0.5 * (srt[half - 1] + srt[half])

    def count_at_least(self, value: float) -> int:
        """How many values in the window are >= ``value``."""
        return len(self._sorted) - bisect.bisect_left(self._sorted, value)

    def clear(self) -> None:
        """Drop every value."""
        self._arrivals.clear()
        self._sorted.clear()


class SortedReservoir:
    """A uniform sample of at most ``capacity`` of all values seen, kept sorted.

    Algorithm R (Vitter): the ``n``-th value replaces a random member with probability
    ``capacity / n``, so the sample stays uniform over the whole history while its size, and
    the work per value, stay bounded. Seeded, so the same stream gives the same sample.

    The sample is kept as C doubles (``array('d')``, 16 bytes a value in its two orders, where
    lists of Python floats took about 42): each detector holds four full reservoirs for as long
    as it watches its series. Reading an array makes a float each time, so readers in a hot
    loop read it once per ``changes`` (after the first ``capacity`` values the sample changes
    at fewer and fewer of them) rather than once per value.
    """

    __slots__ = ("_members", "_random", "_seen", "_sorted", "capacity", "changes")

    def __init__(self, capacity: int, *, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._members = array("d")
        self._sorted = array("d")
        self._seen = 0
        self._random = random.Random(seed)
        self.changes = 0
        """How many times the sample has changed (readers cache what they read off it)."""

    def __len__(self) -> int:
        return len(self._sorted)

    @property
    def seen(self) -> int:
        """Values offered so far (finite ones)."""
        return self._seen

    def append(self, value: float) -> None:
        """Offer ``value`` to the sample (NaN and infinities are ignored)."""
        if not math.isfinite(value):
            return
        self._seen += 1
        seen = self._seen
        if seen <= self.capacity:
            self._members.append(value)
            bisect.insort(self._sorted, value)
            self.changes += 1
            return
        # randrange(seen), inlined (the same draws): rejection sampling on getrandbits.
        bits = seen.bit_length()
        getrandbits = self._random.getrandbits
        j = getrandbits(bits)
        while j >= seen:
            j = getrandbits(bits)
        if j >= self.capacity:
            return
        srt = self._sorted
        del srt[bisect.bisect_left(srt, self._members[j])]
        self._members[j] = value
        bisect.insort(srt, value)
        self.changes += 1

    def sorted_values(self) -> array[float]:
        """The sample in ascending order: the live array, for readers in a hot loop (read it,
        never change it; it stays the same object for the reservoir's life)."""
        return self._sorted

    def at(self, q: float) -> float:
        """The sample value at rank ``int(q * (n - 1))``; the sample must be non-empty."""
        srt = self._sorted
        return srt[int(q * (len(srt) - 1))]

    def above(self, value: float) -> array[float]:
        """The sample's values strictly above ``value``, ascending (a copy)."""
        srt = self._sorted
        return srt[bisect.bisect_right(srt, value) :]

    def fraction_at_least(self, value: float) -> float:
        """Fraction of the sample that is >= ``value``."""
        srt = self._sorted
        return (len(srt) - bisect.bisect_left(srt, value)) / len(srt) if srt else 0.0

    def clear(self) -> None:
        """Drop every value (the random stream restarts too)."""
        del self._members[:]
        del self._sorted[:]
        self.changes += 1
        self._seen = 0
        self._random.seed(0)
