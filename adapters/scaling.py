"""The ScalingPolicy API mapped onto intelligence's scaling parameters, in one function.

Pure (imports only `apis` and `intelligence`), so the operator's ScalingPolicy controller and
the analytics service's dry-run `analyze` share it (`controllers.scalingpolicy.params`
re-exports it).

`apis` defines the CR's shape; `intelligence.scaling` keeps its own plain parameter types under
other names (`ScalingParams`, `Rates`, `RateRules`, `StepLimit`, `CronSchedule`) and never
imports `apis`. `scaling_params` is the only bridge.

ScalingPolicy spec -> ScalingParams:

- `metric.targetPerInstance` -> `target_per_instance`; `minInstances`, `maxInstances` ->
  `min_instances`, `max_instances`; an unset bound is the target's (its resolved
  `scaling.minInstances` / `maxInstances`, the profile's maximum when unset), and both stay
  within the target's own (the target clamps its replicas to them anyway: a policy
  `minInstances`, or `maxInstances`, below the target's `scaling.minInstances` is raised to
  it).
- `mode` -> `predictive`: True only for `predictive`. `reactive` scales on current load like
  HPA; so does `scheduled`, with its schedules (which apply in every mode).
- `forecast.startupSeconds` -> `startup_seconds`; `forecast.bufferSeconds` -> `horizon_seconds`
  (the lead beyond start-up a trusted forecast is provisioned over; `forecast.horizon` is how
  far the model forecasts, for status, and is not a decision parameter);
  `forecast.maxErrorPercent` -> `max_forecast_smape` (the forecaster reports sMAPE);
  `forecast.minimumHistory` -> `min_history_seconds`.
- `behavior.scaleUp` / `scaleDown` (HPAScalingRules) -> `behavior.scale_up` / `scale_down`
  (`RateRules`), each `policies[]` entry a `StepLimit`; an unset direction, window, policy
  list or tolerance takes HPA's default for that direction (`DEFAULT_SCALE_UP` / `_DOWN`).
- `behavior.scaleDown.stabilizationWindowSeconds` unset -> the predictive and envelope modes
  keep instances `MODE_SCALE_DOWN_WINDOW_SECONDS` (120 s) after the load falls
  (`predictive_scale_down_window_seconds`, `burst_scale_down_window_seconds`), the reactive
  fallback HPA's 300 s: the forecast's upper quantile and the envelope already hold the
  headroom, and 300 s on top of them cost 1.04-1.5x HPA's instance-hours in the replays
  (docs/intelligence/scaling.md, "What a ScalingPolicy gets"). Written, it is the window of
  every mode, as in HPA.
- `schedules[]` -> `schedules` (`CronSchedule`: the cron, the duration in seconds,
  `minInstances`, `timezone` as a `ZoneInfo`, named `<cron> <timezone>`).

- `metric.capacityPerInstance` -> `capacity_per_instance` (margins above the expected load fit
  under it; unset, under the target).
- `metric.averagingWindowSeconds` -> `dispersion_window_seconds` (the dispersion headroom is on
  when it is set, in predictive mode) and `dispersion_sample_seconds` (5 s, or the largest of
  4, 3, 2, 1 s that divides the window: `dispersion_sample_seconds`).
- `targetUnderProvisioning` -> `burst_exceedance` (the operating point: the share of time the
  load may exceed the envelope); unset keeps intelligence's default. It also sets the
  forecaster's upper quantile (`forecast_quantile`: 1 minus it) unless `forecast.quantile` is
  written in the spec.

Not parameters of a decision, so not here: `targetRef`, `metric.source/query/metricType/
prometheusUrl` (where the load is read), `forecast.horizon/seasonalities/historyWindow` and
the quantile (how the forecaster is fitted, how far it reaches and which upper quantile it
reports: `forecast_quantile`), `interval`, `dryRun`. The other burst envelope and capacity
settings of `ScalingParams` have no API field yet and keep their defaults.
"""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apis.base import parse_duration
from apis.v1alpha1.scalingpolicy import (
    Behavior,
    ScalingMode,
    ScalingPolicy,
    ScalingRules,
    Schedule,
)
from apis.v1alpha1.xynergyservice import ResolvedSizing
from intelligence.scaling import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    CronSchedule,
    PolicyType,
    RateRules,
    Rates,
    ScalingParams,
    SelectPolicy,
    StepLimit,
)

__all__ = [
    "MODE_SCALE_DOWN_WINDOW_SECONDS",
    "dispersion_sample_seconds",
    "forecast_quantile",
    "instance_bounds",
    "scaling_params",
]

MODE_SCALE_DOWN_WINDOW_SECONDS = 120
"""The scale-down window of the predictive and envelope modes when the spec writes none."""


