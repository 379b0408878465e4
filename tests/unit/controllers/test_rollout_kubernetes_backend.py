"""The Kubernetes backend's pure parts: the new revision's children, its size per weight,
the routing mode, and the traffic the gateway is given."""

from __future__ import annotations

from typing import Any

import pytest

from apis.v1alpha1.rollout import Rollout, RolloutStatus, TrafficRouting
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.rollout.kubernetes import KubernetesRollout, routing_for
from controllers.rollout.resources import (
    REVISION_LABEL,
    ROLLOUT_LABEL,
    canary_deployment,
    canary_replicas,
    canary_service,
    settled_on,
    with_overrides,
)
from controllers.xynergyservice.resources import MANAGED_BY_LABEL, SERVICE_LABEL
from controllers.xynergyservice.resources.kubernetes import build_deployment
from controllers.xynergyservice.resources.references import (
    CONFIG_HASH_ANNOTATION,
    CONFIG_SOURCES_ANNOTATION,
)


def target(*, routes: bool = True, replicas: int = 4, image: str = "ai:1") -> XynergyService:
    spec: dict[str, Any] = {
        "image": image,
        "backend": "kubernetes",
        "port": 8080,
        "scaling": {"minInstances": replicas, "maxInstances": replicas},
    }
    if routes:
        spec["routes"] = [{"prefix": "/api/v2/ai"}]
    return XynergyService.model_validate(
        {
            "apiVersion": "xynergy.io/v1alpha1",
            "kind": "XynergyService",
            "metadata": {"name": "ai", "namespace": "team", "uid": "t-1", "generation": 3},
            "spec": spec,
        }
    )


def rollout(**spec: Any) -> Rollout:
    return Rollout.model_validate(
        {
            "apiVersion": "xynergy.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "ai-2", "namespace": "team", "uid": "r-1"},
            "spec": {
                "targetRef": {"name": "ai"},
                "image": "ai:2",
                "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
                **spec,
            },
        }
    )


def test_auto_routing_is_gateway_for_routed_targets_else_replicas() -> None:
    assert routing_for(rollout(), target()) is TrafficRouting.GATEWAY
    assert routing_for(rollout(), target(routes=False)) is TrafficRouting.REPLICAS
    chosen = rollout(trafficRouting="replicas")
    assert routing_for(chosen, target()) is TrafficRouting.REPLICAS


@pytest.mark.parametrize(
    ("weight", "routing", "preview", "want"),
    [
        (10, TrafficRouting.GATEWAY, False, 1),
        (50, TrafficRouting.GATEWAY, False, 2),
        (60, TrafficRouting.GATEWAY, False, 3),
        (0, TrafficRouting.GATEWAY, True, 4),
        (100, TrafficRouting.GATEWAY, False, 4),
        (20, TrafficRouting.REPLICAS, False, 1),  # 1 of 5 Pods
        (50, TrafficRouting.REPLICAS, False, 4),  # 4 of 8
        (0, TrafficRouting.REPLICAS, False, 1),
    ],
)
def test_canary_replicas_follow_the_weight(
    weight: int, routing: TrafficRouting, preview: bool, want: int
) -> None:
    assert canary_replicas(4, weight, routing=routing, preview=preview) == want


def test_children_are_owned_by_the_rollout_and_select_only_the_revision() -> None:
    ro, new = rollout(), with_overrides(target(), rollout().spec)
    dep = canary_deployment(ro, new, name="ai-ro-1", replicas=2, routing=TrafficRouting.GATEWAY)
    svc = canary_service(ro, new, name="ai-ro-1")
    for child in (dep, svc):
        meta = child["metadata"]
        assert meta["ownerReferences"][0]["kind"] == "Rollout"
        assert meta["ownerReferences"][0]["uid"] == "r-1"
        assert meta["labels"][MANAGED_BY_LABEL] == "xynergy"  # the operator's one selector
        assert meta["labels"][ROLLOUT_LABEL] == "ai-2"
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {REVISION_LABEL: "ai-ro-1"}}
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "ai:2"
    # behind the gateway the target's Service must not reach the new Pods
    assert SERVICE_LABEL not in dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"] == {REVISION_LABEL: "ai-ro-1"}
    ratio = canary_deployment(ro, new, name="ai-ro-1", replicas=1, routing=TrafficRouting.REPLICAS)
    assert ratio["spec"]["template"]["metadata"]["labels"][SERVICE_LABEL] == "ai"


