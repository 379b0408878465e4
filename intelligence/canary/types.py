"""The canary judge's vocabulary, its configuration and its results.

The closed vocabularies are `StrEnum`s; each member equals its string value, and the
configuration accepts either (`MetricConfig("latency", bad_direction="increase")`), rejecting
anything else with an error naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar

from scipy import stats

from intelligence.anomaly import Severity

__all__ = [
    "CanaryJudgement",
    "Direction",
    "JudgeConfig",
    "MetricConfig",
    "MetricKind",
    "MetricResult",
    "MetricVerdict",
    "Outcome",
    "Spending",
]


class Direction(StrEnum):
    """Which change of a metric is bad."""

    INCREASE = "increase"
    DECREASE = "decrease"
    EITHER = "either"


class MetricKind(StrEnum):
    """Raw samples (Mann-Whitney) or ``(events, trials)`` counts (Fisher exact test)."""

    CONTINUOUS = "continuous"
    PROPORTION = "proportion"


class Spending(StrEnum):
    """Lan-DeMets alpha-spending function over the looks of a run."""

    POCOCK = "pocock"
    OBRIEN_FLEMING = "obrien-fleming"
    UNIFORM = "uniform"


class MetricVerdict(StrEnum):
    """Classification of one metric."""

    PASS = "Pass"
    MARGINAL = "Marginal"
    HIGH = "High"
    LOW = "Low"
    NODATA = "NoData"
    UNDERPOWERED = "Underpowered"


class Outcome(StrEnum):
    """Classification of the whole canary run."""

    SUCCESSFUL = "Successful"
    INCONCLUSIVE = "Inconclusive"
    FAILED = "Failed"


_E = TypeVar("_E", bound=StrEnum)


def _coerce(obj: Any, name: str, enum: type[_E]) -> None:
    """Set `obj.name` (a frozen dataclass field) to its `enum` member, or say what is allowed."""
    value = getattr(obj, name)
    try:
        member = enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}") from None
    object.__setattr__(obj, name, member)


@dataclass(frozen=True)
class MetricConfig:
    """How to judge one metric.

    Attributes:
        name: the metric's name (key in the samples mapping).
        bad_direction: ``increase`` for latency, errors, saturation; ``decrease`` for
            throughput or success rate; ``either`` when any change is bad.
        weight: share of the run's score.
        critical: a failure of this metric fails the run alone.
        tolerance: relative shift (vs the stable median) accepted in the bad direction.
        absolute_tolerance: shift accepted in the metric's own unit; the only tolerance when the
            stable median is zero (e.g. zero errors).
        min_samples: fewer finite samples (for a proportion: fewer trials) on either side gives
            ``NoData``.
        kind: ``continuous`` (raw samples, Mann-Whitney) or ``proportion`` (``(events,
            trials)`` counts, Fisher exact test); see the package docstring.
        series: the continuous samples are a time series (one per scrape or bucket) that the
            anomaly detectors may watch; ``False`` for per-request samples, whose spread is
            the request mix, not a change over time.
        detectable: relative regression (vs the stable level) the judge must be able to detect
            with ``JudgeConfig.power`` before the metric may pass; ``None``: no such target.
        detectable_absolute: the same in the metric's own unit (for a proportion: a rise of the
            rate). With both set, the target is the larger of the two; a metric with a zero
            baseline needs this one (a relative target of zero is never reachable).
        paired: the continuous samples of the two versions are aligned in time (sample ``i``
            of each was measured over the same bucket, both versions under the same load):
            compare them bucket by bucket (Wilcoxon signed-rank), which removes the load's
            swings from the comparison; see :func:`~intelligence.canary.paired_test`.
        overlap: points per independent sample of a continuous series (>= 1): a
            series whose points are aggregates over windows longer than the spacing between
            points (a PromQL ``rate(...[5m])`` read at 1 m steps: 5) shares data between
            neighbouring points, so ``n`` points carry about ``n / overlap`` independent ones.
            The U test, the Hodges-Lehmann interval, the tail test and the MDE count
            ``n / overlap`` samples (a paired metric: the signed-rank test, its interval and
            MDE, ``n / overlap`` buckets); 1 (the default): every point independent.
    """

    name: str
    bad_direction: Direction = Direction.INCREASE
    kind: MetricKind = MetricKind.CONTINUOUS
    weight: float = 1.0
    critical: bool = False
    tolerance: float = 0.1
    absolute_tolerance: float = 0.0
    min_samples: int = 8
    series: bool = True
    detectable: float | None = None
    detectable_absolute: float | None = None
    paired: bool = False
    overlap: float = 1.0

    def __post_init__(self) -> None:
        """Accept the string values of the enums; reject anything else by name."""
        _coerce(self, "bad_direction", Direction)
        _coerce(self, "kind", MetricKind)
        if not (math.isfinite(self.overlap) and self.overlap >= 1.0):
            raise ValueError(f"overlap must be a finite number >= 1, got {self.overlap!r}")


@dataclass(frozen=True)
class JudgeConfig:
    """Run-level settings (Kayenta's defaults where it has one).

    Attributes:
        alpha: false-failure level of one metric over the whole run (one-sided in the bad
            direction), spent over ``looks`` by ``spending`` (package docstring).
        looks: analysis intervals the run is planned to judge after (``judge(..., look=k)``).
        spending: alpha-spending function: ``pocock`` (front-loaded, the early looks get the
            most), ``obrien-fleming`` (almost nothing early) or ``uniform``.
        power: probability of detection at which the minimum detectable effect is quoted.
        tail_weight: share of a continuous metric's level given to the tail test (0: none).
        tail_quantile: the quantile the tail test watches (0.95: the p95).
    """

    alpha: float = 0.002
    pass_score: float = 95.0
    marginal_score: float = 75.0
    max_nan_fraction: float = 0.5
    detectors: bool = True
    anomalous_fraction: float = 0.3
    looks: int = 1
    spending: Spending = Spending.POCOCK
    power: float = 0.8
    tail_weight: float = 0.2
    tail_quantile: float = 0.95

    def __post_init__(self) -> None:
        """Accept the string value of the spending function; reject anything else by name."""
        _coerce(self, "spending", Spending)

    def alpha_at(self, look: int) -> float:
        """The level look ``look`` (1-based) tests at: the spending function's increment."""
        if not 1 <= look <= self.looks:
            raise ValueError(f"look {look} is outside the planned 1..{self.looks}")
        return _alpha_increment(self.alpha, self.looks, self.spending, look)


@lru_cache(maxsize=64)
def _alpha_increment(alpha: float, looks: int, spending: Spending, look: int) -> float:
    def spent(t: float) -> float:
        if t <= 0.0:
            return 0.0
        if spending is Spending.POCOCK:
            return alpha * math.log(1.0 + (math.e - 1.0) * t)
        if spending is Spending.OBRIEN_FLEMING:
            z = float(stats.norm.isf(alpha / 2.0))
            return float(2.0 * stats.norm.sf(z / math.sqrt(t)))
        return alpha * t

    return spent(look / looks) - spent((look - 1) / looks)


@dataclass(frozen=True)
class MetricResult:
    """One metric's verdict and the numbers behind it.

    For a ``proportion`` metric, ``n_stable`` / ``n_canary`` count trials, ``stable_median`` /
    ``canary_median`` are the two rates and ``effect`` is their difference.
    """

    name: str
    verdict: MetricVerdict
    reasons: tuple[str, ...]
    critical: bool
    weight: float
    n_stable: int
    n_canary: int
    nan_dropped: int
    p_value: float
    effect: float
    effect_low: float
    effect_high: float
    relative_effect: float
    stable_median: float
    canary_median: float
    anomalous_points: int = 0
    anomaly_severity: Severity = Severity.INFO
    alpha: float = float("nan")
    """The level this look tested at (the spending function's increment)."""
    mde: float = float("nan")
    """Minimum detectable regression at ``JudgeConfig.power``, in the effect's unit."""
    mde_relative: float = float("nan")
    """The same relative to the stable level (inf on a zero baseline)."""
    detectable: float = float("nan")
    """The regression the metric had to be able to detect (effect's unit; NaN: no target)."""
    tail_p_value: float = float("nan")
    """One-sided p-value of the tail-exceedance test (continuous metrics)."""
    tail_effect: float = float("nan")
    """Relative change of the tail quantile, canary vs stable (absolute on a zero baseline)."""

    @property
    def failed(self) -> bool:
        """Whether the metric regressed (``High`` or ``Low``)."""
        return self.verdict in (MetricVerdict.HIGH, MetricVerdict.LOW)

    def evidence(self) -> dict[str, float]:
        """The numbers as a flat mapping (for status messages)."""
        return {
            "n_stable": float(self.n_stable),
            "n_canary": float(self.n_canary),
            "nan_dropped": float(self.nan_dropped),
            "p_value": self.p_value,
            "effect": self.effect,
            "effect_low": self.effect_low,
            "effect_high": self.effect_high,
            "relative_effect": self.relative_effect,
            "stable_median": self.stable_median,
            "canary_median": self.canary_median,
            "anomalous_points": float(self.anomalous_points),
            "alpha": self.alpha,
            "mde": self.mde,
            "mde_relative": self.mde_relative,
            "detectable": self.detectable,
            "tail_p_value": self.tail_p_value,
            "tail_effect": self.tail_effect,
        }


@dataclass(frozen=True)
class CanaryJudgement:
    """The run's outcome, its score (0-100) and every metric's result."""

    outcome: Outcome
    score: float
    metrics: tuple[MetricResult, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def metric(self, name: str) -> MetricResult:
        """The result of the metric called ``name``."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)
