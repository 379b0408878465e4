"""The ScalingPolicy API onto intelligence's scaling parameters: every field lands where it
should, defaults included, and what the schema cannot reject is named."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml

from adapters.scaling import MODE_SCALE_DOWN_WINDOW_SECONDS
from apis.v1alpha1.scalingpolicy import ScalingPolicy
from controllers.scalingpolicy.params import scaling_params
from intelligence.scaling import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Observation,
    PolicyType,
    RateRules,
    Rates,
    ScalingParams,
    SelectPolicy,
    StepLimit,
    decide,
)

SAMPLE = Path(__file__).parents[3] / "manifests" / "samples" / "scalingpolicy-crm.yaml"

# ScalingParams fields the API has no field for, or that these policies leave unset: they keep
# intelligence's defaults
NOT_IN_API = (
    "burst_exceedance",
    "burst_window_seconds",
    "burst_min_history_seconds",
)


def policy(**spec: Any) -> ScalingPolicy:
    base: dict[str, Any] = {
        "targetRef": {"name": "crm"},
        "metric": {"source": "prometheus", "query": "sum(rate(x[1m]))", "targetPerInstance": 7},
        "maxInstances": 9,
    }
    return ScalingPolicy.model_validate(
        {"kind": "ScalingPolicy", "metadata": {"name": "p"}, "spec": {**base, **spec}}
    )


def defaults() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(ScalingParams) if f.name in NOT_IN_API}


def test_the_sample_policy_maps_field_by_field() -> None:
    doc = yaml.safe_load(SAMPLE.read_text())
    spec = doc["spec"]
    params = scaling_params(ScalingPolicy.model_validate(doc))
    assert params.target_per_instance == spec["metric"]["targetPerInstance"]
    assert params.capacity_per_instance == spec["metric"]["capacityPerInstance"]
    assert (params.min_instances, params.max_instances) == (
        spec["minInstances"],
        spec["maxInstances"],
    )
    assert params.predictive is True  # mode: predictive
    assert params.startup_seconds == spec["forecast"]["startupSeconds"]
    assert params.horizon_seconds == spec["forecast"]["bufferSeconds"]  # horizon: 30m is not a lead
    assert params.max_forecast_smape == spec["forecast"]["maxErrorPercent"]
    assert params.min_history_seconds == 24 * 3600  # minimumHistory: 24h
    assert params.behavior == Rates(
        scale_up=RateRules(
            stabilization_window_seconds=0,
            policies=(StepLimit(PolicyType.PERCENT, 100, 15), StepLimit(PolicyType.PODS, 4, 15)),
            select_policy=SelectPolicy.MAX,
            tolerance=0.1,  # unset: HPA's default
        ),
        scale_down=RateRules(
            stabilization_window_seconds=300,
            policies=(StepLimit(PolicyType.PERCENT, 50, 60),),
            select_policy=SelectPolicy.MAX,  # unset: Max
            tolerance=0.1,
        ),
    )
    (office,) = params.schedules
    assert office.cron == "0 8 * * 1-5"
    assert office.duration_seconds == 10 * 3600  # duration: 10h
    assert office.min_instances == 4
    assert office.tz == ZoneInfo("Europe/London")
    assert office.name == "0 8 * * 1-5 Europe/London"
    assert {k: getattr(params, k) for k in NOT_IN_API} == defaults()


def test_the_sample_policy_decides_with_its_london_office_hours() -> None:
    params = scaling_params(ScalingPolicy.model_validate(yaml.safe_load(SAMPLE.read_text())))
    # Tuesday 2024-07-02 07:30 UTC is 08:30 in London (BST): inside the office-hours window
    summer = datetime(2024, 7, 2, 7, 30, tzinfo=UTC).timestamp()
    d = decide(Observation(summer, current_instances=2, current_load=0.0), params=params)
    assert (d.desired, d.reason) == (4, "ScheduleMinimum")
    assert d.active_schedules == ("0 8 * * 1-5 Europe/London",)
    # the same UTC time in January is 07:30 in London (GMT): before the window
    winter = datetime(2024, 1, 9, 7, 30, tzinfo=UTC).timestamp()
    d = decide(Observation(winter, current_instances=2, current_load=0.0), params=params)
    assert d.desired == 2
    assert d.active_schedules == ()


def test_a_minimal_policy_takes_every_default() -> None:
    params = scaling_params(policy())
    assert params.target_per_instance == 7
    assert (params.min_instances, params.max_instances) == (1, 9)
    assert params.behavior == Rates(scale_up=DEFAULT_SCALE_UP, scale_down=DEFAULT_SCALE_DOWN)
    assert params.schedules == ()
    assert params.predictive is True
    assert params.startup_seconds == 30
    assert params.horizon_seconds == 15
    assert params.max_forecast_smape == 30
    assert params.min_history_seconds == 24 * 3600
    assert params.predictive_scale_down_window_seconds == MODE_SCALE_DOWN_WINDOW_SECONDS
    assert params.burst_scale_down_window_seconds == MODE_SCALE_DOWN_WINDOW_SECONDS
    assert {k: getattr(params, k) for k in NOT_IN_API} == defaults()


def test_the_decision_lead_is_the_buffer_not_the_forecast_horizon() -> None:
    params = scaling_params(policy(forecast={"horizon": "2h", "bufferSeconds": 120}))
    assert params.horizon_seconds == 120


def test_each_unset_part_of_a_direction_takes_that_directions_default() -> None:
    params = scaling_params(
        policy(
            behavior={
                "scaleUp": {"selectPolicy": "Disabled"},
                "scaleDown": {"stabilizationWindowSeconds": 60, "tolerance": 0.25},
            }
        )
    )
    up, down = params.behavior.scale_up, params.behavior.scale_down
    assert up == dataclasses.replace(DEFAULT_SCALE_UP, select_policy=SelectPolicy.DISABLED)
    assert down == dataclasses.replace(
        DEFAULT_SCALE_DOWN, stabilization_window_seconds=60, tolerance=0.25
    )
    only_down = scaling_params(policy(behavior={"scaleDown": {"selectPolicy": "Min"}}))
    assert only_down.behavior.scale_up == DEFAULT_SCALE_UP
    assert only_down.behavior.scale_down.select_policy is SelectPolicy.MIN


def test_a_written_scale_down_window_governs_every_mode() -> None:
    written = scaling_params(policy(behavior={"scaleDown": {"stabilizationWindowSeconds": 600}}))
    assert written.predictive_scale_down_window_seconds is None
    assert written.burst_scale_down_window_seconds is None
    # scaleDown written without a window: the modes keep theirs
    only_policy = scaling_params(policy(behavior={"scaleDown": {"selectPolicy": "Min"}}))
    assert only_policy.burst_scale_down_window_seconds == MODE_SCALE_DOWN_WINDOW_SECONDS


@pytest.mark.parametrize(
    ("behavior", "kept_until"), [(None, 120), ({"stabilizationWindowSeconds": 600}, 600)]
)
def test_the_envelope_lets_instances_go_after_its_window(
    behavior: dict[str, Any] | None, kept_until: int
) -> None:
    """A burst's instances, decided in envelope mode (no forecast): with no window written they
    go 120 s after the load fell, with one written they stay for it."""
    spec = {} if behavior is None else {"behavior": {"scaleDown": behavior}}
    params = scaling_params(policy(maxInstances=50, **spec))
    times = np.arange(0.0, 600.0, 15.0)
    calm = (times, np.full(times.size, 7.0))  # ten minutes at one instance's target
    d = decide(
        Observation(600.0, current_instances=1, current_load=70.0, recent_load=calm),
        params=params,
    )
    assert d.mode == "envelope"
    assert d.desired > 1
    burst, state = d.desired, d.state
    seen: list[tuple[float, int]] = []
    for now in np.arange(615.0, 600.0 + kept_until + 60, 15.0):
        d = decide(
            Observation(now, current_instances=burst, current_load=7.0, recent_load=calm),
            params=params,
            state=state,
        )
        state = d.state
        seen.append((now - 600.0, d.desired))
    assert all(n == burst for t, n in seen if t < kept_until)
    assert any(n < burst for t, n in seen if t >= kept_until)


@pytest.mark.parametrize(
    ("mode", "predictive"), [("predictive", True), ("reactive", False), ("scheduled", False)]
)
def test_only_predictive_mode_uses_the_forecast(mode: str, predictive: bool) -> None:
    schedules = [{"cron": "0 8 * * *", "duration": "1h", "minInstances": 2}]
    params = scaling_params(policy(mode=mode, schedules=schedules))
    assert params.predictive is predictive
    (s,) = params.schedules
    assert (s.tz, s.name) == (ZoneInfo("UTC"), "0 8 * * * UTC")  # timezone defaults to UTC


@pytest.mark.parametrize(
    ("spec", "field", "expected"),
    [
        ({"behavior": {"scaleUp": {"policies": []}}}, "spec.behavior.scaleUp.policies", "at least"),
        (
            {
                "schedules": [
                    {
                        "cron": "0 8 * * *",
                        "duration": "1h",
                        "minInstances": 1,
                        "timezone": "Mars/Olympus_Mons",
                    }
                ]
            },
            "spec.schedules[0].timezone",
            "IANA time zone",
        ),
        (
            {
                "schedules": [
                    {"cron": "0 8 * * *", "duration": "1h", "minInstances": 1},
                    {"cron": "0 0 31 2 *", "duration": "1h", "minInstances": 1},
                ]
            },
            "spec.schedules[1].cron",
            "never matches",
        ),
        (
            {"schedules": [{"cron": "0 8 * * 9", "duration": "1h", "minInstances": 1}]},
            "spec.schedules[0].cron",
            "not valid",
        ),
    ],
)
def test_what_the_schema_cannot_reject_is_named(
    spec: dict[str, Any], field: str, expected: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}: .*{expected}"):
        scaling_params(policy(**spec))


@pytest.mark.parametrize(
    ("spec", "target", "bounds"),
    [
        # the policy's bounds when set, the target's (resolved sizing) otherwise
        ({"minInstances": 2, "maxInstances": 9}, (1, 20), (2, 9)),
        ({"maxInstances": None}, (3, 12), (3, 12)),
        ({"minInstances": None, "maxInstances": 6}, (2, 12), (2, 6)),
        # never above the target's own maximum (it would clamp the replicas anyway)
        ({"minInstances": 2, "maxInstances": 50}, (1, 10), (2, 10)),
        # a minimum above the capped maximum comes down to it
        ({"minInstances": 8, "maxInstances": 9}, (1, 5), (5, 5)),
        # a minimum below the target's is raised to it (the target would clamp it anyway)
        ({"minInstances": 0, "maxInstances": 9}, (2, 12), (2, 9)),
        ({"minInstances": 1, "maxInstances": 2}, (3, 12), (3, 3)),
    ],
)
def test_bounds_come_from_the_policy_else_the_target(
    spec: dict[str, Any], target: tuple[int, int], bounds: tuple[int, int]
) -> None:
    from apis.v1alpha1.xynergyservice import ResolvedSizing

    sizing = ResolvedSizing("1", "1Gi", 80, target[0], target[1], target[0])
    params = scaling_params(policy(**spec), sizing)
    assert (params.min_instances, params.max_instances) == bounds


def test_no_maximum_anywhere_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^spec\.maxInstances: expected a number"):
        scaling_params(policy(maxInstances=None))


def test_the_operating_point_sets_the_envelope_and_the_forecast_quantile() -> None:
    from controllers.scalingpolicy.params import forecast_quantile

    plain = policy()
    assert scaling_params(plain).burst_exceedance == defaults()["burst_exceedance"]
    assert forecast_quantile(plain) == 0.9  # forecast.quantile's default
    cautious = policy(targetUnderProvisioning=0.02)
    assert scaling_params(cautious).burst_exceedance == 0.02
    assert forecast_quantile(cautious) == pytest.approx(0.98)
    # a quantile written in the spec wins for the forecaster; the envelope still follows
    written = policy(targetUnderProvisioning=0.02, forecast={"quantile": 0.95})
    assert forecast_quantile(written) == 0.95
    assert scaling_params(written).burst_exceedance == 0.02


@pytest.mark.parametrize("value", [0, -0.1, 0.6])
def test_an_operating_point_out_of_range_is_refused_naming_the_field(value: float) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"target_under_provisioning|targetUnderProvisioning"):
        policy(targetUnderProvisioning=value)


@pytest.mark.parametrize(("window", "sample"), [(15, 5), (60, 5), (12, 4), (9, 3), (14, 2), (7, 1)])
def test_the_averaging_window_turns_the_dispersion_headroom_on(window: int, sample: int) -> None:
    metric = {"source": "prometheus", "query": "sum(rate(x[15s]))", "targetPerInstance": 7}
    params = scaling_params(policy(metric={**metric, "averagingWindowSeconds": window}))
    assert params.dispersion_window_seconds == window
    assert params.dispersion_sample_seconds == sample  # a whole number of samples per window
    assert scaling_params(policy()).dispersion_window_seconds is None  # unset: off


def test_the_capacity_per_instance_reaches_the_decision() -> None:
    metric = {"source": "prometheus", "query": "q", "targetPerInstance": 7}
    params = scaling_params(policy(metric={**metric, "capacityPerInstance": 10}))
    assert (params.target_per_instance, params.capacity_per_instance) == (7, 10)
    assert scaling_params(policy(metric=metric)).capacity_per_instance is None  # unset: target


@pytest.mark.parametrize("capacity", [0, 6.9])
def test_a_capacity_below_the_target_is_refused_naming_the_field(capacity: float) -> None:
    from pydantic import ValidationError

    metric = {"source": "prometheus", "query": "q", "targetPerInstance": 7}
    with pytest.raises(ValidationError, match=r"capacity_per_instance|capacityPerInstance"):
        policy(metric={**metric, "capacityPerInstance": capacity})


@pytest.mark.parametrize("window", [0, 3601])
def test_an_averaging_window_out_of_range_is_refused_naming_the_field(window: int) -> None:
    from pydantic import ValidationError

    metric = {"source": "prometheus", "query": "q", "targetPerInstance": 7}
    with pytest.raises(ValidationError, match=r"averaging_window_seconds|averagingWindowSeconds"):
        policy(metric={**metric, "averagingWindowSeconds": window})
