"""The plain types of scaling decisions: parameters, observations, state and the decision.

These are intelligence's own parameter types. They are deliberately not named after the
ScalingPolicy API (`apis.v1alpha1.scalingpolicy`): the controller maps the API model onto them
in one tested function (`controllers.scalingpolicy.params.scaling_params`), and intelligence
never imports `apis`. HPA's vocabulary maps as follows:

| HPA v2 / ScalingPolicy API      | here         |
| ------------------------------- | ------------ |
| `HPAScalingPolicy`              | `StepLimit`  |
| `HPAScalingRules`               | `RateRules`  |
| `HorizontalPodAutoscalerBehavior` | `Rates`    |
| `ScalingPolicySpec`             | `ScalingParams` |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from intelligence.forecasting.base import Forecast
from intelligence.scaling.budget import Budget
from intelligence.scaling.calibration import Calibration
from intelligence.scaling.dispersion import Dispersion
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
from intelligence.scaling.exceedance import Exceedance
from intelligence.scaling.feedback import Feedback
from intelligence.scaling.schedules import CronSchedule

__all__ = [
    "DEFAULT_RATES",
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "Decision",
    "Observation",
    "RateRules",
    "Rates",
    "Recommendation",
    "ScaleEvent",
    "ScalingParams",
    "ScalingState",
    "StepLimit",
]


@dataclass(frozen=True)
class StepLimit:
    """At most `value` instances (or percent) of change per `period_seconds` (HPAScalingPolicy)."""

    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True)
class RateRules:
    """How fast to scale in one direction (HPAScalingRules), plus the tolerance around the
    target ratio. Empty `policies` allow no change in that direction, as `Disabled` does."""

    stabilization_window_seconds: int
    policies: tuple[StepLimit, ...]
    select_policy: SelectPolicy = SelectPolicy.MAX
    tolerance: float = 0.1


DEFAULT_SCALE_UP = RateRules(
    stabilization_window_seconds=0,
    policies=(
        StepLimit(PolicyType.PERCENT, 100, 15),
        StepLimit(PolicyType.PODS, 4, 15),
    ),
)
DEFAULT_SCALE_DOWN = RateRules(
    stabilization_window_seconds=300,
    policies=(StepLimit(PolicyType.PERCENT, 100, 15),),
)


@dataclass(frozen=True)
class Rates:
    """The rules of both directions (HPA v2 `behavior`); the defaults are Kubernetes'."""

    scale_up: RateRules = DEFAULT_SCALE_UP
    scale_down: RateRules = DEFAULT_SCALE_DOWN


DEFAULT_RATES = Rates()


