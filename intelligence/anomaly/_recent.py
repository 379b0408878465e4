"""Running mean of the last ``capacity`` finite values, in O(1) per value.

The feature calibrations of :mod:`intelligence.anomaly.tail_probability` can condition on the
recent past (the typical step size of the last points, the context feature's recent code
length): a window of fixed size with a running sum, so memory and time per point are bounded.
Pure: stdlib only.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["RecentMean"]


class RecentMean:
    """Mean of the last ``capacity`` finite values (NaN while empty)."""

    __slots__ = ("_sum", "_values", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._values: deque[float] = deque()
        self._sum = 0.0

    def __len__(self) -> int:
        return len(self._values)

    def mean(self) -> float:
        """The mean of the values held (NaN when there are none)."""
        n = len(self._values)
        return self._sum / n if n else float("nan")

    def append(self, value: float) -> None:
        """Add ``value`` (NaN and infinities are ignored), dropping the oldest when full."""
        if not math.isfinite(value):
            return
        if len(self._values) == self.capacity:
            self._sum -= self._values.popleft()
        self._values.append(value)
        self._sum += value

    def clear(self) -> None:
        """Forget every value."""
        self._values.clear()
        self._sum = 0.0
