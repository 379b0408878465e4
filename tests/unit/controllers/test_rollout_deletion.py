"""Deleting a Rollout: one that may hold its target's traffic split on Cloud Run carries the
finalizer, and its release sends all traffic back to the stable revision before it goes; an
ended one (or one on Kubernetes, whose new revision goes by garbage collection) is let go
touching nothing; a target that is gone lets go at once; a backend that cannot route holds
the deletion (a Warning saying why and how to delete at once) at most
spec.progressDeadlineSeconds after the deletion was asked for."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from apis.v1alpha1.rollout import RolloutStatus, TrafficRouting
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.controller import FINALIZER
from controllers.core.errors import StalledError, TransientError
from controllers.core.status import with_generation
from controllers.rollout.backends import CanaryState, Routed, Serving
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

    async def list(
        self, resource: Any, *, namespace: str | None = None, fields: Any = None
    ) -> AsyncIterator[Any]:
        for _ in ():
            yield _


class Backend:
    """Cloud Run-like (routes by itself); `failures` route calls fail before one succeeds."""

    defers_target_patch = False

    def __init__(self, *, routing: TrafficRouting | None = None, failures: int = 0) -> None:
        self.routing = routing
        self.failures = failures
        self.error = "Cloud Run: 503 service unavailable"
        self.routes: list[Any] = []

    async def serving(self, target: XynergyService) -> Serving:
        """The stable revision serves; the template names it (no promotion written)."""
        return Serving("crm-00001", ready=True, template="crm-00001")

    async def route(self, target: XynergyService, split: Any) -> Routed:
        if self.failures:
            self.failures -= 1
            raise TransientError(self.error, reason="Unavailable")
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
        # ended on Cloud Run: its stable revision pinned by name until its deletion routes
        # LATEST; not once found superseded (its traffic went to LATEST then)
        ({**MID_CANARY, "phase": "RolledBack", "canaryWeight": 0}, None, True),
        ({**MID_CANARY, "phase": "Aborted", "canaryWeight": 0}, None, True),
        ({**MID_CANARY, "phase": "Aborted", "canaryWeight": 0,
          "message": "superseded: XynergyService crm now runs image crm:3"}, None, False),
        # stalled mid-way: its next converge routes the split back, then writes the weight 0
        ({**MID_CANARY, "phase": "Degraded"}, None, True),
        ({**MID_CANARY, "phase": "Degraded", "canaryWeight": 0}, None, True),
        ({**MID_CANARY, "phase": "Degraded", "trafficRouting": "gateway"}, None, False),
        ({**MID_CANARY, "phase": "RolledBack", "canaryWeight": 0}, "retry/2", True),
        ({**MID_CANARY, "phase": "RolledBack", "canaryWeight": 0,
          "message": "superseded: XynergyService crm now runs image crm:3"}, "undo/2", False),
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
        {
            **MID_CANARY,
            "phase": "RolledBack",
            "canaryWeight": 0,
            "message": "superseded: XynergyService crm now runs image crm:3",
        },
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
    assert (
        f"remove its finalizer {FINALIZER}: kubectl patch rollouts.xynergy.io ro -n team-a"
        in event.message
    )

    clock.now += dt.timedelta(seconds=60)
    backend.failures = 1
    backend.error = "Cloud Run: 503 upstream connect error"  # another text, the same reason
    gone, again = await reconciler.release(body)
    assert not gone
    assert again is not None
    assert "upstream connect error" in again.message
    assert again.news_key == event.news_key, "the same reason: the core says it once"
    backend.failures = 1000

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


class CloudRun:
    """A Cloud Run-like backend (routes by itself) keeping the service's traffic split."""

    routing = None
    defers_target_patch = False

    def __init__(self) -> None:
        self.split: dict[str | None, int] = {"crm-00001": 100}
        self.writes = 0

    def revision_name(self, canary: XynergyService) -> str:
        return "crm-ro-1"

    async def serving(self, target: XynergyService) -> Serving:
        return Serving("crm-00001", ready=True)

    async def ensure_canary(self, *_: Any, **__: Any) -> CanaryState:
        return CanaryState(ready=True)

    async def route(self, target: XynergyService, split: Any) -> Routed:
        wanted = {revision: weight for revision, weight, _ in split if weight}
        if wanted != self.split:
            self.split, self.writes = wanted, self.writes + 1
        return Routed(1, {})


def _unconfigured(*_: Any) -> Any:
    raise StalledError(
        "spec.analysis.metrics[errors]: source prometheus is not configured in this operator",
        reason="MetricsSourceUnavailable",
    )


async def _stalled_mid_canary(backend: CloudRun) -> tuple[RolloutReconciler, dict[str, Any]]:
    """A canary at 30 % whose analysis cannot run: Degraded, as the core writes it."""
    reconciler = _reconciler(backend, Client(), Clock(ASKED))  # type: ignore[arg-type]
    reconciler.metrics = _unconfigured
    body = _deleted(None)
    del body["metadata"]["deletionTimestamp"]
    body["spec"]["strategy"] = {
        "canary": {"steps": [{"setWeight": 30}, {"analysis": {"duration": "2m"}}]}
    }
    body["spec"]["analysis"] = {"interval": "1m",
                                "metrics": [{"name": "errors", "query": "e{r='{{revision}}'}"}]}  # fmt: skip
    for seconds in (0, 70):  # step 0 (30 %), then the first look of the analysis
        result = await reconciler.reconcile(
            copy.deepcopy(body), now=ASKED + dt.timedelta(seconds=seconds), child=None
        )
        written = with_generation(result.status, body)
        body["status"] = written.model_dump(by_alias=True, exclude_none=True, mode="json")
    return reconciler, body


