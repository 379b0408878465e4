"""maxSurge and maxUnavailable where they have a meaning: on Kubernetes they shape the
RollingUpdate of the new revision's Deployment (rolling: both; canary: maxSurge); on Cloud Run
a canary's maxSurge has none, and a Rollout that sets it is told so once when it starts."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from apis.v1alpha1.rollout import Rollout, TrafficRouting
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import TransientError
from controllers.rollout.backends import CanaryState, Routed, Serving
from controllers.rollout.kubernetes import KubernetesRollout
from controllers.rollout.reconciler import RolloutReconciler
from controllers.rollout.resources import canary_deployment, with_overrides
from controllers.rollout.settings import RolloutSettings

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
STEPS = [{"setWeight": 10}]


def target(backend: str = "kubernetes") -> dict[str, Any]:
    spec: dict[str, Any] = {"image": "ai:1", "backend": backend, "port": 8080,
                            "scaling": {"minInstances": 4, "maxInstances": 4}}  # fmt: skip
    if backend == "cloudRun":
        spec = {"image": "ai:1", "backend": backend,
                "cloudRun": {"project": "xynergy-test", "region": "us-central1"}}  # fmt: skip
    return {"apiVersion": "xynergy.io/v1alpha1", "kind": "XynergyService",
            "metadata": {"name": "ai", "namespace": "team", "uid": "t-1", "generation": 3},
            "spec": spec}  # fmt: skip


def rollout_body(strategy: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "xynergy.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "ai-2", "namespace": "team", "uid": "r-1", "generation": 1},
            "spec": {"targetRef": {"name": "ai"}, "image": "ai:2",
                     "strategy": strategy}}  # fmt: skip


@pytest.mark.parametrize(
    ("strategy", "update"),
    [
        ({"rolling": {"maxSurge": 2, "maxUnavailable": "10%"}},
         {"maxSurge": 2, "maxUnavailable": "10%"}),
        ({"canary": {"steps": STEPS, "maxSurge": "50%"}}, {"maxSurge": "50%", "maxUnavailable": 0}),
        # a Deployment refuses both at 0: one Pod at a time
        ({"canary": {"steps": STEPS, "maxSurge": 0}}, {"maxSurge": 0, "maxUnavailable": 1}),
        ({"blueGreen": {}}, {"maxSurge": "25%", "maxUnavailable": 0}),  # the target's own
    ],
)  # fmt: skip
def test_the_new_revisions_deployment_rolls_as_the_strategy_says(
    strategy: dict[str, Any], update: dict[str, Any]
) -> None:
    ro = Rollout.model_validate(rollout_body(strategy))
    base = XynergyService.model_validate(target())
    new = with_overrides(base, ro.spec)
    dep = canary_deployment(ro, new, name="ai-ro-1", replicas=2, routing=TrafficRouting.GATEWAY)
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": update}
    # the revision is named after its Pod template: a strategy setting is no new revision
    default = Rollout.model_validate(rollout_body({"canary": {"steps": STEPS}}))
    backend = KubernetesRollout(None, ro, base, new)  # type: ignore[arg-type]
    assert backend.revision_name(new) == backend.revision_name(with_overrides(base, default.spec))


class Client:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        return SimpleNamespace(to_dict=lambda: self.body)

    async def list(
        self, resource: Any, *, namespace: str | None = None, fields: Any = None
    ) -> AsyncIterator[Any]:
        for _ in ():
            yield _


class Backend:
    defers_target_patch = False

    def __init__(self, routing: TrafficRouting | None) -> None:
        self.routing = routing

    def revision_name(self, canary: XynergyService) -> str:
        return "ai-ro-1"

    async def serving(self, target: XynergyService) -> Serving:
        return Serving("ai-00003", ready=True)

    async def ensure_canary(self, *_: Any, **__: Any) -> CanaryState:
        return CanaryState(ready=False)

    async def route(self, target: XynergyService, split: Any) -> Routed:
        return Routed(0, {})


@pytest.mark.parametrize(
    ("backend", "surge", "told"),
    [
        ("cloudRun", "50%", True),
        ("cloudRun", None, False),  # the default: not set by the user
        ("kubernetes", "50%", False),  # it shapes the new revision's Deployment there
    ],
)
async def test_a_canary_max_surge_set_on_cloud_run_is_said_to_have_no_effect(
    backend: str, surge: str | None, told: bool
) -> None:
    strategy: dict[str, Any] = {"canary": {"steps": STEPS}}
    if surge is not None:
        strategy["canary"]["maxSurge"] = surge
    body = rollout_body(strategy)
    routing = None if backend == "cloudRun" else TrafficRouting.GATEWAY
    reconciler = RolloutReconciler(
        client=Client(target(backend)),  # type: ignore[arg-type]
        backends=lambda *_: Backend(routing),  # type: ignore[arg-type,return-value]
        metrics=lambda *_: None,  # type: ignore[arg-type,return-value]
        settings=RolloutSettings(),
    )
    first = await reconciler.reconcile(body, now=NOW, child=None)
    ignored = [e for e in first.events if e.reason == "FieldIgnored"]
    assert bool(ignored) is told
    if told:
        assert ignored[0].message.startswith(
            "spec.strategy.canary.maxSurge (50%) has no effect on Cloud Run"
        )
    body["status"] = first.status.model_dump(by_alias=True, mode="json", exclude_none=True)
    later = await reconciler.reconcile(body, now=NOW + dt.timedelta(seconds=5), child=None)
    assert not [e for e in later.events if e.reason == "FieldIgnored"], "said once"


class FailingBackend(Backend):
    """Cloud Run answering 503 when the new revision is to be made."""

    async def ensure_canary(self, *_: Any, **__: Any) -> CanaryState:
        raise TransientError("Cloud Run: 503 service unavailable", reason="Unavailable")


@pytest.mark.parametrize("first_fails", [False, True])
async def test_max_surge_ignored_is_said_once_per_delivery_across_restarts_and_failures(
    first_fails: bool,
) -> None:
    """Said in the converge that starts the delivery (also when that converge then fails: the
    status it writes names the delivery, so no later converge starts it again), never again:
    not per converge, not after an operator restart (a new reconciler on the status written)."""
    body = rollout_body({"canary": {"steps": STEPS, "maxSurge": "50%"}})

    def operator(backend: Backend) -> RolloutReconciler:  # a fresh process: nothing in memory
        return RolloutReconciler(
            client=Client(target("cloudRun")),  # type: ignore[arg-type]
            backends=lambda *_: backend,  # type: ignore[arg-type,return-value]
            metrics=lambda *_: None,  # type: ignore[arg-type,return-value]
            settings=RolloutSettings(),
        )

    first = await operator(FailingBackend(None) if first_fails else Backend(None)).reconcile(
        body, now=NOW, child=None
    )
    assert [e.reason for e in first.events].count("FieldIgnored") == 1
    said = 0
    for i in range(1, 4):  # converges, each by a restarted operator, on the status written
        body["status"] = first.status.model_dump(by_alias=True, mode="json", exclude_none=True)
        first = await operator(Backend(None)).reconcile(
            body, now=NOW + dt.timedelta(seconds=5 * i), child=None
        )
        assert first.status.canary_revision == "ai-ro-1"  # type: ignore[attr-defined]
        said += [e.reason for e in first.events].count("FieldIgnored")
    assert said == 0