@dataclass(frozen=True)
class ScalingParams:
    """What a scaling policy asks for (the parameters of `decide`).

    `target_per_instance` is the load one instance should carry (same unit as the load).
    `startup_seconds` is how long a new instance takes to serve; the forecast must cover
    that lead time plus `horizon_seconds`, and its upper quantile is what gets provisioned.
    Predictive scaling is used only when `predictive` is set, the forecast's recent sMAPE is
    at most `max_forecast_smape` (percent) and history spans `min_history_seconds`; with
    `predictive=False` (HPA-like reactive scaling) any forecast and the burst envelope are
    ignored and the decision is on current load, with no fallback to report.
    With `capacity_per_instance` (the most load one instance can serve; above
    `target_per_instance`), the forecast's point peak is provisioned at the target and its upper
    quantile only has to fit under capacity, instead of the upper quantile at the target (which
    would count the headroom twice). `predictive_scale_down_window_seconds`, when set,
    replaces the scale-down stabilization window while the forecast is trusted (its upper
    quantile over the lead time already guards against scaling down before load returns);
    reactive fallbacks keep `behavior`'s window.

    Burst envelope (used only when the forecast is not trusted and the observation carries
    the recent load): the load over the last `burst_window_seconds` gives a level the load
    exceeds at most a share `burst_exceedance` of the time (see `burst_envelope`); like the
    forecast's upper quantile it is provisioned under `capacity_per_instance` (at the target
    without one). It needs `burst_min_history_seconds` of recent load; `burst_exceedance=None`
    turns it off. `burst_scale_down_window_seconds`, when set, replaces the scale-down
    stabilization window while the envelope provisions: the envelope itself keeps instances
    while load is bursty, so the peaks above it need not be held for the full window.
    `burst_trend_seconds` (600 s; None for the plain envelope) reads the spread about the
    load's trend (a centred moving mean over that span) and starts from the mean of its last
    span, so a slow swing inside the window is not provisioned as a burst. With
    `burst_trend_lead`, the spread (and its mean) is that of the load about the trailing mean
    of that span as it stood start-up + horizon earlier: the error of the base itself, at the
    lead time it is provisioned for.

    Calibrated headroom (see `calibration`; off by default, see docs/intelligence/scaling.md
    for why): `target_under_provisioning` (alpha) is the operating point, the share of
    decisions whose covering level the load may exceed within start-up + horizon. Once
    `calibration_min_scores` of the policy's own predictions have been scored, and while no
    trusted forecast decides (or always, with `calibrate_forecast`, which then takes the
    forecast's point peak as the base), the demand is `base + headroom * scale` (base: current
    load; raised to the load's recent mean with `calibration_base=LOAD_OR_MEAN`, or that mean
    with `MEAN`; scale: the load's standard deviation; both exponentially weighted with
    half-life `calibration_scale_seconds`), capped at the load's recent peak with
    `calibration_cap_at_peak` (as the burst envelope: cheaper, but then the miss rate can
    exceed alpha), provisioned under `capacity_per_instance`. The headroom is a quantile of the
    last `calibration_window` scores at a level adaptive conformal inference moves by
    `calibration_step` after each score. Before that, the forecast, the burst envelope or
    current load decide as above. `calibrated_scale_down_window_seconds`, when set, replaces
    the scale-down stabilization window while the calibrated level provisions.
    `target_under_provisioning=None` turns calibration off.

    Miss feedback (see `feedback`; off by default): with `miss_feedback_target` set, the demand
    of every mode is multiplied by `1 + headroom`, a factor adaptive conformal inference moves
    from the policy's visible misses (the metric above what the current instances serve):
    about `miss_feedback_step` up per 15 s of missing, `step * target` down per 15 s of not,
    within [`miss_feedback_floor`, `miss_feedback_cap`] (a negative floor lets a policy that
    rarely misses shed part of its mode's margin; never below current load).
    `scale_down_window_startups`, when set, keeps every mode's scale-down window at least that
    many times start-up + horizon (instances are not let go sooner than they take to come
    back).

    Dispersion headroom (see `dispersion`): the per-second index of dispersion of the load is
    estimated from the scatter of its window means around their local trend (the metric
    averages over `dispersion_window_seconds`; one mean is taken every
    `dispersion_sample_seconds`, which must divide the window, the window when None:
    overlapping means see finer than the window), exponentially weighted with half-life
    `dispersion_half_life_seconds`, and every mode's demand is raised so that
    `rate + z * sqrt(rate * index)`, z = `dispersion_sigmas`, fits under
    `capacity_per_instance` (at the target without one): margin for per-second noise the
    averaged metric cannot show. It needs to know what
    the metric is: `dispersion_window_seconds=None` (the default: a metric whose averaging
    window is not known, e.g. a gauge) or `dispersion_sigmas=None` turn it off. The defaults
    (z up to 3, half-life 1800 s, a mean every 5 s) are the ones the replay protocol adopted; with
    decisions further apart than two samples the estimator never gets two differences in a row
    and adds nothing. `dispersion_composition` says whose noise it is and how it adds to the
    mode's margin (`DispersionComposition`; `Demand`, as adopted, by default). What it
    spends is priced (eighth pass, adopted): `dispersion_risk_ratio` chooses z per decision so
    that the per-second level is exceeded that many times as often as the level the target
    alone provisions (`rate x capacity / target`; the rate itself without a capacity), with
    `dispersion_sigmas` as the largest z, and `dispersion_max_headroom` caps the raised demand
    at `1 + it` times the mode's demand. None turns either off (a fixed z, no cap).
    `dispersion_risk_tail` is the tail the ratio is priced with (`RiskTail`; `Normal`).

    Cost budget (see `budget`; off by default): with `cost_budget` set (a ratio, e.g. 1.03),
    the policy runs HPA's reactive rule on the same metric as a shadow and multiplies every
    mode's demand (never below current load) by `1 + headroom`, a factor moved by the gap
    between `cost_budget` times the shadow's instances and its own, `cost_budget_step` per
    15 s per unit of relative gap, within [`cost_budget_floor`, `cost_budget_cap`]: savings
    against the budget are spent on headroom, overspending sheds the modes' margin, and over
    a long run instance-hours approach `cost_budget` times the reactive rule's.
    """

    target_per_instance: float
    min_instances: int = 1
    max_instances: int = 10
    behavior: Rates = DEFAULT_RATES
    schedules: tuple[CronSchedule, ...] = ()
    predictive: bool = True
    startup_seconds: float = 30.0
    horizon_seconds: float = 60.0
    max_forecast_smape: float = 30.0
    min_history_seconds: float = 600.0
    predictive_scale_down_window_seconds: int | None = None
    capacity_per_instance: float | None = None
    burst_exceedance: float | None = 0.1
    burst_window_seconds: float = 3600.0
    burst_trend_seconds: float | None = 600.0
    burst_trend_lead: bool = False
    burst_min_history_seconds: float = 300.0
    burst_scale_down_window_seconds: int | None = None
    target_under_provisioning: float | None = None
    calibration_window: int = 200
    calibration_step: float = 0.002
    calibration_min_scores: int = 20
    calibration_scale_seconds: float = 3600.0
    calibration_base: CalibrationBase = CalibrationBase.LOAD_OR_MEAN
    calibration_cap_at_peak: bool = True
    calibrate_forecast: bool = False
    calibrated_scale_down_window_seconds: int | None = 60
    miss_feedback_target: float | None = None
    miss_feedback_step: float = 0.05
    miss_feedback_cap: float = 0.5
    miss_feedback_floor: float = 0.0
    scale_down_window_startups: float | None = None
    dispersion_sigmas: float | None = 3.0
    dispersion_half_life_seconds: float = 1800.0
    dispersion_window_seconds: float | None = None
    dispersion_sample_seconds: float | None = 5.0
    dispersion_composition: DispersionComposition = DispersionComposition.DEMAND
    dispersion_risk_ratio: float | None = 0.4
    dispersion_max_headroom: float | None = 0.3
    dispersion_risk_tail: RiskTail = RiskTail.NORMAL
    cost_budget: float | None = None
    cost_budget_step: float = 0.01
    cost_budget_cap: float = 0.5
    cost_budget_floor: float = -0.5

    def __post_init__(self) -> None:
        """Reject parameters that cannot produce a decision."""
        if not self.target_per_instance > 0:
            raise ValueError("target_per_instance must be positive")
        if not 0 <= self.min_instances <= self.max_instances:
            raise ValueError("need 0 <= min_instances <= max_instances")
        if self.capacity_per_instance is not None and not (
            self.capacity_per_instance >= self.target_per_instance
        ):
            raise ValueError("capacity_per_instance must be at least target_per_instance")
        if self.burst_exceedance is not None and not 0 < self.burst_exceedance < 1:
            raise ValueError("burst_exceedance must be in (0, 1)")
        if not self.burst_window_seconds > 0:
            raise ValueError("burst_window_seconds must be positive")
        if self.burst_trend_seconds is not None and not self.burst_trend_seconds > 0:
            raise ValueError("burst_trend_seconds must be positive (or None)")
        self._check_calibration()

    def _check_calibration(self) -> None:
        alpha = self.target_under_provisioning
        if alpha is not None and not 0 < alpha < 1:
            raise ValueError(f"target_under_provisioning must be in (0, 1), got {alpha}")
        if not 1 <= self.calibration_min_scores <= self.calibration_window:
            raise ValueError(
                "need 1 <= calibration_min_scores <= calibration_window, got "
                f"{self.calibration_min_scores} and {self.calibration_window}"
            )
        if not self.calibration_scale_seconds > 0:
            raise ValueError(
                f"calibration_scale_seconds must be positive, got {self.calibration_scale_seconds}"
            )
        if not 0 < self.calibration_step < 1:
            raise ValueError(f"calibration_step must be in (0, 1), got {self.calibration_step}")
        self._check_feedback()
        self._check_budget()

    def _check_budget(self) -> None:
        budget = self.cost_budget
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"cost_budget must be a positive ratio, got {budget}")
        if not (math.isfinite(self.cost_budget_step) and self.cost_budget_step > 0):
            raise ValueError(f"cost_budget_step must be positive, got {self.cost_budget_step}")
        if not (math.isfinite(self.cost_budget_cap) and self.cost_budget_cap >= 0):
            raise ValueError(f"cost_budget_cap must be >= 0, got {self.cost_budget_cap}")
        if not -1 < self.cost_budget_floor <= 0:
            raise ValueError(f"cost_budget_floor must be in (-1, 0], got {self.cost_budget_floor}")

    def _check_feedback(self) -> None:
        target = self.miss_feedback_target
        if target is not None and not 0 < target < 1:
            raise ValueError(f"miss_feedback_target must be in (0, 1), got {target}")
        if not self.miss_feedback_step > 0:
            raise ValueError(f"miss_feedback_step must be positive, got {self.miss_feedback_step}")
        if not self.miss_feedback_cap >= 0:
            raise ValueError(f"miss_feedback_cap must be >= 0, got {self.miss_feedback_cap}")
        if not -1 < self.miss_feedback_floor <= 0:
            raise ValueError(
                f"miss_feedback_floor must be in (-1, 0], got {self.miss_feedback_floor}"
            )
        hold = self.scale_down_window_startups
        if hold is not None and not hold >= 0:
            raise ValueError(f"scale_down_window_startups must be >= 0, got {hold}")
        self._check_dispersion()

    def _check_dispersion(self) -> None:
        sigmas = self.dispersion_sigmas
        if sigmas is not None and not (math.isfinite(sigmas) and sigmas > 0):
            raise ValueError(f"dispersion_sigmas must be a positive number, got {sigmas}")
        if not self.dispersion_half_life_seconds > 0:
            raise ValueError(
                "dispersion_half_life_seconds must be positive, got "
                f"{self.dispersion_half_life_seconds}"
            )
        window, sample = self.dispersion_window_seconds, self.dispersion_sample_seconds
        if window is not None and not window > 0:
            raise ValueError(f"dispersion_window_seconds must be positive, got {window}")
        if sample is not None and not sample > 0:
            raise ValueError(f"dispersion_sample_seconds must be positive, got {sample}")
        ratio, cap = self.dispersion_risk_ratio, self.dispersion_max_headroom
        if ratio is not None and not 0 < ratio < 1:
            raise ValueError(f"dispersion_risk_ratio must be in (0, 1), got {ratio}")
        if cap is not None and not (math.isfinite(cap) and cap >= 0):
            raise ValueError(f"dispersion_max_headroom must be a number >= 0, got {cap}")
        if (
            window is not None
            and sample is not None
            and abs(window / sample - round(window / sample)) > 1e-6
        ):
            raise ValueError(
                f"dispersion_sample_seconds must divide dispersion_window_seconds ({window}), "
                f"got {sample}"
            )


