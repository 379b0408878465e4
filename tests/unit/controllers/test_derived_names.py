"""Every name derived from a XynergyService's or a Rollout's metadata.name is valid where it
is used, for the longest name the CRD admits; a longer (or malformed) one stored before the
CRD refused it stalls with the CRD's message instead of failing on a child."""

from __future__ import annotations

import re
from typing import Any

import pytest

from apis.v1alpha1 import XynergyService
from apis.v1alpha1.common import LABEL_VALUE_MAX
from apis.v1alpha1.rollout import MAX_ROLLOUT_NAME_LENGTH, Rollout
from apis.v1alpha1.xynergyservice import (
    MAX_CLOUD_RUN_NAME_LENGTH,
    MAX_NAME_LENGTH,
    Backend,
    name_problem,
)
from controllers.core.errors import StalledError
from controllers.rollout.backends import PREVIOUS_TAG, STABLE_TAG, CloudRunRollout
from controllers.rollout.kubernetes import KubernetesRollout
from controllers.rollout.resources import (
    canary_deployment,
    canary_service,
    revision_digest,
    with_overrides,
)
from controllers.xynergyservice.resources import build_deployment, build_service, revision_name
from controllers.xynergyservice.resources.cloudrun import service_path
from controllers.xynergyservice.resources.naming import check_name

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
REVISION = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")  # Cloud Run's (tests/fakes)


def _svc(name: str, backend: str = "kubernetes", generation: int = 99_999) -> XynergyService:
    spec: dict[str, Any] = {"image": "reg/app:1", "backend": backend}
    if backend == "cloudRun":
        spec["cloudRun"] = {"project": "my-proj-1", "region": "us-central1"}
    return XynergyService.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": "u", "generation": generation},
            "spec": spec,
        }
    )


def _rollout(name: str, target: str) -> Rollout:
    return Rollout.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": "r"},
            "spec": {
                "targetRef": {"name": target},
                "image": "reg/app:2",
                "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
            },
        }
    )


def _labels(obj: dict[str, Any]) -> list[str]:
    values = list((obj["metadata"].get("labels") or {}).values())
    template = (obj.get("spec") or {}).get("template") or {}
    values += list((template.get("metadata", {}).get("labels") or {}).values())
    values += list(((obj.get("spec") or {}).get("selector") or {}).values())
    return [v for v in values if isinstance(v, str)]


def _valid_child(obj: dict[str, Any]) -> None:
    name = obj["metadata"]["name"]
    assert len(name) <= LABEL_VALUE_MAX, name
    assert DNS_1035.fullmatch(name), name
    for value in _labels(obj):
        assert len(value) <= LABEL_VALUE_MAX, value
        assert LABEL_VALUE.fullmatch(value), value


def test_the_longest_kubernetes_names_give_valid_children() -> None:
    """A 63-character XynergyService and Rollout: the Deployment, the Service, their labels,
    a Kubernetes Rollout's new revision (named after the target) and its label values."""
    name = "s" * (MAX_NAME_LENGTH - 1) + "1"
    svc = _svc(name)
    assert name_problem(name, Backend.KUBERNETES) is None
    _valid_child(build_deployment(svc))
    _valid_child(build_service(svc))
    rollout = _rollout("r" * MAX_ROLLOUT_NAME_LENGTH, name)
    canary = with_overrides(svc, rollout.spec)
    revision = KubernetesRollout(None, rollout, svc, canary).revision_name(canary)  # type: ignore[arg-type]
    assert revision.endswith(f"-ro-{revision_digest(canary)}")
    dep = canary_deployment(
        rollout, canary, name=revision, replicas=1, routing=rollout.spec.traffic_routing
    )  # type: ignore[arg-type]
    _valid_child(dep)
    _valid_child(canary_service(rollout, canary, name=revision))


def test_a_short_targets_rollout_revision_keeps_its_name() -> None:
    """Cutting the target's name only applies past 51 characters: live revisions keep theirs."""
    for name in ("crm", "t" * 51):
        svc = _svc(name)
        rollout = _rollout("crm-2", name)
        canary = with_overrides(svc, rollout.spec)
        got = KubernetesRollout(None, rollout, svc, canary).revision_name(canary)  # type: ignore[arg-type]
        assert got == f"{name}-ro-{revision_digest(canary)}"
    # two long targets sharing their first 51 characters still get two names
    a, b = _svc("p" * 52 + "a"), _svc("p" * 52 + "b")
    names = {
        KubernetesRollout(None, _rollout("x", t.metadata.name or ""), t, t).revision_name(t)  # type: ignore[arg-type]
        for t in (a, b)
    }
    assert len(names) == 2


def test_the_longest_cloud_run_name_gives_valid_ids_and_revisions() -> None:
    name = "c" * MAX_CLOUD_RUN_NAME_LENGTH
    svc = _svc(name, backend="cloudRun")
    assert name_problem(name, Backend.CLOUD_RUN) is None
    assert service_path(svc).endswith(f"/services/{name}")
    assert REVISION.fullmatch(revision_name(svc) + "-9")  # a taken name's -N suffix too
    rollout = _rollout("c-2", name)
    canary = with_overrides(svc, rollout.spec)
    assert REVISION.fullmatch(CloudRunRollout(None).revision_name(canary))  # type: ignore[arg-type]
    assert max(len(STABLE_TAG), len(PREVIOUS_TAG)) <= 8


@pytest.mark.parametrize(
    ("name", "backend", "expected"),
    [
        ("a" * 64, "kubernetes", "metadata.name: must be at most 63 characters"),
        ("crm.v2", "kubernetes", "metadata.name: must start with a lowercase letter"),
        ("2fa", "kubernetes", "metadata.name: must start with a lowercase letter"),
        ("c" * 50, "cloudRun", "metadata.name: must be at most 49 characters with spec.backend"),
    ],
)
def test_a_stored_name_its_children_cannot_have_stalls(
    name: str, backend: str, expected: str
) -> None:
    """An object stored before the CRD refused such names: Stalled InvalidName with the CRD's
    message, the name and its length (the reconciler checks before any backend call,
    test_xynergyservice_reconciler.py)."""
    with pytest.raises(StalledError) as err:
        check_name(_svc(name, backend=backend))
    assert err.value.reason == "InvalidName"
    assert err.value.message.startswith(expected), err.value.message
    assert f"({len(name)} characters)" in err.value.message


def test_a_stored_rollout_name_too_long_for_its_label_stalls() -> None:
    svc = _svc("crm")
    rollout = _rollout("r" * 64, "crm")
    backend = KubernetesRollout(None, rollout, svc, svc)  # type: ignore[arg-type]
    with pytest.raises(StalledError) as err:
        backend.revision_name(svc)
    assert err.value.reason == "InvalidName"
    assert "metadata.name: must be at most 63 characters" in err.value.message
    assert "xynergy.io/rollout label" in err.value.message