async def test_a_rollout_stalled_mid_way_keeps_the_finalizer_until_its_traffic_is_back() -> None:
    backend = CloudRun()
    reconciler, body = await _stalled_mid_canary(backend)
    status = body["status"]
    assert status["phase"] == "Degraded"
    assert backend.split == {"crm-00001": 70, "crm-ro-1": 30}, "not routed back yet"
    assert status["canaryWeight"] == 30, "the status says the split Cloud Run still holds"
    assert status["message"].endswith("; all traffic goes back on crm-00001")
    assert needs_finalizer(body), "kopf must not drop the finalizer with this status write"

    # the next converge (after the core's backoff) routes it back; the finalizer stays while
    # the stable revision is pinned by name (its deletion routes LATEST)
    result = await reconciler.reconcile(copy.deepcopy(body), now=ASKED + dt.timedelta(seconds=72),
                                        child=None)  # fmt: skip
    assert backend.split == {"crm-00001": 100}
    body["status"] = with_generation(result.status, body).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    assert body["status"]["canaryWeight"] == 0
    assert body["status"]["message"].endswith("; all traffic back on crm-00001")
    assert needs_finalizer(body)
    again = await reconciler.reconcile(copy.deepcopy(body), now=ASKED + dt.timedelta(seconds=80),
                                       child=None)  # fmt: skip
    assert (
        with_generation(again.status, body).model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
        == body["status"]
    ), "restored: later converges write nothing"
    assert backend.writes == 2, "30 % once, then back to the stable revision once"


async def test_deleting_a_rollout_stalled_mid_way_before_its_next_converge_restores_traffic() -> (
    None
):
    backend = CloudRun()
    reconciler, body = await _stalled_mid_canary(backend)
    body["metadata"]["deletionTimestamp"] = ASKED.strftime("%Y-%m-%dT%H:%M:%SZ")  # in the gap
    gone, event = await reconciler.release(body)
    assert gone
    assert backend.split == {None: 100}, "given back, then LATEST (no longer pinned by name)"
    assert backend.writes == 3, "30 %, back to the stable revision, LATEST"
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "Released")
    assert (
        "deleted while Degraded: its split given back to crm-00001, all traffic goes to "
        "the latest revision" in event.message
    )


async def test_a_rollout_whose_spec_turned_unreadable_keeps_its_split_on_record() -> None:
    """A Rollout stored before a check this operator adds (rolling maxSurge and
    maxUnavailable both 0) no longer validates: its converge says InvalidSpec but keeps
    where the traffic stands (so the finalizer stays), and deleting it says what it leaves."""
    backend = Backend()
    reconciler = _reconciler(backend, Client(), Clock(ASKED))
    body = _deleted(MID_CANARY)
    del body["metadata"]["deletionTimestamp"]
    body["spec"]["strategy"] = {"rolling": {"maxSurge": 0, "maxUnavailable": 0}}
    result = await reconciler.reconcile(body, now=ASKED, child=None)
    status = result.status
    assert isinstance(status, RolloutStatus)
    assert status.phase == "Degraded"
    assert (status.stable_revision, status.canary_revision, status.canary_weight) == (
        MID_CANARY["stableRevision"],
        MID_CANARY["canaryRevision"],
        MID_CANARY["canaryWeight"],
    )
    kept = _deleted(status.model_dump(mode="json", by_alias=True, exclude_none=True))
    kept["spec"] = body["spec"]
    assert needs_finalizer(kept)
    gone, event = await reconciler.release(kept)
    assert gone
    assert backend.routes == [], "an unreadable spec names no target to route"
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "TrafficNotRestored")
    assert "cannot read" in event.message
    assert f"{MID_CANARY['canaryWeight']}%" in event.message


async def test_a_held_deletion_says_in_the_status_what_it_waits_for_and_until_when() -> None:
    """The core writes `deletion_status` after a held release: Reconciling `Deleting` (Ready
    False), naming the stable revision the traffic goes back to, why it waits and when the
    Rollout goes anyway; nothing once the release let it go."""
    body = _deleted({**MID_CANARY, "conditions": []})
    reconciler = _reconciler(Backend(failures=5), Client(), Clock(ASKED))
    gone, _ = await reconciler.release(body)
    assert not gone
    status = reconciler.deletion_status(body)
    assert status is not None
    conditions = {c.type: c for c in status.conditions}
    assert (conditions["Reconciling"].status, conditions["Reconciling"].reason) == (
        "True", "Deleting"
    )  # fmt: skip
    assert conditions["Ready"].status != "True"
    message = conditions["Reconciling"].message
    assert message == status.message
    assert message.startswith("being deleted: the deletion waits to return all traffic to the "
                              "stable revision crm-00001: Cloud Run: 503")  # fmt: skip
    assert "goes anyway at 2026-12-01T12:02:00Z" in message, message
    assert status.phase is not None
    assert status.phase.value == "Paused", "the phase is kept"
    assert reconciler.deletion_status(body) is None, "said once per held release"
    released = _reconciler(Backend(), Client(), Clock(ASKED))
    assert (await released.release(body))[0]
    assert released.deletion_status(body) is None
