"""Deleting a Rollout: one that may hold its target's traffic split on Cloud Run carries the
finalizer, and its release sends all traffic back to the stable revision before it goes; an
ended one (or one on Kubernetes, whose new revision goes by garbage collection) is let go
touching nothing; a target that is gone lets go at once; a backend that cannot route holds
the deletion (a Warning saying why and how to delete at once) at most
spec.progressDeadlineSeconds after the deletion was asked for."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from apis.v1alpha1.rollout import TrafficRouting
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.controller import FINALIZER
from controllers.core.errors import TransientError
from controllers.rollout.backends import Routed
from controllers.rollout.reconciler import RolloutReconciler
from controllers.rollout.settings import RolloutSettings
from controllers.rollout.status import needs_finalizer

pytestmark = pytest.mark.unit

ASKED = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
TARGET = {
    "apiVersion": "xynergy.io/v1alpha1",
    "kind": "XynergyService",
    "metadata": {"name": "crm", "namespace": "team-a", "uid": "t-1", "generation": 1},
    "spec": {
        "image": "crm:1",
        "backend": "cloudRun",
        "cloudRun": {"project": "xynergy-test", "region": "us-central1"},
    },
}
MID_CANARY = {
    "phase": "Paused",
    "stableRevision": "crm-00001",
    "canaryRevision": "crm-ro-1",
    "canaryWeight": 30,
    "observedGeneration": 1,
}


class Client:
    def __init__(self, *, missing: bool = False) -> None:
        self.missing = missing

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        if self.missing:
            raise ApiError(status=Status(code=404, message="not found"))
        return SimpleNamespace(to_dict=lambda: TARGET)

    async def list(self, resource: Any, *, namespace: str | None = None) -> AsyncIterator[Any]:
        for _ in ():
            yield _


class Backend:
    """Cloud Run-like (routes by itself); `failures` route calls fail before one succeeds."""

    defers_target_patch = False

    def __init__(self, *, routing: TrafficRouting | None = None, failures: int = 0) -> None:
        self.routing = routing
        self.failures = failures
        self.routes: list[Any] = []

    async def route(self, target: XynergyService, split: Any) -> Routed:
        if self.failures:
            self.failures -= 1
            raise TransientError("Cloud Run: 503 service unavailable", reason="Unavailable")
        self.routes.append(split)
        return Routed(1, {})


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def _reconciler(backend: Backend | None, client: Client, clock: Clock) -> RolloutReconciler:
    return RolloutReconciler(
        client=client,  # type: ignore[arg-type]
        backends=lambda *_: backend,  # type: ignore[arg-type,return-value]  # a partial one
        metrics=lambda *_: None,  # type: ignore[arg-type,return-value]
        settings=RolloutSettings(),
        clock=clock,
    )


def _deleted(status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "ro", "namespace": "team-a", "uid": "r-1", "generation": 1,
                     "finalizers": [FINALIZER],
                     "deletionTimestamp": ASKED.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "spec": {"targetRef": {"name": "crm"}, "image": "crm:2", "progressDeadlineSeconds": 120,
                 "strategy": {"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}}},
    }  # fmt: skip
    if status is not None:
        body["status"] = status
    return body


@pytest.mark.parametrize(
    ("status", "annotation", "needed"),
    [
        (None, None, True),  # not started: its backend is not known yet
        ({"phase": "Pending"}, None, True),
        (MID_CANARY, None, True),
        ({**MID_CANARY, "phase": "Progressing"}, None, True),
        ({**MID_CANARY, "trafficRouting": "gateway"}, None, False),  # Kubernetes
        ({**MID_CANARY, "trafficRouting": "replicas", "phase": "Progressing"}, None, False),
        ({**MID_CANARY, "phase": "Promoted", "canaryWeight": 100}, None, False),
        # Kubernetes blue-green keep window: the target is patched only when it ends
        ({**MID_CANARY, "phase": "Promoted", "trafficRouting": "replicas",
          "scaleDownAt": "2026-12-01T12:05:00Z"}, None, True),
        ({**MID_CANARY, "phase": "Promoted", "trafficRouting": "replicas"}, None, False),
        ({**MID_CANARY, "phase": "RolledBack", "canaryWeight": 0}, None, False),
        ({**MID_CANARY, "phase": "Aborted", "canaryWeight": 0}, None, False),
        ({**MID_CANARY, "phase": "RolledBack", "canaryWeight": 0}, "retry/2", True),
        ({**MID_CANARY, "phase": "RolledBack", "canaryWeight": 0}, "undo/2", False),
        ({**MID_CANARY, "phase": "Promoted", "observedGeneration": 0}, None, True),  # an edit
        ({"phase": "Degraded", "observedGeneration": 1}, None, True),  # RolloutConflict
    ],
)  # fmt: skip
def test_the_finalizer_is_held_while_the_rollout_may_split_cloud_run_traffic(
    status: dict[str, Any] | None, annotation: str | None, needed: bool
) -> None:
    body = _deleted(status)
    if annotation:
        body["metadata"]["annotations"] = {"xynergy.io/rollout-action": annotation}
    assert needs_finalizer(body) is needed
    reconciler = _reconciler(Backend(), Client(), Clock(ASKED))
    assert reconciler.needs_finalizer(body) is needed  # what the core asks before converging


async def test_deleting_a_rollout_mid_canary_returns_all_traffic_to_the_stable_revision() -> None:
    backend = Backend()
    gone, event = await _reconciler(backend, Client(), Clock(ASKED)).release(_deleted(MID_CANARY))
    assert gone
    assert backend.routes == [(("crm-00001", 100, None),)]
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "TrafficRestored")
    assert "all traffic back on the stable revision crm-00001" in event.message


@pytest.mark.parametrize(
    "status",
    [
        {**MID_CANARY, "phase": "Promoted", "canaryWeight": 100},
        {**MID_CANARY, "phase": "RolledBack", "canaryWeight": 0},
        {**MID_CANARY, "phase": "Degraded", "canaryWeight": 0},
        {"phase": "Pending"},
        None,
    ],
)
async def test_deleting_an_ended_or_unstarted_rollout_touches_nothing(
    status: dict[str, Any] | None,
) -> None:
    backend = Backend()
    released = await _reconciler(backend, Client(), Clock(ASKED)).release(_deleted(status))
    assert released == (True, None)
    assert backend.routes == []


@pytest.mark.parametrize("routing", [TrafficRouting.GATEWAY, TrafficRouting.REPLICAS])
async def test_on_kubernetes_the_deletion_is_left_to_garbage_collection(
    routing: TrafficRouting,
) -> None:
    backend = Backend(routing=routing)
    released = await _reconciler(backend, Client(), Clock(ASKED)).release(_deleted(MID_CANARY))
    assert released == (True, None)
    assert backend.routes == [], "no scale-down while the gateway may still follow it"


async def test_a_gone_target_lets_the_rollout_go_at_once() -> None:
    backend = Backend()
    reconciler = _reconciler(backend, Client(missing=True), Clock(ASKED))
    gone, event = await reconciler.release(_deleted(MID_CANARY))
    assert gone
    assert event is not None
    assert event.reason == "Released"
    assert "XynergyService 'crm' not found" in event.message
    assert backend.routes == []


async def test_an_operator_without_the_backend_lets_go_naming_the_split_left() -> None:
    gone, event = await _reconciler(None, Client(), Clock(ASKED)).release(_deleted(MID_CANARY))
    assert gone
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "TrafficNotRestored")
    assert "crm-00001 70%, crm-ro-1 30%" in event.message


async def test_an_unreachable_backend_holds_the_deletion_until_the_progress_deadline() -> None:
    backend = Backend(failures=1000)
    clock = Clock(ASKED + dt.timedelta(seconds=5))
    reconciler = _reconciler(backend, Client(), clock)
    body = _deleted(MID_CANARY)

    gone, event = await reconciler.release(body)
    assert not gone
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "DeletionBlocked")
    assert "503 service unavailable" in event.message
    assert "retried until 2026-12-01T12:02:00Z" in event.message
    assert f"remove its finalizer {FINALIZER}: kubectl patch rollout ro -n team-a" in event.message

    clock.now += dt.timedelta(seconds=60)
    assert await reconciler.release(body) == (False, None), "the same reason is said once"

    clock.now = ASKED + dt.timedelta(seconds=120)
    gone, event = await reconciler.release(body)
    assert gone, "never blocks for good"
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "TrafficNotRestored")
    assert "crm-00001 70%, crm-ro-1 30%" in event.message
    assert backend.routes == []


async def test_a_backend_that_answers_again_returns_the_traffic_then_lets_go() -> None:
    backend = Backend(failures=1)
    reconciler = _reconciler(backend, Client(), Clock(ASKED + dt.timedelta(seconds=1)))
    body = _deleted(MID_CANARY)
    assert (await reconciler.release(body))[0] is False
    gone, event = await reconciler.release(body)
    assert gone
    assert event is not None
    assert event.reason == "TrafficRestored"
    assert backend.routes == [(("crm-00001", 100, None),)]
