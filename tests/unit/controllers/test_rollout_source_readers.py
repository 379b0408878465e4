"""Which Rollouts a Secret/ConfigMap change converges: those whose target reads the object,
and those whose template env overrides read it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from controllers.xynergyservice.sources import rollouts_reading

pytestmark = pytest.mark.unit


def _rollout(name: str, target: str, env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"targetRef": {"name": target}}
    if env is not None:
        spec["template"] = {"env": env}
    return {"metadata": {"name": name}, "spec": spec}


def test_rollouts_of_reading_targets_and_with_reading_overrides_are_picked() -> None:
    override = [{"name": "TOKEN", "secretKeyRef": {"name": "api", "key": "token"}}]
    other = [{"name": "CFG", "configMapKeyRef": {"name": "api", "key": "x"}}]
    rollouts: list[Mapping[str, Any]] = [
        _rollout("of-reader", "crm"),
        _rollout("of-other", "ai"),
        _rollout("override", "ai", override),
        _rollout("configmap-override", "ai", other),
    ]
    picked = rollouts_reading(rollouts, {"crm"}, "Secret", "api")
    assert [r["metadata"]["name"] for r in picked] == ["of-reader", "override"]
    picked = rollouts_reading(rollouts, set(), "ConfigMap", "api")
    assert [r["metadata"]["name"] for r in picked] == ["configmap-override"]
