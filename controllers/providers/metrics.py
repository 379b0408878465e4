"""What every metric provider shares: the `MetricsProvider` protocol, one series of
`Samples`, and the typed errors a ScalingPolicy (or a Rollout's analysis) reports.

Failures are typed so a policy can say what went wrong and hold its instances:
`MetricsUnreachableError` (the backend did not answer: connection, timeout, overload),
`MetricsEmptyError` (no series, or no finite sample) and `MetricsMalformedError` (the query
was refused, or the answer is not what the API documents). All three are transient (the next
sync tries again) and carry a CamelCase `reason`. Providers: `prometheus`, `cloudmonitoring`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from controllers.core.errors import TransientError

__all__ = [
    "MetricsEmptyError",
    "MetricsError",
    "MetricsMalformedError",
    "MetricsProvider",
    "MetricsUnreachableError",
    "Samples",
]


class MetricsError(TransientError):
    """The load metric could not be read; `reason` says how."""


class MetricsUnreachableError(MetricsError):
    """The metrics backend did not answer (connection, timeout, 5xx, 429)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="MetricsUnreachable")


class MetricsEmptyError(MetricsError):
    """The query matched no series or no finite sample."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="MetricsEmpty")


class MetricsMalformedError(MetricsError):
    """The query was refused or the answer is not what the API documents."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="MetricsMalformed")


@dataclass(frozen=True)
class Samples:
    """One series: seconds since the epoch (ascending) and finite values."""

    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.timestamps.size)

    @property
    def span(self) -> float:
        """Seconds from the first sample to the last (0 with fewer than two)."""
        return float(self.timestamps[-1] - self.timestamps[0]) if len(self) > 1 else 0.0


class MetricsProvider(Protocol):
    """What a ScalingPolicy reads load through."""

    async def query(self, query: str, *, at: float) -> float:
        """The value at `at` (seconds since the epoch)."""
        ...

    async def query_range(self, query: str, *, start: float, end: float, step: float) -> Samples:
        """The series over [start, end] at `step` seconds."""
        ...
