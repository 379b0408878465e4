"""The blue-green fast rollback in the reconciler: within scaleDownDelaySeconds of a
promotion, undo, the abort annotation and spec.abort switch all traffic back to the kept old
revision through the backend's `restore` (no route of a new revision, no analysis), with a
`SwitchedBack` Event; past the window undo is the ordinary undo and abort does nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.rollout.backends import Routed, Serving
from controllers.rollout.reconciler import RolloutReconciler
from controllers.rollout.settings import RolloutSettings

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
TARGET = {
    "apiVersion": "xynergy.io/v1alpha1",
    "kind": "XynergyService",
    "metadata": {"name": "crm", "namespace": "team-a", "uid": "t-1", "generation": 2},
    "spec": {"image": "crm:2", "backend": "kubernetes"},
}


class Client:
    def __init__(self, rollouts: list[dict[str, Any]] | None = None) -> None:
        self.patches: list[Any] = []
        self.rollouts = rollouts or []
        """The namespace's other Rollouts."""

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        return SimpleNamespace(to_dict=lambda: TARGET)

    async def list(
        self, resource: Any, *, namespace: str | None = None, fields: Any = None
    ) -> AsyncIterator[Any]:
        for body in self.rollouts:
            if fields and (body["spec"]["targetRef"]["name"],) != tuple(fields.values()):
                continue  # a field selector on spec.targetRef.name
            yield SimpleNamespace(to_dict=lambda body=body: body)

    async def patch(self, resource: Any, name: str, patch: Any, **_: Any) -> None:
        self.patches.append(patch)


class Backend:
    routing = None

    def __init__(self, *, defers: bool) -> None:
        self.defers_target_patch = defers
        self.calls: list[tuple[str, Any]] = []

    def revision_name(self, canary: XynergyService) -> str:
        return "crm-ro-2"

    async def serving(self, target: XynergyService) -> Serving:
        return Serving("crm-ro-2", ready=True)

    async def route(self, target: XynergyService, split: Any) -> Routed:
        self.calls.append(("route", split))
        return Routed(0, {})

    async def restore(
        self, target: XynergyService, *, kept: str, image: str | None, template: Any = None
    ) -> Routed:
        self.calls.append(("restore", (kept, image)))
        return Routed(1, {})

    async def promote(
        self, *_: Any, name: str, keep: str | None, confirmed: bool = False
    ) -> Routed:
        self.calls.append(("promote", (name, keep)))
        return Routed(0, {})


def _promoted(*, scale_down_in: float, abort: bool = False, action: str | None = None) -> Any:
    meta: dict[str, Any] = {"name": "ro", "namespace": "team-a", "uid": "r-1", "generation": 1}
    if action:
        meta["annotations"] = {"xynergy.io/rollout-action": action}
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": meta,
        "spec": {
            "targetRef": {"name": "crm"},
            "image": "crm:2",
            "abort": abort,
            "strategy": {"blueGreen": {"scaleDownDelaySeconds": 600}},
        },
        "status": {
            "phase": "Promoted",
            "stableRevision": "crm-00001",
            "canaryRevision": "crm-ro-2",
            "canaryWeight": 100,
            "scaleDownAt": (NOW + dt.timedelta(seconds=scale_down_in)).isoformat(),
            "history": [{"revision": "crm-00001", "image": "crm:1", "time": NOW.isoformat()}],
        },
    }


async def _converge(
    body: Any, *, defers: bool = True, others: list[dict[str, Any]] | None = None
) -> tuple[Any, Backend, Client]:
    backend, client = Backend(defers=defers), Client(others)
    reconciler = RolloutReconciler(
        client=client,  # type: ignore[arg-type]
        backends=lambda *_: backend,  # type: ignore[arg-type]  # a partial RolloutBackend
        metrics=lambda *_: None,  # type: ignore[arg-type]
        settings=RolloutSettings(),
    )
    return await reconciler.reconcile(body, now=NOW, child=None), backend, client


