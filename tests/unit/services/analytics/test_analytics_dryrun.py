"""``analyze``'s dry run: the operator's mapping and ``intelligence.scaling.decide`` on the
policy's observed status, applied to nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apis.v1alpha1.scalingpolicy import ScalingPolicy
from apis.v1alpha1.xynergyservice import XynergyServiceSpec
from services.analytics.dryrun import dry_run

NOW = 1_700_000_000.0


def _policy(status: dict[str, Any] | None = None, **spec: Any) -> ScalingPolicy:
    body: dict[str, Any] = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "crm", "namespace": "default"},
        "spec": {
            "targetRef": {"name": "crm"},
            "mode": "reactive",
            "maxInstances": 4,
            "metric": {"source": "prometheus", "query": "sum(up)", "targetPerInstance": 50},
            **spec,
        },
    }
    if status is not None:
        body["status"] = status
    return ScalingPolicy.model_validate(body)


def test_load_above_capacity_scales_up_to_the_policy_maximum() -> None:
    decision = dry_run(_policy({"currentInstances": 2}), None, now=NOW, load=230.0)
    assert decision.desired == 4  # ceil(230 / 50) = 5, capped by maxInstances 4
    assert str(decision.mode) == "reactive"


def test_the_target_sizing_caps_the_maximum() -> None:
    sizing = XynergyServiceSpec.model_validate(
        {"image": "x:1", "scaling": {"minInstances": 1, "maxInstances": 3}}
    ).sizing()
    assert dry_run(_policy({"currentInstances": 2}), sizing, now=NOW, load=230.0).desired == 3


def test_the_stabilization_state_kept_in_status_holds_a_scale_down() -> None:
    # the controller recommended 4 ten seconds ago: HPA's 300 s scale-down window keeps 4;
    # a recommendation older than the window lets the policy go down to 1
    def at(age: float) -> int:
        state = json.dumps({"recommendations": [[NOW - age, 4]]})
        status = {"currentInstances": 4, "scalingState": state}
        return dry_run(_policy(status), None, now=NOW, load=10).desired

    assert at(10) == 4
    assert at(400) == 1


def test_a_spec_the_mapping_refuses_names_the_field() -> None:
    policy = _policy(
        schedules=[{"cron": "0 8 * * *", "duration": "1h", "minInstances": 2, "timezone": "Mars/X"}]
    )
    with pytest.raises(ValueError, match=r"spec\.schedules\[0\]\.timezone"):
        dry_run(policy, None, now=NOW, load=1.0)