@dataclass(frozen=True)
class Observation:
    """What is known at `now` (seconds): the instances, the load and what predicts it.

    `recent_load` is `(timestamps, values)` of the same metric as `current_load` (what the
    controller fits its forecaster on); `forecast_smape` is the forecast's recent (backtest)
    sMAPE in percent and `history_seconds` how much history it was fitted on. `recent_means`
    are `(timestamp, value)` readings of the metric since the previous decision, ascending and
    before `now` (e.g. a range read at `dispersion_sample_seconds` steps): the dispersion
    headroom observes them before `current_load`, so it sees the load at its sample spacing
    however seldom decisions are made; empty, it sees only `current_load`.
    """

    now: float
    current_instances: int
    current_load: float
    forecast: Forecast | None = None
    forecast_smape: float | None = None
    history_seconds: float | None = None
    recent_load: tuple[npt.ArrayLike, npt.ArrayLike] | None = None
    recent_means: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Recommendation:
    """An unstabilized recommendation made at `timestamp` (seconds)."""

    timestamp: float
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    """A change of `replicas` instances (always positive) made at `timestamp`."""

    timestamp: float
    replicas: int


@dataclass(frozen=True)
class ScalingState:
    """What HPA keeps in memory between syncs; keep it in status and pass it back."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()
    calibration: Calibration = field(default_factory=Calibration)
    feedback: Feedback = field(default_factory=Feedback)
    dispersion: Dispersion = field(default_factory=Dispersion)
    budget: Budget = field(default_factory=Budget)
    shadow: ScalingState | None = None  # the cost budget's reactive shadow (see `budget`)
    exceedance: Exceedance = field(default_factory=Exceedance)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form: lists of [timestamp, replicas], and the calibration (the cost
        budget's part only once it has started)."""
        data: dict[str, Any] = {
            "recommendations": [[r.timestamp, r.replicas] for r in self.recommendations],
            "scaleUpEvents": [[e.timestamp, e.replicas] for e in self.scale_up_events],
            "scaleDownEvents": [[e.timestamp, e.replicas] for e in self.scale_down_events],
            "calibration": self.calibration.to_dict(),
            "feedback": self.feedback.to_dict(),
            "dispersion": self.dispersion.to_dict(),
            "exceedance": self.exceedance.to_dict(),
        }
        if self.budget != Budget():
            data["budget"] = self.budget.to_dict()
        if self.shadow is not None:
            data["shadow"] = self.shadow.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingState:
        """The inverse of `to_dict`; missing keys are empty."""
        return cls(
            calibration=Calibration.from_dict(data.get("calibration") or {}),
            feedback=Feedback.from_dict(data.get("feedback") or {}),
            dispersion=Dispersion.from_dict(data.get("dispersion") or {}),
            budget=Budget.from_dict(data.get("budget") or {}),
            exceedance=Exceedance.from_dict(data.get("exceedance") or {}),
            shadow=None if data.get("shadow") is None else cls.from_dict(data["shadow"]),
            recommendations=tuple(
                Recommendation(float(t), int(r)) for t, r in data.get("recommendations", [])
            ),
            scale_up_events=tuple(
                ScaleEvent(float(t), int(r)) for t, r in data.get("scaleUpEvents", [])
            ),
            scale_down_events=tuple(
                ScaleEvent(float(t), int(r)) for t, r in data.get("scaleDownEvents", [])
            ),
        )


@dataclass(frozen=True)
class Decision:
    """The desired instance count, the mode that produced it, why, and the numbers."""

    desired: int
    mode: DecisionMode
    reason: Reason
    message: str
    evidence: dict[str, float]
    state: ScalingState
    fallback: Fallback | None = None
    active_schedules: tuple[str, ...] = field(default=())