def scaling_params(policy: ScalingPolicy, target: ResolvedSizing | None = None) -> ScalingParams:
    """The parameters `intelligence.scaling.decide` needs for `policy` (see the module table);
    `target` is the scaled service's resolved sizing (its bounds fill unset ones and cap).

    Raises ValueError naming the spec field (e.g. `spec.schedules[0].timezone`) for what the
    CRD's schema cannot reject: an unknown time zone, a cron expression croniter cannot read or
    that never matches, an empty policy list, no maximum from the policy nor the target.
    """
    spec = policy.spec
    forecast = spec.forecast
    low, high = instance_bounds(policy, target)
    params = ScalingParams(
        target_per_instance=spec.metric.target_per_instance,
        min_instances=low,
        max_instances=high,
        behavior=_rates(spec.behavior),
        schedules=tuple(
            _schedule(s, f"spec.schedules[{i}]") for i, s in enumerate(spec.schedules or ())
        ),
        predictive=spec.mode is ScalingMode.PREDICTIVE,
        startup_seconds=float(forecast.startup_seconds),
        horizon_seconds=float(forecast.buffer_seconds),
        max_forecast_smape=forecast.max_error_percent,
        min_history_seconds=parse_duration(forecast.minimum_history),
        capacity_per_instance=spec.metric.capacity_per_instance,
    )
    if _scale_down_window(spec.behavior) is None:
        params = dataclasses.replace(
            params,
            predictive_scale_down_window_seconds=MODE_SCALE_DOWN_WINDOW_SECONDS,
            burst_scale_down_window_seconds=MODE_SCALE_DOWN_WINDOW_SECONDS,
        )
    window = spec.metric.averaging_window_seconds
    if window is not None:
        params = dataclasses.replace(
            params,
            dispersion_window_seconds=float(window),
            dispersion_sample_seconds=float(dispersion_sample_seconds(window)),
        )
    alpha = spec.target_under_provisioning
    return params if alpha is None else dataclasses.replace(params, burst_exceedance=alpha)


def _scale_down_window(behavior: Behavior | None) -> int | None:
    """The scale-down window the spec writes, or None."""
    if behavior is None or behavior.scale_down is None:
        return None
    return behavior.scale_down.stabilization_window_seconds


def dispersion_sample_seconds(window: int) -> int:
    """The spacing of the window means the dispersion headroom reads: 5 s (what its defaults
    were chosen at), else the largest of 4, 3, 2, 1 s that divides the window (the estimator
    needs a whole number of samples per window)."""
    return next(step for step in (5, 4, 3, 2, 1) if window % step == 0)


def forecast_quantile(policy: ScalingPolicy) -> float:
    """The upper quantile the forecaster reports: `forecast.quantile` when the spec writes it,
    else 1 - `targetUnderProvisioning` when that is set, else forecast.quantile's default."""
    spec = policy.spec
    alpha = spec.target_under_provisioning
    if "quantile" in spec.forecast.model_fields_set or alpha is None:
        return spec.forecast.quantile
    return 1.0 - alpha


def instance_bounds(policy: ScalingPolicy, target: ResolvedSizing | None) -> tuple[int, int]:
    """(min, max) instances: the policy's, else the target's; within the target's own bounds
    (the target clamps its replicas to them anyway: a policy minimum below the target's would
    ask for a count the target never reaches, and scale it again every sync)."""
    spec = policy.spec
    high = spec.max_instances
    if target is not None:
        high = target.max_instances if high is None else min(high, target.max_instances)
        high = max(high, target.min_instances)
    if high is None:
        raise ValueError(
            "spec.maxInstances: expected a number (the target's bounds are not known here)"
        )
    low = spec.min_instances
    if low is None:
        low = target.min_instances if target is not None else 1
    elif target is not None:
        low = max(low, target.min_instances)
    return min(low, high), high


def _rates(behavior: Behavior | None) -> Rates:
    if behavior is None:
        return Rates()
    return Rates(
        scale_up=_rules(behavior.scale_up, DEFAULT_SCALE_UP, "spec.behavior.scaleUp"),
        scale_down=_rules(behavior.scale_down, DEFAULT_SCALE_DOWN, "spec.behavior.scaleDown"),
    )


def _rules(rules: ScalingRules | None, default: RateRules, path: str) -> RateRules:
    """One direction's rules; what is unset takes HPA's default for that direction."""
    if rules is None:
        return default
    if rules.policies is not None and not rules.policies:
        raise ValueError(
            f"{path}.policies: expected at least one policy (omit the field for the default)"
        )
    policies = default.policies
    if rules.policies is not None:
        policies = tuple(
            StepLimit(PolicyType(p.type), p.value, p.period_seconds) for p in rules.policies
        )
    window = rules.stabilization_window_seconds
    return RateRules(
        stabilization_window_seconds=default.stabilization_window_seconds
        if window is None
        else window,
        policies=policies,
        select_policy=SelectPolicy(rules.select_policy),
        tolerance=default.tolerance if rules.tolerance is None else rules.tolerance,
    )


def _schedule(schedule: Schedule, path: str) -> CronSchedule:
    try:
        tz = ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"{path}.timezone: expected an IANA time zone such as Europe/London, "
            f"got {schedule.timezone!r}"
        ) from exc
    try:
        return CronSchedule(
            schedule.cron.strip(),
            duration_seconds=parse_duration(schedule.duration),
            min_instances=schedule.min_instances,
            name=f"{schedule.cron.strip()} {schedule.timezone}",
            tz=tz,
        )
    except ValueError as exc:
        raise ValueError(f"{path}.cron: {exc}") from exc
