"""The v1alpha1 models: profile defaults, durations, quantities, samples and field errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from apis.base import parse_duration
from apis.v1alpha1 import KINDS, RolloutSpec, ScalingPolicySpec, XynergyService, XynergyServiceSpec
from apis.v1alpha1.xynergyservice import Profile

SAMPLES = Path(__file__).parents[3] / "manifests" / "samples"


@pytest.mark.parametrize(
    ("profile", "cpu", "memory", "concurrency", "max_instances"),
    [
        ("ai-intensive", "2000m", "4Gi", 10, 10),
        ("data-processing", "1000m", "2Gi", 20, 20),
        ("api-service", "500m", "1Gi", 80, 50),
        ("background-worker", "250m", "512Mi", 1, 5),
        ("dashboard", "250m", "512Mi", 100, 10),
    ],
)
def test_profile_defaults(
    profile: str, cpu: str, memory: str, concurrency: int, max_instances: int
) -> None:
    sizing = XynergyServiceSpec.model_validate({"image": "x", "profile": profile}).sizing()
    assert (sizing.cpu, sizing.memory, sizing.concurrency, sizing.max_instances) == (
        cpu,
        memory,
        concurrency,
        max_instances,
    )
    assert sizing.min_instances == 1
    assert sizing.replicas == 1


def test_explicit_fields_win_over_profile_and_replicas_are_clamped() -> None:
    spec = XynergyServiceSpec.model_validate(
        {
            "image": "x",
            "profile": Profile.AI_INTENSIVE,
            "resources": {"cpu": 3, "memory": "8Gi"},
            "scaling": {"minInstances": 2, "maxInstances": 4, "concurrency": 7},
            "replicas": 9,
        }
    )
    sizing = spec.sizing()
    assert (sizing.cpu, sizing.memory, sizing.concurrency) == ("3", "8Gi", 7)
    assert (sizing.min_instances, sizing.max_instances, sizing.replicas) == (2, 4, 4)
    spec.replicas = 0
    assert spec.sizing().replicas == 2


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "1d", "-5s", "5 m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_errors_name_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        XynergyServiceSpec.model_validate({"image": "x", "resources": {"cpu": "lots"}})
    assert err.value.errors()[0]["loc"] == ("resources", "cpu")
    with pytest.raises(ValidationError) as err:
        XynergyServiceSpec.model_validate({"image": "x", "colour": "blue"})
    assert err.value.errors()[0]["loc"] == ("colour",)


def test_every_sample_validates_and_round_trips() -> None:
    by_kind = {k.crd.kind: k for k in KINDS}
    seen = set()
    for path in sorted(SAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            model = by_kind.get(doc["kind"])
            if model is None:
                continue
            obj = model.model_validate(doc)
            again = model.model_validate(obj.to_manifest())
            assert again == obj, path
            seen.add(doc["kind"])
    assert seen == set(by_kind), "every kind needs a sample"


def test_manifest_uses_camel_case() -> None:
    obj = XynergyService.model_validate(
        {"metadata": {"name": "a"}, "spec": {"image": "x", "healthCheck": {"path": "/h"}}}
    )
    manifest = obj.to_manifest()
    assert manifest["spec"]["healthCheck"]["periodSeconds"] == 10
    assert manifest["apiVersion"] == "xynergy.io/v1alpha1"
    assert "status" not in manifest


@pytest.mark.parametrize("cpu", ["-2", "-500m", -1, "-0.1Gi", "1.2.3", "2 cores"])
def test_negative_or_unparsable_quantities_are_rejected_naming_the_field(cpu: object) -> None:
    with pytest.raises(ValidationError) as err:
        XynergyServiceSpec.model_validate({"image": "x", "resources": {"cpu": cpu}})
    assert err.value.errors()[0]["loc"][:2] == ("resources", "cpu")
    assert "invalid quantity" in str(err.value)


@pytest.mark.parametrize("memory", ["1e3", ".5Gi", "+1", "0", "512Mi", 1024, "1000Ei"])
def test_every_kubernetes_quantity_form_is_accepted(memory: object) -> None:
    spec = XynergyServiceSpec.model_validate({"image": "x", "resources": {"memory": memory}})
    assert spec.sizing().memory == str(memory)


SP = {
    "targetRef": {"name": "crm"},
    "metric": {"source": "prometheus", "query": "q", "targetPerInstance": 5},
    "maxInstances": 10,
}
RO = {"targetRef": {"name": "crm"}, "image": "crm:2", "strategy": {"immediate": {}}}
ANALYSIS = {"metrics": [{"name": "errors", "query": "q"}]}


@pytest.mark.parametrize(
    ("model", "spec", "loc"),
    [
        (ScalingPolicySpec, {**SP, "forecast": {"horizon": "0m"}}, ("forecast", "horizon")),
        (ScalingPolicySpec, {**SP, "forecast": {"historyWindow": "0h"}}, ("forecast", "historyWindow")),
        (
            ScalingPolicySpec,
            {**SP, "schedules": [{"cron": "0 8 * * 1-5", "duration": "0s", "minInstances": 2}]},
            ("schedules", 0, "duration"),
        ),
        (RolloutSpec, {**RO, "analysis": {**ANALYSIS, "interval": "0ms"}}, ("analysis", "interval")),
        (
            RolloutSpec,
            {**RO, "strategy": {"canary": {"steps": [{"analysis": {"duration": "0s"}}]}}},
            ("strategy", "canary", "steps", 0, "analysis", "duration"),
        ),
    ],
)  # fmt: skip
def test_zero_intervals_and_windows_are_rejected(
    model: type[ScalingPolicySpec | RolloutSpec], spec: dict[str, object], loc: tuple[object, ...]
) -> None:
    with pytest.raises(ValidationError, match="longer than 0s") as err:
        model.model_validate(spec)
    assert err.value.errors()[0]["loc"] == loc


@pytest.mark.parametrize("interval", ["0s", "1ms", "0.5s", "999ms"])
def test_a_policy_interval_under_a_second_is_rejected_naming_the_field(interval: str) -> None:
    """A sub-second sync interval is a hot loop (as the CRD's CEL rule says too)."""
    match = "spec.interval must be a duration of at least 1s"
    with pytest.raises(ValidationError, match=match) as err:
        ScalingPolicySpec.model_validate({**SP, "interval": interval})
    assert err.value.errors()[0]["loc"] == ("interval",)


def test_positive_and_pause_durations_are_still_accepted() -> None:
    assert ScalingPolicySpec.model_validate({**SP, "interval": "1s"}).interval == "1s"
    assert ScalingPolicySpec.model_validate({**SP, "interval": "1000ms"}).interval == "1000ms"
    canary = {"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "0s"}}]}}
    assert RolloutSpec.model_validate({**RO, "strategy": canary}).strategy.canary is not None


def test_parse_duration_rejects_a_trailing_newline() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("5m\n")


@pytest.mark.parametrize(
    ("toleration", "message"),
    [
        ({"operator": "Exists", "value": "x"}, "value must be empty when operator is Exists"),
        ({"value": "x"}, "operator must be Exists when key is empty"),
        ({"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}, "needs effect NoExecute"),
        ({"key": "k", "tolerationSeconds": 5}, "needs effect NoExecute"),
    ],
)
def test_inconsistent_tolerations_are_rejected(toleration: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        XynergyServiceSpec.model_validate(
            {"image": "x", "kubernetes": {"tolerations": [toleration]}}
        )
    assert err.value.errors()[0]["loc"] == ("kubernetes", "tolerations", 0)


@pytest.mark.parametrize(
    "toleration",
    [
        {"operator": "Exists"},
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30},
    ],
)
def test_consistent_tolerations_are_accepted(toleration: dict[str, object]) -> None:
    spec = XynergyServiceSpec.model_validate(
        {"image": "x", "kubernetes": {"tolerations": [toleration]}}
    )
    assert spec.kubernetes is not None
    assert spec.kubernetes.tolerations


def test_an_empty_vpc_connector_is_rejected() -> None:
    cloud_run = {"project": "my-proj-1", "region": "us-central1", "vpcConnector": ""}
    with pytest.raises(ValidationError) as err:
        XynergyServiceSpec.model_validate(
            {"image": "x", "backend": "cloudRun", "cloudRun": cloud_run}
        )
    assert err.value.errors()[0]["loc"] == ("cloudRun", "vpcConnector")
