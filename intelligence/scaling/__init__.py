"""Scaling decisions: how many instances a service should run now, and why.

Reactive part (`rules`): the Kubernetes HPA v2 algorithm (desired = ceil(load /
targetPerInstance), a tolerance around the target, stabilization windows, Pods / Percent step
limits per period and selectPolicy), reproduced from its documentation and controller source
so a ScalingPolicy behaves as users of HPA expect. Predictive part (`predictive`): the
recommendation also covers the upper quantile of the forecast over the service's start-up
lead time plus a horizon, so capacity is ready when load arrives. When the forecast's recent
error is too high, or history too short, the decision falls back and says why: to the burst
envelope (`envelope`) when recent load is given, else to plain reactive scaling on current
load. With a target under-provisioning rate (`calibration`), the headroom above the load comes
from the policy's own recent misses (adaptive conformal inference) instead, once enough of its
predictions have been scored. The dispersion headroom (`dispersion`) adds margin for the
per-second noise the averaged metric hides, estimated from the scatter of the window means,
once the metric's window is known. Cron `schedules` raise the minimum for a while. `decide`
puts the steps together.

Pure: no I/O, no clock reads. Time is an argument (`Observation.now`); the state HPA keeps in
memory (recent recommendations and scale events) is passed in and returned (`ScalingState`),
so a controller can keep it in status. Every decision carries its evidence (numbers) and a
CamelCase reason. The parameter types are intelligence's own (`ScalingParams`, `Rates`,
`RateRules`, `StepLimit`); `controllers.scalingpolicy.params` maps the ScalingPolicy API onto
them.
"""

from intelligence.scaling.calibration import Calibration
from intelligence.scaling.decide import bounds_at, decide
from intelligence.scaling.enums import (
    CalibrationBase,
    DecisionMode,
    DispersionComposition,
    Fallback,
    PolicyType,
    Reason,
    RiskTail,
    SelectPolicy,
)
from intelligence.scaling.envelope import BurstEnvelope, burst_envelope
from intelligence.scaling.rules import scale_down_limit, scale_up_limit
from intelligence.scaling.schedules import CronSchedule
from intelligence.scaling.types import (
    DEFAULT_RATES,
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Decision,
    Observation,
    RateRules,
    Rates,
    Recommendation,
    ScaleEvent,
    ScalingParams,
    ScalingState,
    StepLimit,
)

__all__ = [
    "DEFAULT_RATES",
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "BurstEnvelope",
    "Calibration",
    "CalibrationBase",
    "CronSchedule",
    "Decision",
    "DecisionMode",
    "DispersionComposition",
    "Fallback",
    "Observation",
    "PolicyType",
    "RateRules",
    "Rates",
    "Reason",
    "Recommendation",
    "RiskTail",
    "ScaleEvent",
    "ScalingParams",
    "ScalingState",
    "SelectPolicy",
    "StepLimit",
    "bounds_at",
    "burst_envelope",
    "decide",
    "scale_down_limit",
    "scale_up_limit",
]