def test_canary_pods_are_told_the_revision_the_rollout_names() -> None:
    """K_REVISION of the new revision's Pods reads their annotation: the Rollout's name for
    the revision, not the target's generation name (crm-00003), which its own Pods carry."""
    ro, base = rollout(), target()
    dep = canary_deployment(
        ro,
        with_overrides(base, ro.spec),
        name="ai-ro-1",
        replicas=1,
        routing=TrafficRouting.GATEWAY,
    )
    template = dep["spec"]["template"]
    env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
    path = env["K_REVISION"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert path == "metadata.annotations['xynergy.io/revision']"
    assert template["metadata"]["annotations"]["xynergy.io/revision"] == "ai-ro-1"
    assert (env["K_SERVICE"]["value"], env["K_CONFIGURATION"]["value"]) == ("ai", "ai")
    stable = build_deployment(base)["spec"]["template"]["metadata"]["annotations"]
    assert stable["xynergy.io/revision"] == "ai-00003"


def test_canary_pods_carry_the_config_hash_the_targets_pods_carry() -> None:
    ro, base = rollout(), target()
    new = with_overrides(base, ro.spec)
    digests = {"Secret/db": "0123456789abcdef"}

    def template_meta(found: dict[str, str]) -> dict[str, Any]:
        dep = canary_deployment(
            ro, new, name="ai-ro-1", replicas=1, routing=TrafficRouting.GATEWAY, digests=found
        )
        meta: dict[str, Any] = dep["spec"]["template"]["metadata"]
        return meta

    stable = build_deployment(base, digests=digests)["spec"]["template"]["metadata"]
    meta = template_meta(digests)
    assert (
        meta["annotations"][CONFIG_HASH_ANNOTATION]
        == (stable["annotations"][CONFIG_HASH_ANNOTATION])
    )
    assert meta["labels"][REVISION_LABEL] == "ai-ro-1"
    rotated = template_meta({"Secret/db": "fedcba9876543210"})
    assert (
        rotated["annotations"][CONFIG_HASH_ANNOTATION]
        != (meta["annotations"][CONFIG_HASH_ANNOTATION])
    ), "a rotated Secret changes the canary's Pod template (its Pods roll)"


class SecretsGone:
    """A provider that finds no Secret (a required one was deleted)."""

    async def get(self, api_version: str, kind: str, name: str, ns: str | None) -> None:
        return None


async def test_a_source_that_cannot_be_read_keeps_the_hash_the_canary_had() -> None:
    env = [{"name": "DB_PASSWORD", "secretKeyRef": {"name": "db", "key": "password"}}]
    body = target().model_dump(by_alias=True, exclude_none=True, mode="json")
    body["spec"]["env"] = env
    base = XynergyService.model_validate(body)
    ro = rollout()
    new = with_overrides(base, ro.spec)
    had = {"Secret/db": "0123456789abcdef"}
    live = canary_deployment(
        ro, new, name="ai-ro-1", replicas=1, routing=TrafficRouting.GATEWAY, digests=had
    )
    assert live["metadata"]["annotations"][CONFIG_SOURCES_ANNOTATION]
    backend = KubernetesRollout(SecretsGone(), ro, base, new)  # type: ignore[arg-type]
    assert await backend._digests(new, live) == had
    assert await backend._digests(new, None) == {}


def test_revision_name_depends_on_the_pod_template_only() -> None:
    ro = rollout()
    backend = KubernetesRollout(None, ro, target(), target())  # type: ignore[arg-type]
    new = with_overrides(target(), ro.spec)
    name = backend.revision_name(new)
    assert name.startswith("ai-ro-")
    later = target(image="ai:1").model_copy(deep=True)
    later.metadata.generation = 9  # a later generation of the same spec: the same revision
    assert backend.revision_name(with_overrides(later, ro.spec)) == name
    assert backend.revision_name(target()) != name


def test_settled_once_the_target_runs_the_new_spec() -> None:
    ro = rollout()
    new = with_overrides(target(), ro.spec)
    assert not settled_on(target(), new)
    assert settled_on(target(image="ai:2"), new)


def backend_at(weight: int, routing: str = "gateway") -> KubernetesRollout:
    ro = rollout(trafficRouting=routing)
    ro.status = RolloutStatus(canary_revision="ai-ro-1", stable_revision="ai-00003")
    ro.status.canary_weight = weight
    return KubernetesRollout(None, ro, target(), target())  # type: ignore[arg-type]


def test_traffic_for_the_gateway_names_both_revisions_and_their_services() -> None:
    split = (("ai-00003", 90, "stable"), ("ai-ro-1", 10, "canary"))
    urls, traffic = backend_at(10)._traffic(target(), "ai-ro-1", split)
    assert [(t.revision, t.url, t.weight, t.tag) for t in traffic] == [
        ("ai-00003", "http://ai.team.svc.cluster.local", 90, "stable"),
        ("ai-ro-1", "http://ai-ro-1.team.svc.cluster.local", 10, "canary"),
    ]
    assert urls["canary"] == "http://ai-ro-1.team.svc.cluster.local"
    # all back on the target: plain routes again
    _, back = backend_at(0)._traffic(target(), "ai-ro-1", (("ai-00003", 100, None),))
    assert back == ()
    # replica-ratio routing gives the gateway nothing to apply
    _, none = backend_at(10, "replicas")._traffic(target(), "ai-ro-1", split)
    assert none == ()
