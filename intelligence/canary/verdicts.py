"""From test results to a metric's verdict: the guards and the classification every metric
kind shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intelligence.canary.power import detectable_target, power_guard
from intelligence.canary.types import (
    Direction,
    JudgeConfig,
    MetricConfig,
    MetricResult,
    MetricVerdict,
)

__all__ = ["Shift", "classify", "no_data", "result"]


@dataclass(frozen=True)
class Shift:
    """A metric's shift test: p-value, effect with its interval, relative effect and MDE."""

    p_value: float
    effect: float
    low: float
    high: float
    relative: float
    mde: float
    mde_relative: float


def no_data(
    metric: MetricConfig,
    cfg: JudgeConfig,
    reasons: list[str],
    base: dict[str, Any],
    *,
    nan_share: float,
    samples: int,
) -> MetricResult | None:
    """The NoData result when too many values were NaN or too few samples remain, else None
    (the guards every metric kind shares; `reasons` gains what applied)."""
    if nan_share > cfg.max_nan_fraction:
        reasons.append("TooManyNaNs")
    if samples < metric.min_samples:
        reasons.append("FewSamples")
    if "TooManyNaNs" not in reasons and "FewSamples" not in reasons:
        return None
    nan = float("nan")
    return MetricResult(
        verdict=MetricVerdict.NODATA,
        reasons=tuple(reasons),
        p_value=nan,
        effect=nan,
        effect_low=nan,
        effect_high=nan,
        relative_effect=nan,
        **base,
    )


def classify(
    *,
    significant: bool,
    effect: float,
    relative: float,
    zero_baseline: bool,
    metric: MetricConfig,
) -> MetricVerdict:
    """High / Low when the shift is significant, in a bad direction and beyond tolerance."""

    def exceeds(shift: float, rel: float) -> bool:
        if shift <= metric.absolute_tolerance:
            return False
        return zero_baseline or rel > metric.tolerance

    up_bad = metric.bad_direction in (Direction.INCREASE, Direction.EITHER)
    down_bad = metric.bad_direction in (Direction.DECREASE, Direction.EITHER)
    if significant and up_bad and effect > 0 and exceeds(effect, relative):
        return MetricVerdict.HIGH
    if significant and down_bad and effect < 0 and exceeds(-effect, -relative):
        return MetricVerdict.LOW
    return MetricVerdict.PASS


def result(
    verdict: MetricVerdict,
    shift: Shift,
    metric: MetricConfig,
    *,
    level: float,
    reasons: list[str],
    base: dict[str, Any],
    **extra: Any,
) -> MetricResult:
    """The metric's result with every number: the power guard is applied last, against the
    target at the stable `level` (`reasons` gains what applied)."""
    target = detectable_target(metric, level)
    verdict = power_guard(verdict, shift.mde, target, reasons)
    return MetricResult(
        verdict=verdict,
        reasons=tuple(reasons),
        p_value=shift.p_value,
        effect=shift.effect,
        effect_low=shift.low,
        effect_high=shift.high,
        relative_effect=shift.relative,
        mde=shift.mde,
        mde_relative=shift.mde_relative,
        detectable=target,
        **extra,
        **base,
    )