@pytest.mark.parametrize(
    ("body", "phase"),
    [
        (_promoted(scale_down_in=60, action="undo/1"), "RolledBack"),
        (_promoted(scale_down_in=60, action="abort/1"), "Aborted"),
        (_promoted(scale_down_in=60, abort=True), "Aborted"),
    ],
)
async def test_within_the_window_traffic_switches_back_to_the_kept_revision(
    body: Any, phase: str
) -> None:
    result, backend, client = await _converge(body)
    status = result.status
    assert backend.calls == [("restore", ("crm-00001", "crm:1"))]
    assert client.patches == [], "the target was never patched (Kubernetes defers it)"
    assert status.phase.value == phase
    assert status.stable_revision == "crm-00001"
    assert status.stable_image == "crm:1"
    assert status.canary_weight == 0
    assert status.scale_down_at is None
    assert status.history == []
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert stalled.reason == "SwitchedBack"
    events = [(e.type, e.reason) for e in result.events]
    assert events == [("Warning", "SwitchedBack")]
    assert "crm-00001" in result.events[0].message


async def test_a_backend_that_patched_the_target_at_promotion_gets_its_image_back() -> None:
    _, backend, client = await _converge(_promoted(scale_down_in=60, action="undo"), defers=False)
    assert backend.calls == [("restore", ("crm-00001", "crm:1"))]
    assert client.patches == [{"spec": {"image": "crm:1"}}]


async def test_past_the_window_undo_is_the_ordinary_undo() -> None:
    result, backend, client = await _converge(_promoted(scale_down_in=-1, action="undo/1"))
    # all traffic back on the previous revision through `restore` (on Cloud Run the service's
    # template too, review Q 1), the target patched back to its image
    assert backend.calls == [("restore", ("crm-00001", "crm:1"))]
    assert client.patches == [{"spec": {"image": "crm:1"}}]
    assert result.status.phase.value == "RolledBack"
    assert [e.reason for e in result.events] == ["Undone"]


async def test_past_the_window_abort_leaves_the_promotion() -> None:
    result, backend, _ = await _converge(_promoted(scale_down_in=-1, action="abort/1"))
    assert result.status.phase.value == "Promoted"
    assert all(call != "restore" for call, _ in backend.calls)
    assert result.status.stable_revision == "crm-00001"


def _delivering(name: str = "ro-3") -> dict[str, Any]:
    """Another Rollout of the target, delivering (a canary at 20 %, started after ours)."""
    return {"metadata": {"name": name, "namespace": "team-a", "uid": f"uid-{name}"},
            "spec": {"targetRef": {"name": "crm"}},
            "status": {"phase": "Paused", "canaryWeight": 20}}  # fmt: skip


@pytest.mark.parametrize("defers", [True, False])
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_promoted(scale_down_in=60, action="undo/1"), "UndoRefused"),
        (_promoted(scale_down_in=60, action="abort/1"), "AbortRefused"),
        (_promoted(scale_down_in=-1, action="undo/1"), "UndoRefused"),  # the ordinary undo
    ],
)
async def test_going_back_is_refused_while_another_rollout_delivers(
    body: Any, reason: str, defers: bool
) -> None:
    """Switching back (or the ordinary undo) routed all traffic to the old revision and, on
    Cloud Run or past the window, patched the target's image back: under the other Rollout,
    whose canary split went and whose stable revision changed beneath its analysis."""
    result, backend, client = await _converge(body, defers=defers, others=[_delivering()])
    # no switch back, no route to the old revision; on Kubernetes (defers) our own revision
    # gets no traffic (kept at full size, as a preview: the other Rollout's split is its
    # own), on Cloud Run nothing at all
    kept = [("route", ((body["status"]["canaryRevision"], 0, "preview"),))]
    assert backend.calls == (kept if defers else [])
    assert client.patches == [], "the target is not patched under the other Rollout"
    status = result.status
    assert status.phase.value == "Promoted", "nothing went back"
    assert status.handled_action == body["metadata"]["annotations"]["xynergy.io/rollout-action"]
    assert [(e.type, e.reason) for e in result.events] == [("Warning", reason)]
    assert "Rollout ro-3 is delivering to XynergyService crm" in result.events[0].message
    assert status.message.endswith(result.events[0].message)


async def test_spec_abort_within_the_window_is_refused_once_while_another_rollout_delivers() -> (
    None
):
    body = _promoted(scale_down_in=60, abort=True)
    result, backend, client = await _converge(body, others=[_delivering()])
    assert [e.reason for e in result.events] == ["AbortRefused"]
    assert all(call != "restore" for call, _ in backend.calls)
    body["status"] = result.status.model_dump(by_alias=True, exclude_none=True, mode="json")
    again, backend, client = await _converge(body, others=[_delivering()])
    assert again.events == [], "spec.abort is level-triggered: said once, not per converge"
    assert again.status.message == result.status.message
    assert all(call != "restore" for call, _ in backend.calls)
    assert client.patches == []
