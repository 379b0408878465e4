"""The Rollout reconciler with a new revision whose rollout an internal error interrupted: it
waits (Progressing, reason RevisionInterrupted, a Warning Event) and comes back after the
core's backoff, never rolls back for it, and still gives up at `progressDeadlineSeconds`."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.controller import Requeue
from controllers.rollout.backends import CanaryState, Routed, Serving
from controllers.rollout.reconciler import RolloutReconciler
from controllers.rollout.settings import RolloutSettings

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
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


class Client:
    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        return SimpleNamespace(to_dict=lambda: TARGET)

    async def list(
        self, resource: Any, *, namespace: str | None = None, fields: Any = None
    ) -> AsyncIterator[Any]:
        for _ in ():  # no other Rollout of the target
            yield _


class Backend:
    routing = None
    defers_target_patch = False

    def __init__(self, state: CanaryState) -> None:
        self.state = state
        self.routes: list[Any] = []

    def revision_name(self, canary: XynergyService) -> str:
        return "crm-ro-1"

    async def serving(self, target: XynergyService) -> Serving:
        return Serving("crm-00001", ready=True)

    async def ensure_canary(self, *_: Any, **__: Any) -> CanaryState:
        return self.state

    async def route(self, target: XynergyService, split: Any) -> Routed:
        self.routes.append(split)
        return Routed(0, {})


def _rollout(status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "ro", "namespace": "team-a", "uid": "r-1", "generation": 1},
        "spec": {
            "targetRef": {"name": "crm"},
            "image": "crm:2",
            "progressDeadlineSeconds": 60,
            "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
        },
    }
    if status is not None:
        body["status"] = status
    return body


def _reconciler(backend: Backend) -> RolloutReconciler:
    return RolloutReconciler(
        client=Client(),  # type: ignore[arg-type]
        backends=lambda *_: backend,  # type: ignore[arg-type]  # a partial RolloutBackend
        metrics=lambda *_: None,  # type: ignore[arg-type]
        settings=RolloutSettings(),
    )


INTERRUPTED = CanaryState(ready=False, interrupted="Internal error; retry.")


async def test_an_interrupted_revision_is_waited_for_with_backoff_not_rolled_back() -> None:
    backend = Backend(INTERRUPTED)
    result = await _reconciler(backend).reconcile(_rollout(), now=NOW, child=None)
    status: Any = result.status
    assert status.phase.value == "Progressing"
    assert status.canary_revision == "crm-ro-1"
    assert "interrupted (Internal error; retry.)" in status.message
    assert result.requeue is Requeue.BACKOFF
    reconciling = next(c for c in status.conditions if c.type == "Reconciling")
    assert reconciling.reason == "RevisionInterrupted"
    interrupted = [e.type for e in result.events if e.reason == "RevisionInterrupted"]
    assert interrupted == ["Warning"]
    assert backend.routes == [], "no traffic moved"

    # the next converge (the status kept): still waiting, a Warning again
    again = await _reconciler(backend).reconcile(
        _rollout(status.model_dump(by_alias=True, mode="json", exclude_none=True)),
        now=NOW + dt.timedelta(seconds=10),
        child=None,
    )
    assert again.status.phase.value == "Progressing"  # type: ignore[attr-defined]
    assert [e.reason for e in again.events] == ["RevisionInterrupted"]


async def test_an_interrupted_revision_still_has_a_progress_deadline() -> None:
    backend = Backend(INTERRUPTED)
    first = await _reconciler(backend).reconcile(_rollout(), now=NOW, child=None)
    body = _rollout(first.status.model_dump(by_alias=True, mode="json", exclude_none=True))
    late = await _reconciler(backend).reconcile(
        body, now=NOW + dt.timedelta(seconds=61), child=None
    )
    status: Any = late.status
    assert status.phase.value == "Degraded"
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert stalled.reason == "ProgressDeadlineExceeded"
    assert "interrupted: Internal error; retry." in status.message
    assert backend.routes == [(("crm-00001", 100, None),)]


async def test_a_revision_that_failed_on_its_own_rolls_back_at_once() -> None:
    backend = Backend(CanaryState(ready=False, failed="container failed to start"))
    result = await _reconciler(backend).reconcile(_rollout(), now=NOW, child=None)
    status: Any = result.status
    assert status.phase.value == "Degraded"
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert stalled.reason == "RevisionFailed"
