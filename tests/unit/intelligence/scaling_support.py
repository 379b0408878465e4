"""What the scaling decision tests share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from intelligence.scaling import RateRules, Rates, ScalingParams, StepLimit
from intelligence.scaling.enums import PolicyType, SelectPolicy

FREE = Rates(  # no stabilization, no step limits: decisions follow the demand at once
    scale_up=RateRules(0, (StepLimit(PolicyType.PERCENT, 10_000, 15),), SelectPolicy.MAX, 0.0),
    scale_down=RateRules(0, (StepLimit(PolicyType.PERCENT, 100, 15),), SelectPolicy.MAX, 0.0),
)


def params_with(**defaults: Any) -> Callable[..., ScalingParams]:
    """A test module's ``params(**overrides)``: its own defaults, each test's overrides."""
    base = ScalingParams(**defaults)

    def params(**overrides: Any) -> ScalingParams:
        return replace(base, **overrides)

    return params
