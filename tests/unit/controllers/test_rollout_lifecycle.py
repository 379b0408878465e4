"""A Rollout's life through the reconciler and the real Kubernetes backend on an in-memory
provider: an ended Rollout never restarts because its target changed and stops touching
traffic and the target once the target runs something else (superseded); a second Rollout of
a target waits for the active one; a new image mid-rollout replaces the canary (the old one
removed, the new one without traffic); lifting spec.paused resumes; a canary that turns
unready with traffic rolls back after progressDeadlineSeconds; blue-green auto-promotion
counts from when the preview is ready."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from apis.v1alpha1.rollout import Rollout
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.controller import FINALIZER, Requeue
from controllers.core.errors import StalledError, TransientError
from controllers.core.status import with_generation
from controllers.providers.kubernetes import Applied
from controllers.rollout.backends import Routed, Serving
from controllers.rollout.kubernetes import KubernetesRollout
from controllers.rollout.reconciler import RolloutReconciler, _spec_digest
from controllers.rollout.resources import ROLLOUT_LABEL
from controllers.rollout.settings import RolloutSettings
from controllers.rollout.status import needs_finalizer, pending_action
from controllers.xynergyservice.resources import SERVICE_LABEL
from controllers.xynergyservice.resources.naming import REVISION_ANNOTATION, revision_name

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(seconds=1)


class Provider:
    """Deployments and Services in memory; a Deployment is available once `ready` names it."""

    def __init__(self) -> None:
        self.objs: dict[tuple[str, str], dict[str, Any]] = {}
        self.ready: set[str] = set()
        self.writes = 0
        self.failing = 0
        """Reads that fail (the API server away) before they answer again."""

    async def get(self, api_version: str, kind: str, name: str, ns: Any) -> Any:
        if self.failing:
            self.failing -= 1
            raise TransientError(f"reading {kind} {name}: timed out", reason="ApiError")
        obj = copy.deepcopy(self.objs.get((kind, name)))
        if obj is not None and kind == "Deployment":
            n = obj["spec"]["replicas"] if name in self.ready else 0
            obj["metadata"]["generation"] = 1
            obj["status"] = {"observedGeneration": 1, "replicas": n, "updatedReplicas": n,
                             "readyReplicas": n, "availableReplicas": n,
                             "conditions": [{"type": "Available", "status": "True"}]}  # fmt: skip
        return obj

    async def list(self, api_version: str, kind: str, ns: Any, *, labels: Any) -> list[Any]:
        return [
            copy.deepcopy(o)
            for (k, _), o in self.objs.items()
            if k == kind and labels.items() <= (o["metadata"].get("labels") or {}).items()
        ]

    async def apply(self, desired: Any, live: Any) -> Applied:
        key = (desired["kind"], desired["metadata"]["name"])
        self.objs[key] = copy.deepcopy(dict(desired))
        self.writes += 1
        return Applied(await self.get("", *key, None), wrote=True)

    async def remove_owned(self, api_version: str, kind: str, name: str, ns: Any, **_: Any) -> None:
        self.objs.pop((kind, name), None)
        self.writes += 1

    def deployments(self) -> dict[str, Any]:
        return {n: o for (k, n), o in self.objs.items() if k == "Deployment"}


class Client:
    """The target XynergyService (patches merged in) and the namespace's other Rollouts."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target
        self.patches: list[Any] = []
        self.rollouts: list[dict[str, Any]] = []
        self.selectors: list[Any] = []
        """The field selector of each list of Rollouts."""
        self.selectable = True
        """The apiserver selects Rollouts by spec.targetRef.name (else: 400, as before 1.31)."""

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        return SimpleNamespace(to_dict=lambda: copy.deepcopy(self.target))

    async def list(
        self, resource: Any, *, namespace: str | None = None, fields: Any = None
    ) -> AsyncIterator[Any]:
        self.selectors.append(fields)
        if fields and not self.selectable:  # as an apiserver before selectableFields answers
            raise ApiError(status=Status(code=400, reason="BadRequest", message=(
                f"field label not supported: {next(iter(fields))}")))  # fmt: skip
        for body in self.rollouts:
            if fields and (body["spec"]["targetRef"]["name"],) != tuple(fields.values()):
                continue  # a field selector on spec.targetRef.name (the CRD's selectableFields)
            yield SimpleNamespace(to_dict=lambda body=body: copy.deepcopy(body))

    async def patch(self, resource: Any, name: str, patch: Any, **_: Any) -> None:
        self.patches.append(patch)
        self.target["spec"].update(patch["spec"])


def _target(*, routes: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": "crm:1", "backend": "kubernetes", "port": 8080,
                            "scaling": {"minInstances": 4, "maxInstances": 4}}  # fmt: skip
    if routes:
        spec["routes"] = [{"prefix": "/api"}]
    return {"apiVersion": "xynergy.io/v1alpha1", "kind": "XynergyService",
            "metadata": {"name": "crm", "namespace": "team", "uid": "t-1", "generation": 2},
            "spec": spec}  # fmt: skip


def _rollout(name: str, steps: list[Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "xynergy.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": "team", "uid": f"uid-{name}",
                         "generation": 1, **meta},
            "spec": {"targetRef": {"name": "crm"}, "image": "crm:2",
                     "strategy": {"canary": {"steps": steps}}}}  # fmt: skip


class World:
    def __init__(self, steps: list[Any], *, routes: bool = True, **spec: Any) -> None:
        self.provider = Provider()
        self.client = Client(_target(routes=routes))
        self.body = _rollout("crm-2", steps)
        self.body["spec"].update(spec)
        self.events: list[Any] = []
        self.other: Any = None
        """The last result of another Rollout's converge (`_converge_other`)."""
        self.provider.objs[("Deployment", "crm")] = {"metadata": {"name": "crm"},
                                                     "spec": {"replicas": 4}}  # fmt: skip
        self.provider.ready.add("crm")
        self.settle()
        provider = self.provider
        self.reconciler = RolloutReconciler(
            client=self.client,  # type: ignore[arg-type]
            backends=lambda ro, tgt, can: KubernetesRollout(provider, ro, tgt, can),  # type: ignore[arg-type]
            metrics=lambda *_: None,  # type: ignore[arg-type,return-value]
            settings=RolloutSettings(),
        )

    def settle(self) -> None:
        """The XynergyService controller: the target's Deployment runs the target's spec."""
        target = XynergyService.model_validate(self.client.target)
        dep = self.provider.objs[("Deployment", "crm")]
        dep["metadata"]["annotations"] = {REVISION_ANNOTATION: revision_name(target)}

    async def converge(self, now: dt.datetime) -> Any:
        result = await self.reconciler.reconcile(copy.deepcopy(self.body), now=now, child=None)
        written = with_generation(result.status, self.body)  # as the core writes it
        self.body["status"] = written.model_dump(by_alias=True, exclude_none=True, mode="json")
        self.events = [(e.reason, e.message) for e in result.events]
        return result.status

    async def run_until(self, phase: str, now: dt.datetime, *, limit: int = 8) -> dt.datetime:
        for _ in range(limit):
            status = await self.converge(now)
            now += STEP
            self.provider.ready |= set(self.provider.deployments())
            self.settle()
            if status.phase.value == phase and not status.message.endswith("new revision"):
                return now
        raise AssertionError(f"not {phase}: {self.body['status']}")


async def test_a_promoted_rollout_whose_target_moved_on_is_superseded_and_touches_nothing() -> None:
    world = World([{"setWeight": 50}])
    now = await world.run_until("Promoted", T0)
    assert world.client.patches == [{"spec": {"image": "crm:2"}}]
    assert world.provider.deployments().keys() == {"crm"}, "the new revision's children went"
    # a later release (or an edit of the target) ships crm:3 with a new env var
    world.client.target["spec"].update(image="crm:3", env=[{"name": "FEATURE_X", "value": "on"}])
    writes = world.provider.writes
    for _ in range(3):  # a drift check, an operator restart...
        status = await world.converge(now)
        now += dt.timedelta(hours=1)
        assert status.phase.value == "Promoted", "never restarted for the target's change"
        assert status.canary_revision == world.body["status"]["canaryRevision"]
        assert status.message.startswith("superseded: XynergyService crm now runs image crm:3")
        assert not status.traffic, "the gateway ignores it"
        ready = next(c for c in status.conditions if c.type == "Ready")
        assert ready.reason == "Superseded"
    assert world.client.patches == [{"spec": {"image": "crm:2"}}], "the target is not patched"
    assert world.provider.writes == writes, "no revision deployed, nothing scaled"
    assert world.provider.deployments().keys() == {"crm"}
    assert world.events == [], "the Superseded Event is posted once"
    world.client.target["spec"].update(image="crm:2", env=None)  # back (an undo elsewhere)
    status = await world.converge(now)
    assert status.message == f"the target runs revision {status.canary_revision} again"


async def test_superseded_before_the_target_settled_removes_the_leftover_revision() -> None:
    world = World([{"setWeight": 50}])
    now = T0
    for _ in range(3):  # promoted; the target's Deployment has not run the new spec yet
        status = await world.converge(now)
        now += STEP
        world.provider.ready |= set(world.provider.deployments())
    assert status.phase.value == "Promoted"
    (canary,) = world.provider.deployments().keys() - {"crm"}
    assert [t.weight for t in status.traffic] == [100]
    world.client.target["spec"]["image"] = "crm:3"
    status = await world.converge(now)
    assert status.message.startswith("superseded:")
    assert status.traffic == []
    assert canary not in world.provider.deployments(), "no full-size revision left serving"
    assert [reason for reason, _ in world.events] == ["Superseded"]


@pytest.mark.parametrize(
    "edit",
    [{"image": "crm:4"}, {"template": {"env": [{"name": "MODE", "value": "fast"}]}}],
)
async def test_an_ended_rollout_starts_again_for_its_own_new_spec(edit: dict[str, Any]) -> None:
    world = World([{"setWeight": 50}])
    now = await world.run_until("Promoted", T0)
    first = world.body["status"]["canaryRevision"]
    world.body["spec"].update(edit)
    world.body["metadata"]["generation"] = 2
    status = await world.converge(now)
    assert status.phase.value == "Progressing"
    assert status.canary_revision not in (first, None)


async def test_an_edit_of_an_ended_rollout_survives_a_failed_converge() -> None:
    world = World([{"setWeight": 50}])
    now = await world.run_until("Promoted", T0)
    first = world.body["status"]["canaryRevision"]
    world.body["spec"]["image"] = "crm:4"
    world.body["metadata"]["generation"] = 2
    world.provider.failing = 1
    status = await world.converge(now)  # its status is written (observedGeneration 2)
    assert status.phase.value == "Promoted"
    assert world.body["status"]["observedGeneration"] == 2
    status = await world.converge(now + STEP)
    assert status.phase.value == "Progressing", "the edit is still delivered"
    assert status.canary_revision not in (first, None)


async def test_a_promoted_rollout_leaves_its_target_own_other_changes_alone() -> None:
    world = World([{"setWeight": 50}])
    now = await world.run_until("Promoted", T0)
    first = world.body["status"]["canaryRevision"]
    world.client.target["spec"]["port"] = 9090  # the target's own change: a new Pod template
    world.provider.ready.discard("crm")  # and its Deployment rolling
    writes = world.provider.writes
    status = await world.converge(now)
    assert (status.phase.value, status.canary_revision) == ("Promoted", first), "no restart"
    assert not status.message.startswith("superseded"), "it runs the promoted image and env"
    assert world.provider.writes == writes, "the old revision is not brought back to serve"
    assert not status.traffic


class RecordingBackend:
    """A Cloud Run-like backend (routes by itself) that records what is asked of it."""

    routing = None
    defers_target_patch = False

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def revision_name(self, canary: XynergyService) -> str:
        return "crm-ro-2"

    async def serving(self, target: XynergyService) -> Serving:
        return Serving("crm-00001", ready=True)

    async def route(self, target: XynergyService, split: Any) -> Routed:
        self.calls.append(("route", split))
        return Routed(1, {})

    async def retire(self, *, keep: str | None) -> int:
        self.calls.append(("retire", keep))
        return 0

    async def promote(
        self,
        target: XynergyService,
        canary: XynergyService,
        *,
        name: str,
        keep: str | None,
        confirmed: bool = False,
    ) -> Routed:
        self.calls.append(("promote", name))
        return Routed(1, {})


def _on(client: Client, backend: RecordingBackend) -> RolloutReconciler:
    """The reconciler on `client` with every Rollout on `backend`."""
    return RolloutReconciler(
        client=client,  # type: ignore[arg-type]
        backends=lambda *_: backend,  # type: ignore[arg-type]  # a partial RolloutBackend
        metrics=lambda *_: None,  # type: ignore[arg-type,return-value]
        settings=RolloutSettings(),
    )


@pytest.mark.parametrize(
    ("target_image", "calls", "superseded"),
    [
        ("crm:1", [("route", (("crm-00001", 100, None),))], False),
        # superseded: the stable revision it pinned gives way to LATEST (the target's own)
        ("crm:3", [("route", ((None, 100, None),)), ("retire", None)], True),
    ],
)
async def test_a_rolled_back_rollout_holds_the_stable_only_while_the_target_runs_it(
    target_image: str, calls: list[Any], superseded: bool
) -> None:
    client = Client(_target(routes=False))
    client.target["spec"]["image"] = target_image
    backend = RecordingBackend()
    reconciler = _on(client, backend)
    body = _rollout("crm-2", [{"setWeight": 50}])
    body["status"] = {"phase": "RolledBack", "stableRevision": "crm-00001",
                      "canaryRevision": "crm-ro-2", "canaryImage": "crm:2",
                      "stableImage": "crm:1", "canaryWeight": 0,
                      "message": "analysis failed; all traffic back on crm-00001"}  # fmt: skip
    result = await reconciler.reconcile(body, now=T0, child=None)
    assert backend.calls == calls, "a superseded rollback never pins the old stable revision"
    status: Any = result.status
    assert status.phase.value == "RolledBack"
    assert status.message.startswith("superseded:") is superseded
    assert ("Superseded" in [e.reason for e in result.events]) is superseded


@pytest.mark.parametrize(
    ("phase", "other_phase", "calls"),
    [
        ("Promoted", "Progressing", []),  # a canary at 20 %: LATEST 100 % would undo it
        ("Promoted", "Paused", []),  # a blue-green preview: its tag would go
        ("RolledBack", "Progressing", []),  # pinning the old stable at 100 % would too
        ("Promoted", "Promoted", [("promote", "crm-ro-2")]),  # none delivering: it holds
        ("RolledBack", None, [("route", (("crm-00001", 100, None),))]),
    ],
)
async def test_an_ended_rollout_leaves_the_traffic_to_another_one_delivering(
    phase: str, other_phase: str | None, calls: list[Any]
) -> None:
    """On Cloud Run a Promoted Rollout holds LATEST at 100 % and a rolled-back one pins its
    stable revision, at every converge: with another Rollout of the target delivering
    (started after this one ended), that rewrote its canary split or preview each resync."""
    client = Client(_target(routes=False))
    backend = RecordingBackend()
    reconciler = _on(client, backend)
    body = _rollout("crm-2", [{"setWeight": 50}])
    promoted = phase == "Promoted"
    body["status"] = {"phase": phase, "stableRevision": "crm-00001",
                      "canaryRevision": "crm-ro-2", "canaryImage": "crm:2",
                      "stableImage": "crm:1", "canaryWeight": 100 if promoted else 0}  # fmt: skip
    client.target["spec"]["image"] = "crm:2" if promoted else "crm:1"
    other = _rollout("crm-3", [{"setWeight": 20}])
    if other_phase:
        other["status"] = {"phase": other_phase}
    client.rollouts = [other, copy.deepcopy(body)]
    result = await reconciler.reconcile(body, now=T0, child=None)
    assert backend.calls == calls
    status: Any = result.status
    assert status.phase.value == phase, "it stays what it was"


@pytest.mark.parametrize(
    ("other_phase", "other_target", "created", "waits"),
    [
        ("Progressing", "crm", "2026-12-01T13:00:00Z", True),
        ("Paused", "crm", "2026-12-01T13:00:00Z", True),
        (None, "crm", "2026-12-01T11:00:00Z", True),  # created first, about to start
        (None, "crm", "2026-12-01T13:00:00Z", False),  # created later: it waits for us
        ("Promoted", "crm", "2026-12-01T11:00:00Z", False),
        ("Progressing", "billing", "2026-12-01T11:00:00Z", False),
    ],
)
async def test_a_rollout_does_not_start_while_another_one_of_its_target_is_active(
    other_phase: str | None, other_target: str, created: str, waits: bool
) -> None:
    world = World([{"setWeight": 50}])
    world.body["metadata"]["creationTimestamp"] = "2026-12-01T12:00:00Z"
    other = _rollout("crm-1", [{"setWeight": 10}], creationTimestamp=created)
    other["spec"]["targetRef"]["name"] = other_target
    if other_phase:
        other["status"] = {"phase": other_phase}
    world.client.rollouts = [other, copy.deepcopy(world.body)]  # the list holds this one too
    status = await world.converge(T0)
    if not waits:
        assert status.phase.value == "Progressing"
        return
    assert status.phase.value == "Degraded"
    assert status.canary_revision is None
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert stalled.reason == "RolloutConflict"
    assert "Rollout crm-1" in status.message
    assert world.provider.deployments().keys() == {"crm"}, "no revision deployed"
    assert world.client.patches == []
    other["status"] = {"phase": "Promoted"}  # the other one ends: this one starts
    status = await world.converge(T0 + STEP)
    assert status.phase.value == "Progressing"
    assert len(world.provider.deployments()) == 2


@pytest.mark.parametrize("routes", [False, True])
async def test_a_new_image_mid_rollout_replaces_the_canary_and_gives_the_new_one_no_traffic(
    routes: bool,
) -> None:
    world = World([{"setWeight": 50}, {"pause": {}}], routes=routes)
    now = await world.run_until("Paused", T0)
    (old,) = world.provider.deployments().keys() - {"crm"}
    assert world.body["status"]["canaryWeight"] == 50
    world.body["spec"]["image"] = "crm:3"
    world.body["metadata"]["generation"] = 2
    status = await world.converge(now)
    assert status.canary_weight == 0
    assert status.canary_revision != old
    deployments = world.provider.deployments()
    assert old not in deployments, "the replaced canary does not keep serving"
    assert ("Service", old) not in world.provider.objs
    new = deployments[status.canary_revision]
    assert new["spec"]["replicas"] == 1, "sized for no traffic, not the old 50 %"
    labels = new["spec"]["template"]["metadata"]["labels"]
    assert SERVICE_LABEL not in labels, "not in the target's Service before its checks"
    assert new["metadata"]["labels"][ROLLOUT_LABEL] == "crm-2"
    assert not status.traffic


def _canaries(world: World) -> set[str]:
    return set(world.provider.deployments()) - {"crm"}


async def test_lifting_spec_paused_resumes_the_rollout() -> None:
    world = World([{"setWeight": 20}, {"pause": {"duration": "60s"}}, {"setWeight": 60}])
    now = T0
    for _ in range(3):
        status = await world.converge(now)
        now += STEP
        world.provider.ready |= _canaries(world)
    assert (status.phase.value, status.current_step_index) == ("Progressing", 1)
    world.body["spec"]["paused"] = True
    status = await world.converge(now)
    assert (status.phase.value, status.pause_reason) == ("Paused", "SpecPaused")
    world.body["spec"]["paused"] = False
    status = await world.converge(now + dt.timedelta(seconds=120))  # the pause step is over
    assert status.phase.value == "Progressing"
    assert status.pause_reason is None
    status = await world.converge(now + dt.timedelta(seconds=121))
    assert (status.current_step_index, status.canary_weight) == (3, 60)


async def test_a_pause_step_outlives_a_spec_pause_lifted() -> None:
    world = World([{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}])
    now = await world.run_until("Paused", T0)
    assert world.body["status"]["pauseReason"] == "PausedByStep"
    world.body["spec"]["paused"] = True
    await world.converge(now)
    world.body["spec"]["paused"] = False
    status = await world.converge(now + STEP)
    assert (status.phase.value, status.canary_weight) == ("Paused", 20), "waits for promote"
    assert status.pause_reason == "PausedByStep"


async def test_a_canary_unready_with_traffic_rolls_back_past_the_deadline() -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "1h"}}]
    world = World(steps, progressDeadlineSeconds=60)
    now = T0
    for _ in range(3):
        status = await world.converge(now)
        now += STEP
        world.provider.ready |= _canaries(world)
    assert (status.phase.value, status.canary_weight) == ("Progressing", 50)
    world.provider.ready = {"crm"}  # the canary's Pods crash-loop
    gone = now
    status = await world.converge(gone)
    assert status.canary_unready_since == gone
    assert "unready since" in status.message
    world.provider.ready |= _canaries(world)  # back for a moment: the clock starts again
    status = await world.converge(gone + dt.timedelta(seconds=30))
    assert status.canary_unready_since is None
    world.provider.ready = {"crm"}
    again = gone + dt.timedelta(seconds=50)
    await world.converge(again)
    status = await world.converge(again + dt.timedelta(seconds=60))
    assert (status.phase.value, status.canary_weight) == ("Progressing", 50), "not yet"
    assert [t.weight for t in status.traffic] == [50, 50]
    status = await world.converge(again + dt.timedelta(seconds=61))
    assert (status.phase.value, status.canary_weight) == ("Degraded", 0)
    assert not status.traffic, "all traffic back on the target's Service"
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert stalled.reason == "ProgressDeadlineExceeded"
    assert "unready since 2026-12-01T12:00:53Z (61s" in status.message
    assert "with 50% of the traffic" in status.message
    (canary,) = _canaries(world)
    assert world.provider.deployments()[canary]["spec"]["replicas"] == 0


async def test_blue_green_auto_promotion_counts_from_when_the_preview_is_ready() -> None:
    strategy = {"blueGreen": {"previewRoute": "/preview", "autoPromotionSeconds": 600}}
    world = World([], strategy=strategy)
    status = await world.converge(T0)
    assert status.phase.value == "Progressing"
    ready = T0 + dt.timedelta(minutes=11)  # a slow image pull and start
    world.provider.ready |= _canaries(world)
    status = await world.converge(ready)
    assert status.phase.value == "Progressing", "600 s of preview, not 0"
    assert status.step_started_at == ready
    assert status.canary_ready_at == ready
    status = await world.converge(ready + dt.timedelta(seconds=599))
    assert status.phase.value == "Progressing"
    status = await world.converge(ready + dt.timedelta(seconds=601))
    assert status.phase.value == "Promoted"


async def test_a_stalled_analysis_says_the_traffic_went_back_and_the_next_converge_moves_it() -> (
    None
):
    steps = [{"setWeight": 50}, {"analysis": {"duration": "2m"}}]
    analysis = {"interval": "1m", "metrics": [{"name": "lat", "query": "x{r='{{revision}}'}"}]}
    world = World(steps, analysis=analysis)

    def unconfigured(*_: Any) -> Any:
        raise StalledError("spec.analysis.metrics[lat]: not configured", reason="NoSource")

    world.reconciler.metrics = unconfigured
    now = T0
    for _ in range(2):
        status = await world.converge(now)
        world.provider.ready |= _canaries(world)
    assert (status.phase.value, status.canary_weight) == ("Progressing", 50)
    status = await world.converge(now + dt.timedelta(seconds=70))  # the first look
    assert (status.phase.value, status.canary_weight) == ("Degraded", 0)
    assert status.traffic == [], "the gateway stops sending the canary its 50 %"
    assert status.message.endswith(f"all traffic goes back on {status.stable_revision}")
    await world.converge(now + dt.timedelta(seconds=75))
    (canary,) = _canaries(world)
    assert world.provider.deployments()[canary]["spec"]["replicas"] == 0


async def test_promotion_makes_the_new_revision_the_stable_one() -> None:
    world = World([{"setWeight": 50}])
    first = await world.converge(T0)
    await world.run_until("Promoted", T0 + STEP)
    status = world.body["status"]
    assert status["stableRevision"] == status["canaryRevision"] != first.stable_revision
    assert status["stableImage"] == "crm:2"
    assert [r["revision"] for r in status["history"]] == [first.stable_revision]
    assert status["history"][0]["image"] == "crm:1"


async def test_retry_of_a_superseded_rollout_delivers_over_what_the_target_runs_now() -> None:
    world = World([{"setWeight": 50}, {"pause": {}}], routes=False)
    now = await world.run_until("Paused", T0)
    (old,) = _canaries(world)
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "abort/1"}
    status = await world.converge(now)
    assert status.phase.value == "Aborted"
    # meanwhile the target gets a new env var and runs it
    world.client.target["spec"]["env"] = [{"name": "FEATURE_X", "value": "on"}]
    world.settle()
    status = await world.converge(now + STEP)
    assert status.message.startswith("superseded:")
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "retry/1"}
    status = await world.converge(now + 2 * STEP)
    assert status.phase.value == "Progressing"
    assert status.canary_revision not in (old, None), "the revision of the target as it is now"
    served = world.provider.objs[("Deployment", "crm")]["metadata"]["annotations"]
    assert status.stable_revision == next(iter(served.values()))
    new = world.provider.deployments()[status.canary_revision]
    env = new["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "FEATURE_X", "value": "on"} in env
    assert old not in world.provider.deployments()


async def test_a_blue_green_preview_joins_the_targets_service_only_at_promotion() -> None:
    world = World([{"setWeight": 50}], routes=False)  # replica-ratio routing: no gateway
    world.body["spec"]["strategy"] = {"blueGreen": {"scaleDownDelaySeconds": 30}}
    now = await world.run_until("Paused", T0)  # the preview is ready, waiting for promotion
    (preview,) = _canaries(world)
    dep = world.provider.deployments()[preview]
    assert dep["spec"]["replicas"] == 4, "the preview runs at full size"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert SERVICE_LABEL not in labels, "the target's Service sends the preview no live traffic"
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "promote"}
    status = await world.converge(now)
    assert status.phase.value == "Promoted"
    labels = world.provider.deployments()[preview]["spec"]["template"]["metadata"]["labels"]
    assert labels[SERVICE_LABEL] == "crm", "at promotion the target's Service reaches it"


async def test_deleting_a_blue_green_rollout_in_its_keep_window_finishes_the_promotion() -> None:
    """On Kubernetes the target is patched only when scaleDownDelaySeconds is over: deleting
    the Rollout before would leave the target on the old revision once the new revision's
    children are gone. The deletion patches the target and waits until it runs the promoted
    revision (the new revision serving meanwhile)."""
    world = World([{"setWeight": 50}])  # behind the gateway
    world.body["spec"]["strategy"] = {"blueGreen": {"scaleDownDelaySeconds": 30}}
    now = await world.run_until("Paused", T0)
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "promote"}
    status = await world.converge(now)
    assert status.phase.value == "Promoted"
    assert status.scale_down_at is not None
    assert world.client.patches == [], "the target is patched when the keep window ends"
    assert needs_finalizer(world.body), "the keep window holds the finalizer"
    (new,) = _canaries(world)
    world.body["metadata"]["deletionTimestamp"] = _stamp(now)
    world.reconciler.clock = lambda: now + dt.timedelta(seconds=5)

    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert not gone
    assert world.client.patches == [{"spec": {"image": "crm:2"}}], "the promotion finishes"
    assert event is not None
    assert event.reason == "DeletionWaiting"
    assert "for XynergyService crm to run the promoted revision" in event.message
    assert new in world.provider.deployments(), "the new revision serves until then"

    world.client.target["metadata"]["generation"] = 3  # its controller rolls the Deployment
    world.provider.ready.discard("crm")
    gone, again = await world.reconciler.release(copy.deepcopy(world.body))
    assert not gone
    assert again is not None
    assert again.news_key == event.news_key, "the same reason: the core says it once"
    world.settle()
    world.provider.ready.add("crm")
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert gone
    assert event is not None
    assert event.reason == "Released"
    assert world.client.patches == [{"spec": {"image": "crm:2"}}], "patched once"


async def test_a_keep_window_deletion_lets_go_at_the_progress_deadline() -> None:
    world = World([{"setWeight": 50}], progressDeadlineSeconds=60)
    world.body["spec"]["strategy"] = {"blueGreen": {"scaleDownDelaySeconds": 300}}
    now = await world.run_until("Paused", T0)
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "promote"}
    await world.converge(now)
    world.body["metadata"]["deletionTimestamp"] = _stamp(now)
    world.client.target["metadata"]["generation"] = 3
    world.provider.ready.discard("crm")  # the target never becomes ready
    world.reconciler.clock = lambda: now + dt.timedelta(seconds=61)
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert gone, "never blocks for good"
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "PromotionUnfinished")


async def test_an_ended_kubernetes_rollout_holds_no_finalizer() -> None:
    world = World([{"setWeight": 50}])
    now = await world.run_until("Promoted", T0)
    assert not needs_finalizer(world.body)
    world.body["metadata"]["deletionTimestamp"] = _stamp(now)
    writes = world.provider.writes
    assert await world.reconciler.release(copy.deepcopy(world.body)) == (True, None)
    assert world.provider.writes == writes
    assert world.client.patches == [{"spec": {"image": "crm:2"}}]


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _newer_rollout(world: World, *, image: str, revision: str) -> None:
    """A later Rollout of the same target that promoted `image` (as revision `revision`)."""
    newer = _rollout("crm-3", [{"setWeight": 50}], creationTimestamp="2026-12-02T00:00:00Z")
    newer["spec"]["image"] = image
    newer["status"] = {"phase": "Promoted", "stableRevision": revision,
                       "canaryRevision": revision, "stableImage": image}  # fmt: skip
    world.client.rollouts.append(newer)


@pytest.mark.parametrize("routes", [True, False])
async def test_undo_of_a_superseded_rollout_is_refused_naming_the_newer_one(routes: bool) -> None:
    """A newer Rollout took the target over: undo here would patch the target back to this
    Rollout's previous image and route away from what the newer one serves. It is refused
    (a Warning naming the newer Rollout, the condition saying so), the action is marked
    handled, and nothing is written to the target, its traffic or its revisions."""
    world = World([{"setWeight": 50}], routes=routes)
    now = await world.run_until("Promoted", T0)
    # the next release: Rollout crm-3 promoted crm:3, the target runs it
    world.client.target["spec"]["image"] = "crm:3"
    world.settle()
    served = XynergyService.model_validate(world.client.target)
    _newer_rollout(world, image="crm:3", revision=revision_name(served))
    patches, writes = list(world.client.patches), world.provider.writes
    deployments = copy.deepcopy(world.provider.deployments())
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "undo/1"}
    status = await world.converge(now)
    assert world.client.patches == patches, "the target is not patched back"
    assert world.provider.deployments() == deployments
    assert world.provider.writes == writes
    assert not status.traffic, "no traffic routed away from what the target serves"
    assert status.phase.value == "Promoted"
    assert status.handled_action == "undo/1", "the action is cleared (acted upon: refused)"
    (refused,) = [m for r, m in world.events if r == "UndoRefused"]
    assert "Rollout crm-3" in refused, refused
    assert "crm:3" in refused, refused
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert "undo refused" in ready.message
    assert "Rollout crm-3" in ready.message
    again = await world.converge(now + STEP)  # the action is not acted upon twice
    assert world.client.patches == patches
    assert world.events == [], "nothing said twice (no second Superseded or UndoRefused)"
    assert again.handled_action == "undo/1"
    assert again.message.startswith("superseded: ")
    assert "undo refused" not in again.message


async def test_undo_within_the_keep_window_of_a_superseded_rollout_is_refused() -> None:
    """Within a keep window (scaleDownAt ahead) the target runs an image that is neither the
    promoted nor the kept one (a newer Rollout's): undo's fast switch back is refused too."""
    world = World([{"setWeight": 50}], routes=True)
    now = await world.run_until("Promoted", T0)
    world.body["status"]["scaleDownAt"] = (now + dt.timedelta(minutes=5)).isoformat()
    world.client.target["spec"]["image"] = "crm:3"
    world.settle()
    served = XynergyService.model_validate(world.client.target)
    _newer_rollout(world, image="crm:3", revision=revision_name(served))
    patches = list(world.client.patches)
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "undo/1"}
    status = await world.converge(now)
    assert world.client.patches == patches
    assert not status.traffic
    assert [r for r, _ in world.events].count("UndoRefused") == 1


async def test_a_keep_window_whose_revision_name_changed_still_removes_the_new_revision() -> None:
    """The new revision's name is a digest of its whole Pod spec: an edit of the target
    outside image, env, args and resources during the keep window (here its grace period), or
    an operator upgrade whose Pod spec gained something, renames it without moving the target
    on. The promotion must still finish under the recorded name: the target patched at the
    window's end, then the recorded revision's children removed once the target serves, not
    left serving beside it for good."""
    world = World([{"setWeight": 50}], routes=False)  # replica routing: its Pods serve
    world.body["spec"]["strategy"] = {"blueGreen": {"scaleDownDelaySeconds": 30}}
    now = await world.run_until("Paused", T0)
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "promote"}
    status = await world.converge(now)
    assert status.phase.value == "Promoted"
    (new,) = _canaries(world)
    world.client.target["spec"]["kubernetes"] = {"terminationGracePeriodSeconds": 95}
    now += dt.timedelta(seconds=31)
    status = await world.converge(now)
    assert world.client.patches == [{"spec": {"image": "crm:2"}}], "the window's end patches"
    assert new in world.provider.deployments(), "serves until the target runs the new image"
    world.settle()
    for _ in range(2):
        now += STEP
        status = await world.converge(now)
    assert status.phase.value == "Promoted"
    assert _canaries(world) == set(), "the recorded revision's children are gone"


BLUE_GREEN_KEEP = {"blueGreen": {"autoPromotionSeconds": 0, "scaleDownDelaySeconds": 600}}


async def _converge_other(world: World, body: dict[str, Any], now: dt.datetime) -> Any:
    """Converge another Rollout of the same world (its status written back as the core
    would), after which its Deployments count as available."""
    result = await world.reconciler.reconcile(copy.deepcopy(body), now=now, child=None)
    written = with_generation(result.status, body)
    body["status"] = written.model_dump(by_alias=True, exclude_none=True, mode="json")
    world.provider.ready |= set(world.provider.deployments())
    world.other = result
    return result.status


async def _promoted_in_keep_window(
    routes: bool = True, **spec: Any
) -> tuple[World, dt.datetime, str]:
    """crm-2 (blue-green, scaleDownDelaySeconds 600; `spec`: more of its spec) promoted: its
    new revision serves, the target (not patched until the window ends) still runs crm:1."""
    world = World([], routes=routes, **spec)
    world.body["spec"]["strategy"] = BLUE_GREEN_KEEP
    world.body["metadata"]["creationTimestamp"] = "2026-12-01T11:00:00Z"
    now = T0
    for _ in range(3):
        status = await world.converge(now)
        now += STEP
        world.provider.ready |= set(world.provider.deployments())
    assert (status.phase.value, bool(status.scale_down_at)) == ("Promoted", True)
    assert world.client.target["spec"]["image"] == "crm:1"
    return world, now, status.canary_revision


def _second(world: World) -> dict[str, Any]:
    """crm-3: the next release (crm:3), a canary at 20 % then a pause; the list shows both."""
    body = _rollout("crm-3", [{"setWeight": 20}, {"pause": {}}])
    body["spec"]["image"] = "crm:3"
    body["metadata"]["creationTimestamp"] = "2026-12-01T13:00:00Z"
    world.client.rollouts = [world.body, body]  # live: each status written is listed
    return body


def _serving(world: World, name: str) -> tuple[int, bool]:
    """A new revision's Deployment: its size and whether it is in the target's Service."""
    dep = world.provider.deployments()[name]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    return dep["spec"]["replicas"], SERVICE_LABEL in labels


@pytest.mark.parametrize("routes", [True, False])
async def test_a_rollout_waits_while_a_kubernetes_promotion_still_holds_the_target(
    routes: bool,
) -> None:
    """Within the first Rollout's keep window the target still runs the old revision and the
    promoted one serves from the first Rollout's Deployment. A second Rollout started then
    took the old revision (crm:1) for its stable one (behind the gateway both held the routes;
    with replica routing the promoted revision's Pods stayed in the Service beside its split;
    the window's end patched the target under its analysis), so it waits; and it waited out
    the whole window (scaleDownDelaySeconds, 600 s here), Stalled. Now the first one ends its
    window early for it (as Argo proceeds at once with an update made during the delay): the
    target is patched to the promoted revision, and the second one starts once the target
    runs it and is ready, all within the window."""
    world, now, promoted = await _promoted_in_keep_window(routes)
    window_end = world.body["status"]["scaleDownAt"]
    second = _second(world)
    status = await _converge_other(world, second, now)
    assert status.phase.value == "Pending", "it starts on its own in moments: not Stalled"
    assert [c.type for c in status.conditions if c.status == "True"] == ["Reconciling"]
    waiting = next(c for c in status.conditions if c.type == "Reconciling")
    assert waiting.reason == "RolloutConflict"
    assert status.message.startswith("waiting for Rollout crm-2, Promoted on XynergyService crm")
    assert "ends its blue-green keep window early for this newer Rollout" in status.message
    assert world.other.requeue_after == RolloutSettings().poll_seconds, "checked again soon"
    assert not world.other.events, "no Warning per check"
    assert world.provider.deployments().keys() == {"crm", promoted}, "nothing deployed"
    # the first one's next converge (it polls while its new revision serves) ends the window
    first = await world.converge(now)
    assert world.client.target["spec"]["image"] == "crm:2", "patched as at scaleDownAt"
    assert first.scale_down_at is None
    assert not needs_finalizer(world.body), "no keep window left to finish on deletion"
    assert [reason for reason, _ in world.events] == ["KeepWindowEnded"]
    said = world.events[0][1]
    assert f"keep window ended early (it lasted until {window_end}) for Rollout crm-3" in said
    assert "is no longer kept for a fast rollback" in said
    assert said in first.message
    assert first.message.endswith("waiting for the target to run the new revision")
    assert _serving(world, promoted) == (4, not routes), "it serves until the target runs it"
    # the target rolls: the second one waits, saying for what (not "no serving revision")
    world.provider.ready.discard("crm")
    status = await _converge_other(world, second, now + STEP)
    assert status.phase.value == "Pending"
    assert "its new revision serves everything until the target runs it" in status.message
    assert status.canary_revision is None
    world.settle()
    world.provider.ready.add("crm")
    first = await world.converge(now + 2 * STEP)  # ready on crm:2: its revision goes
    assert promoted not in world.provider.deployments()
    assert said in first.message, "the status still says the window was ended early"
    assert world.events == []
    status = await _converge_other(world, second, now + 3 * STEP)
    assert status.phase.value in ("Progressing", "Paused")
    target = XynergyService.model_validate(world.client.target)
    assert status.stable_revision == revision_name(target), "judged against the promoted one"
    assert status.stable_image == "crm:2"
    assert world.client.patches == [{"spec": {"image": "crm:2"}}]


def _other(name: str, created: str, status: dict[str, Any] | None, **meta: Any) -> Any:
    body = _rollout(name, [{"setWeight": 20}], creationTimestamp=created, **meta)
    if status is not None:
        body["status"] = status
    return body


async def test_the_keep_window_ends_early_only_for_a_newer_rollout_not_started_yet() -> None:
    """A Rollout that has delivered (ended), one created before the promoted one, one being
    deleted, and one spec.paused or spec.abort are not a next release waiting: the window is
    kept. One stored Stalled by
    the previous operator's wait (Degraded, RolloutConflict, no new revision) is, once no
    Rollout that starts before it (an earlier one not started yet) waits."""
    world, now, _ = await _promoted_in_keep_window(True)
    conflict = {"type": "Stalled", "status": "True", "reason": "RolloutConflict",
                "message": "...", "lastTransitionTime": "2026-12-01T13:00:00Z"}  # fmt: skip
    world.client.rollouts = [
        world.body,
        _other("crm-4", "2026-12-01T13:00:00Z",
               {"phase": "RolledBack", "canaryRevision": "crm-ro-1", "conditions": [conflict]}),
        _other("crm-1", "2026-12-01T10:00:00Z", {"phase": "Pending"}),
        _other("crm-5", "2026-12-01T13:00:00Z", None, deletionTimestamp="2026-12-01T13:01:00Z"),
    ]  # fmt: skip
    for held in ("paused", "abort"):  # held back by a person: it would not start
        body = _other(f"crm-{held}", "2026-12-01T13:00:00Z", {"phase": "Pending"})
        body["spec"][held] = True
        world.client.rollouts.append(body)
    status = await world.converge(now)
    assert status.scale_down_at is not None, "the window is kept"
    assert (world.client.patches, world.events) == ([], [])
    legacy = _other("crm-6", "2026-12-01T14:00:00Z",
                    {"phase": "Degraded", "message": "...", "conditions": [conflict]})  # fmt: skip
    world.client.rollouts.append(legacy)
    status = await world.converge(now + STEP)
    assert status.scale_down_at is not None, "crm-1 and the held ones start before crm-6"
    world.client.rollouts = [r for r in world.client.rollouts
                             if r["metadata"]["name"] not in ("crm-1", "crm-paused", "crm-abort")]  # fmt: skip
    status = await world.converge(now + 2 * STEP)
    assert status.scale_down_at is None
    assert world.client.patches == [{"spec": {"image": "crm:2"}}]
    assert [reason for reason, _ in world.events] == ["KeepWindowEnded"]
    assert "for Rollout crm-6" in world.events[0][1]


@pytest.mark.parametrize("routes", [True, False])
async def test_an_ended_kubernetes_rollout_leaves_the_traffic_to_one_delivering(
    routes: bool,
) -> None:
    """A second Rollout already delivering (started within the keep window before this check,
    or in a race): the first one rewrote its revision at full size with 100 % in
    status.traffic at each converge, and patched the target at the window's end under it."""
    world, now, promoted = await _promoted_in_keep_window(routes)
    second = _second(world)
    world.client.rollouts = [second]  # it does not see the first one: it starts
    for _ in range(3):
        status = await _converge_other(world, second, now)
        now += STEP
    assert (status.phase.value, status.canary_weight) == ("Paused", 20)
    split = copy.deepcopy(second["status"].get("traffic"))
    canary = status.canary_revision
    world.client.rollouts = [world.body, second]
    for late in (0, 700):  # within the window, then past its end
        first = await world.converge(now + dt.timedelta(seconds=late))
        assert first.phase.value == "Promoted"
        assert not first.traffic, "the gateway follows the delivering Rollout alone"
        assert _serving(world, promoted) == (4, False), "kept at full size, serving nothing"
        assert world.client.patches == [], "the target is not patched under the other one"
        assert "the traffic is left to Rollout crm-3" in first.message
    assert second["status"].get("traffic") == split
    assert _serving(world, canary) == (1, not routes)
    # the second one ends (rolled back): the first one's promotion goes on where it was
    second["status"]["phase"] = "RolledBack"
    first = await world.converge(now + dt.timedelta(seconds=800))
    assert "left to" not in first.message
    assert world.client.patches == [{"spec": {"image": "crm:2"}}], "the window's end, now"
    assert _serving(world, promoted)[0] == 4


async def test_undo_is_refused_while_another_kubernetes_rollout_delivers() -> None:
    """undo of the promoted Rollout patched the target back to crm:1 under the second one,
    whose stable revision (the target's Service) it is: its analysis compared its canary with
    another revision and its rollback went back to crm:1, not crm:2."""
    world = World([{"setWeight": 50}])
    now = await world.run_until("Promoted", T0)
    now = await world.run_until("Promoted", now)  # settled: its revision removed
    second = _second(world)
    for _ in range(3):
        status = await _converge_other(world, second, now)
        now += STEP
    assert (status.phase.value, status.canary_weight) == ("Paused", 20)
    split = copy.deepcopy(second["status"].get("traffic"))
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "undo/1"}
    first = await world.converge(now)
    assert world.client.target["spec"]["image"] == "crm:2", "the target is not patched back"
    assert world.client.patches == [{"spec": {"image": "crm:2"}}]
    assert first.phase.value == "Promoted"
    assert first.handled_action == "undo/1"
    assert [reason for reason, _ in world.events] == ["UndoRefused"]
    assert "Rollout crm-3 is delivering to XynergyService crm" in world.events[0][1]
    assert second["status"].get("traffic") == split


@pytest.mark.parametrize("early", [True, False])
async def test_a_failed_keep_window_end_patch_keeps_the_window_and_the_release(
    early: bool,
) -> None:
    """The window's end (early for a newer Rollout, or on time) cleared status.scaleDownAt
    before patching the target; a failed patch wrote that status, so the next converge found
    the target (still crm:1) moved on without the window: Superseded, the promoted revision
    removed, the release lost. The window stays until the patch went through."""
    world, now, promoted = await _promoted_in_keep_window(True)
    window_end = world.body["status"]["scaleDownAt"]
    if early:
        second = _second(world)
        await _converge_other(world, second, now)
    else:
        now += dt.timedelta(seconds=700)
    patch = world.client.patch

    async def refused(*_: Any, **__: Any) -> None:
        raise ApiError(status=Status(code=500, message="etcdserver: request timed out"))

    world.client.patch = refused  # type: ignore[method-assign]
    first = await world.converge(now)
    assert first.phase.value == "Promoted"
    assert world.body["status"]["scaleDownAt"] == window_end, "the window is still on record"
    assert promoted in world.provider.deployments()
    world.client.patch = patch  # type: ignore[method-assign]
    first = await world.converge(now + STEP)
    assert not first.message.startswith("superseded"), first.message
    assert world.client.target["spec"]["image"] == "crm:2", "the release goes on"
    assert first.scale_down_at is None
    assert _serving(world, promoted)[0] == 4, "it serves until the target runs it"


async def test_a_keep_window_with_rollback_window_zero_still_ends_in_the_release() -> None:
    """blue-green scaleDownDelaySeconds with spec.rollbackWindow 0 kept no history, so the
    window had no old revision on record: the target (not patched until its end) was never
    patched and the next converge found it moved on: Superseded, the release lost. The
    window keeps its old revision while it lasts (its fast rollback works), then the history
    is back to rollbackWindow's 0."""
    world, now, promoted = await _promoted_in_keep_window(rollbackWindow=0)
    status = await world.converge(now)
    assert not status.message.startswith("superseded"), status.message
    assert promoted in world.provider.deployments(), "it serves within the window"
    assert world.client.target["spec"]["image"] == "crm:1"
    status = await world.converge(now + dt.timedelta(seconds=700))
    assert world.client.target["spec"]["image"] == "crm:2", "patched at the window's end"
    assert (status.scale_down_at, status.history) == (None, [])
    assert not status.message.startswith("superseded"), status.message
    world.settle()
    status = await world.converge(now + dt.timedelta(seconds=701))
    assert status.phase.value == "Promoted"
    assert promoted not in world.provider.deployments(), "the target serves: its revision goes"
    assert not status.message.startswith("superseded"), status.message


async def test_undo_within_a_keep_window_with_rollback_window_zero_switches_back() -> None:
    world, now, _ = await _promoted_in_keep_window(rollbackWindow=0)
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "undo/1"}
    status = await world.converge(now)
    assert (status.phase.value, world.events[0][0]) == ("RolledBack", "SwitchedBack")
    assert world.client.target["spec"]["image"] == "crm:1"
    assert status.history == []


@pytest.mark.parametrize("routes", [True, False])
async def test_a_promotion_left_to_another_rollout_gets_traffic_back_only_when_ready(
    routes: bool,
) -> None:
    """The promoted revision was scaled to zero while another Rollout delivered; when that
    one ended, the next converge scaled it back and at once wrote 100 % to it in
    status.traffic with no Pod ready. It now stays at full size out of the target's Service,
    and gets the traffic back only once a Pod of it is available."""
    world, now, promoted = await _promoted_in_keep_window(routes)
    second = _second(world)
    world.client.rollouts = [second]
    for _ in range(3):
        await _converge_other(world, second, now)
        now += STEP
    world.client.rollouts = [world.body, second]
    first = await world.converge(now)
    assert "the traffic is left to Rollout crm-3" in first.message
    assert (_serving(world, promoted), first.traffic) == ((4, False), [])
    world.provider.ready.discard(promoted)  # its Pods restarted meanwhile, none ready yet
    second["status"]["phase"] = "RolledBack"
    first = await world.converge(now + STEP)
    assert first.traffic == [], "no traffic to a revision with no Pod ready"
    assert first.message.endswith("waiting for the target to run the new revision")
    world.provider.ready.add(promoted)
    first = await world.converge(now + 2 * STEP)
    assert _serving(world, promoted) == (4, not routes)
    if routes:
        assert [(t.revision, t.weight) for t in first.traffic] == [(promoted, 100)]


async def test_a_retry_refused_by_a_conflict_is_acted_on_once_the_conflict_ends() -> None:
    """A retry refused with RolloutConflict (another Rollout's promotion holds the target)
    was marked handled (status.handledAction) before the refusal: it was dropped, while the
    docs say it is retried. It stays pending and is acted on once the other one has ended."""
    world, now, _ = await _promoted_in_keep_window(True)
    older = _other("crm-1", "2026-12-01T10:00:00Z", None)
    older["spec"]["image"] = "crm:9"
    older["status"] = {"phase": "RolledBack", "canaryRevision": "crm-old",
                       "stableRevision": "crm-00001", "stableImage": "crm:1",
                       "trafficRouting": "gateway", "observedGeneration": 1}  # fmt: skip
    older["status"]["deliveredSpec"] = _spec_digest(Rollout.model_validate(older))
    older["metadata"]["annotations"] = {"xynergy.io/rollout-action": "retry/1"}
    world.client.rollouts = [world.body, older]
    status = await _converge_other(world, older, now)
    assert [c.reason for c in status.conditions if c.type == "Stalled"] == ["RolloutConflict"]
    assert pending_action(older) == "retry", "still to be acted on"
    # the promoted Rollout's window ends, the target settles on crm:2, its revision goes
    later = now + dt.timedelta(seconds=700)
    for i in range(2):
        await world.converge(later + i * STEP)
        world.settle()
        world.provider.ready |= set(world.provider.deployments())
    status = await _converge_other(world, older, later + 3 * STEP)
    assert status.phase.value == "Progressing", status.message
    assert (status.handled_action, status.stable_image) == ("retry/1", "crm:2")
    assert pending_action(older) is None


async def test_a_rollout_waiting_for_a_promotion_that_never_settles_stalls_at_its_deadline() -> (
    None
):
    """The newer Rollout waited Pending (Reconciling) for good when the target never ran the
    promoted revision ready. It waits its own spec.progressDeadlineSeconds from when it began
    to, then is Degraded, Stalled RolloutConflict with a Warning; it still starts once the
    target has settled."""
    world, now, promoted = await _promoted_in_keep_window(True)
    second = _second(world)
    status = await _converge_other(world, second, now)
    assert status.phase.value == "Pending"
    await world.converge(now)  # the window ends early: the target is patched and rolls
    world.provider.ready.discard("crm")  # ... and never gets ready
    deadline = dt.timedelta(seconds=600)
    status = await _converge_other(world, second, now + deadline - STEP)
    assert status.phase.value == "Pending", "within its deadline it waits"
    status = await _converge_other(world, second, now + deadline)
    assert status.phase.value == "Degraded"
    stalled = next(c for c in status.conditions if c.type == "Stalled")
    assert (stalled.status, stalled.reason) == ("True", "RolloutConflict")
    assert [(e.type, e.reason) for e in world.other.events] == [("Warning", "RolloutConflict")]
    assert "has not finished its promotion on XynergyService crm" in status.message
    assert "600s (spec.progressDeadlineSeconds)" in status.message
    status = await _converge_other(world, second, now + deadline + STEP)
    assert status.phase.value == "Degraded", "stays stalled, not back to Pending"
    assert status.canary_revision is None
    world.settle()
    world.provider.ready.add("crm")
    await world.converge(now + deadline + 2 * STEP)  # ready on crm:2: its revision goes
    assert promoted not in world.provider.deployments()
    status = await _converge_other(world, second, now + deadline + 3 * STEP)
    assert status.phase.value in ("Progressing", "Paused")
    assert status.stable_image == "crm:2"


async def test_of_two_rollouts_stalled_on_a_conflict_only_the_earlier_one_starts() -> None:
    """Only siblings with no phase or Pending counted as created earlier and not started: two
    Rollouts stalled on a RolloutConflict (Degraded, no new revision) both started once the
    target was free, moving its traffic against each other. The later one waits; an earlier
    one being deleted does not hold it."""
    world = World([{"setWeight": 50}])
    now = await world.run_until("Promoted", T0)
    now = await world.run_until("Promoted", now)
    conflict = {"type": "Stalled", "status": "True", "reason": "RolloutConflict",
                "message": "...", "lastTransitionTime": "2026-12-01T13:00:00Z"}  # fmt: skip
    stalled = {"phase": "Degraded", "message": "...", "conditions": [conflict]}
    b = _other("crm-3", "2026-12-01T13:00:00Z", copy.deepcopy(stalled))
    c = _other("crm-4", "2026-12-01T13:00:01Z", copy.deepcopy(stalled))
    b["spec"]["image"], c["spec"]["image"] = "crm:3", "crm:4"
    world.client.rollouts = [world.body, copy.deepcopy(b), copy.deepcopy(c)]
    later: Any = await world.reconciler.reconcile(copy.deepcopy(c), now=now, child=None)
    assert later.status.phase.value == "Degraded"
    assert later.status.message.startswith("Rollout crm-3 is waiting to start on XynergyService")
    assert later.status.canary_revision is None
    earlier: Any = await world.reconciler.reconcile(copy.deepcopy(b), now=now, child=None)
    assert earlier.status.phase.value == "Progressing", earlier.status.message
    b["metadata"]["deletionTimestamp"] = "2026-12-01T13:05:00Z"
    world.client.rollouts = [world.body, b, copy.deepcopy(c)]
    later = await world.reconciler.reconcile(copy.deepcopy(c), now=now, child=None)
    assert later.status.phase.value == "Progressing", later.status.message


async def test_deleting_a_keep_window_rollout_does_not_patch_the_target_under_a_delivering_one() -> (
    None
):
    """The deletion's release patched the target to the promoted revision under a second
    Rollout delivering to it (its stable revision moved beneath its analysis). It lets go
    without patching, its Event saying what it left."""
    world, now, promoted = await _promoted_in_keep_window(True)
    second = _second(world)
    world.client.rollouts = [second]  # it does not see the first one: it starts
    for _ in range(3):
        status = await _converge_other(world, second, now)
        now += STEP
    assert status.phase.value == "Paused"
    world.client.rollouts = [world.body, second]
    world.body["metadata"]["deletionTimestamp"] = _stamp(now)
    world.reconciler.clock = lambda: now + STEP
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert gone
    assert world.client.patches == [], "the target is not patched under the other one"
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "Released")
    assert "while Rollout crm-3 delivers to XynergyService crm" in event.message
    assert f"keeps running image crm:1; the promoted revision {promoted} goes" in event.message


async def test_a_paused_newer_rollout_waits_for_the_keep_window_without_ending_it() -> None:
    world, now, _ = await _promoted_in_keep_window(True)
    second = _second(world)
    second["spec"].update(paused=True, progressDeadlineSeconds=60)
    status = await _converge_other(world, second, now)
    assert status.phase.value == "Pending"
    assert "keeps the old revision for a fast rollback until" in status.message
    assert "ends its blue-green keep window early" not in status.message
    first = await world.converge(now)
    assert first.scale_down_at is not None, "the window is kept"
    status = await _converge_other(world, second, now + dt.timedelta(seconds=120))
    assert status.phase.value == "Pending", "held back by a person: no deadline"


async def test_a_promotion_left_to_another_rollout_once_the_target_runs_it_is_removed() -> None:
    """Promoted (canary), the target patched and still rolling, so the Rollout's revision
    serves; another Rollout started meanwhile (a race) and delivers. The promotion is over
    (the target runs its spec): its revision is removed, not kept beside the other's split."""
    world = World([{"setWeight": 50}, {"setWeight": 100}])
    now = T0
    for _ in range(8):  # the target's Deployment is not rolled (no settle): it rolls
        status = await world.converge(now)
        now += STEP
        world.provider.ready |= set(world.provider.deployments())
        if status.phase.value == "Promoted":
            break
    assert status.message.endswith("waiting for the target to run the new revision")
    assert world.client.target["spec"]["image"] == "crm:2"
    promoted = status.canary_revision
    assert promoted in world.provider.deployments(), "it serves while the target rolls"
    second = _second(world)
    world.client.rollouts = [second]  # it does not see the first one: it starts
    for _ in range(2):
        await _converge_other(world, second, now)
        now += STEP
    world.provider.ready.discard("crm")
    world.client.rollouts = [world.body, second]
    first = await world.converge(now)
    assert "the traffic is left to Rollout crm-3" in first.message
    assert promoted not in world.provider.deployments(), "its promotion is over: removed"
    assert first.traffic == []


async def test_an_ended_rollout_lists_the_other_rollouts_once_per_converge() -> None:
    """Who delivers (`_active_sibling`) and who waits (`_newer`) are read from one list of
    the namespace's Rollouts per converge (`_others`), not one list each."""
    world, now, _ = await _promoted_in_keep_window(True)
    world.client.rollouts = [world.body]
    lists = 0
    listing = world.client.list

    def counted(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        nonlocal lists
        lists += 1
        return listing(*args, **kwargs)

    world.client.list = counted  # type: ignore[method-assign]
    status = await world.converge(now)
    assert status.scale_down_at is not None
    assert lists == 1


async def test_a_promotion_left_to_another_rollout_before_the_target_runs_it_comes_back() -> None:
    """Review D5. Promoted (canary, no keep window) while its target does not run the new
    revision's spec (here: its args edited by hand, on a status stored without
    stableTemplate, so it is not found moved on); another Rollout delivers. The new revision
    is kept at full size with no traffic, and the converge asks to come back (before: no
    requeue at all, so nothing retired or finished it after the other one ended)."""
    world = World([{"setWeight": 50}, {"setWeight": 100}], template={"args": ["--fast"]})
    now = T0
    for _ in range(8):  # the target's Deployment is not rolled (no settle): it rolls
        status = await world.converge(now)
        now += STEP
        world.provider.ready |= set(world.provider.deployments())
        if status.phase.value == "Promoted":
            break
    promoted = status.canary_revision
    assert promoted in world.provider.deployments(), "it serves while the target rolls"
    assert world.client.target["spec"]["args"] == ["--fast"]
    world.client.target["spec"]["args"] = ["--slow"]  # not the promoted revision's spec
    world.body["status"].pop("stableTemplate")  # stored before it was recorded
    second = _second(world)
    world.client.rollouts = [second]  # it does not see the first one: it starts
    for _ in range(2):
        await _converge_other(world, second, now)
        now += STEP
    world.client.rollouts = [world.body, second]
    result = await world.reconciler.reconcile(copy.deepcopy(world.body), now=now, child=None)
    first: Any = result.status
    assert first.phase.value == "Promoted", first.message
    assert "the traffic is left to Rollout crm-3" in first.message
    assert promoted in world.provider.deployments(), "kept, to serve again after the other one"
    assert first.traffic == []
    assert result.requeue_after == RolloutSettings().poll_seconds * 15, "it comes back"


def _reconciling(status: Any) -> tuple[bool, str | None]:
    """(Ready True, the Reconciling reason) of a status; Stalled absent."""
    assert not [c for c in status.conditions if c.type == "Stalled"], status.conditions
    ready = next(c.status for c in status.conditions if c.type == "Ready") == "True"
    reason = next((c.reason for c in status.conditions if c.type == "Reconciling"), None)
    return ready, reason


async def test_the_wait_for_a_promotion_counts_from_when_it_began_after_spec_paused() -> None:
    """Review D3. The wait was counted from the Reconciling condition's lastTransitionTime,
    which moves only on a status change: a Rollout held by spec.paused (Reconciling all
    along) for longer than its progressDeadlineSeconds stalled at once when unpaused, with a
    false Warning. It counts from status.waitingSince, set when the wait begins."""
    world, now, _ = await _promoted_in_keep_window(True)
    second = _second(world)
    second["spec"]["paused"] = True
    status = await _converge_other(world, second, now)
    assert (status.phase.value, status.waiting_since) == ("Pending", None), "held: no clock"
    status = await _converge_other(world, second, now + dt.timedelta(seconds=700))
    assert status.phase.value == "Pending"
    second["spec"]["paused"] = False
    second["metadata"]["generation"] = 2
    unpaused = now + dt.timedelta(seconds=701)
    status = await _converge_other(world, second, unpaused)
    assert status.phase.value == "Pending", status.message
    assert status.waiting_since == unpaused
    assert _reconciling(status) == (False, "RolloutConflict")
    assert not world.other.events, "no Warning"
    deadline = dt.timedelta(seconds=600)
    status = await _converge_other(world, second, unpaused + deadline - STEP)
    assert status.phase.value == "Pending", "it waits its whole deadline from then"
    status = await _converge_other(world, second, unpaused + deadline)
    assert status.phase.value == "Degraded"
    assert status.waiting_since == unpaused, "kept while it stays stalled"


async def test_the_wait_for_a_promotion_counts_from_when_it_began_after_another_wait() -> None:
    """Review D3. A Rollout Reconciling for another reason before (the target not serving,
    TargetNotReady) kept that condition's lastTransitionTime when it began to wait for a
    promotion: it stalled at once. So did one refused before by a Rollout then delivering
    (Stalled RolloutConflict): the Stalled condition's time counted as the wait's."""
    world, now, _ = await _promoted_in_keep_window(True)
    second = _second(world)
    world.client.rollouts = [second]
    world.provider.ready.discard("crm")
    status = await _converge_other(world, second, now - dt.timedelta(hours=1))
    assert (status.phase.value, status.message) == (
        "Pending",
        "the target has no serving revision yet",
    )
    world.provider.ready.add("crm")
    world.client.rollouts = [world.body, second]
    for i in range(2):
        status = await _converge_other(world, second, now + i * STEP)
        assert status.phase.value == "Pending", status.message
        assert _reconciling(status) == (False, "RolloutConflict")
    assert status.waiting_since == now

    world = World([], routes=True)  # crm-2 delivering when crm-3 is created: refused
    world.body["spec"]["strategy"] = BLUE_GREEN_KEEP
    world.body["metadata"]["creationTimestamp"] = "2026-12-01T11:00:00Z"
    first = await world.converge(T0)
    assert first.phase.value == "Progressing"
    second = _second(world)
    status = await _converge_other(world, second, T0)
    assert [c.reason for c in status.conditions if c.type == "Stalled"] == ["RolloutConflict"]
    assert status.waiting_since is None
    later = T0 + dt.timedelta(hours=1)
    world.client.rollouts = [world.body]  # not listed yet: its window is not ended for it
    for i in range(3):
        first = await world.converge(later + i * STEP)
        world.provider.ready |= set(world.provider.deployments())
    assert (first.phase.value, bool(first.scale_down_at)) == ("Promoted", True)
    world.client.rollouts = [world.body, second]
    status = await _converge_other(world, second, later + 3 * STEP)
    assert status.phase.value == "Pending", status.message
    assert status.waiting_since == later + 3 * STEP
    assert not world.other.events, "no Warning"


async def test_a_keep_window_is_not_ended_for_a_rollout_a_paused_one_holds_back() -> None:
    """Review D4. crm-3, the next release, is spec.paused; crm-4, created after it, is not.
    `_newer` skipped crm-3 and ended the window for crm-4, which crm-3 (earlier, not started)
    holds back: the fast rollback was given up for a Rollout that cannot start. And a paused
    Rollout started (deployed its new revision, Paused) once nothing held it: it does not
    start until spec.paused is lifted."""
    world, now, promoted = await _promoted_in_keep_window(True)
    paused = _second(world)
    paused["spec"]["paused"] = True
    younger = _other("crm-4", "2026-12-01T14:00:00Z", None)
    younger["spec"]["image"] = "crm:4"
    world.client.rollouts = [world.body, paused, younger]
    first = await world.converge(now)
    assert first.scale_down_at is not None, "the window is kept"
    assert (world.client.patches, world.events) == ([], [])
    status = await _converge_other(world, younger, now)
    assert status.phase.value == "Degraded"
    assert status.message.startswith(
        "Rollout crm-3 is held back by spec.paused before it started on XynergyService crm"
    )
    # the window ends on time, the target runs the promoted revision: nothing holds crm-3
    later = now + dt.timedelta(seconds=700)
    for i in range(2):
        await world.converge(later + i * STEP)
        world.settle()
        world.provider.ready |= set(world.provider.deployments())
    assert promoted not in world.provider.deployments()
    status = await _converge_other(world, paused, later + 2 * STEP)
    assert status.phase.value == "Pending", status.message
    assert _reconciling(status) == (False, "SpecPaused")
    assert "spec.paused" in status.message
    assert status.canary_revision is None
    assert set(world.provider.deployments()) == {"crm"}, "nothing deployed while paused"
    assert world.other.requeue.value == "resync", "lifting it is a spec change: no polling"
    status = await _converge_other(world, younger, later + 3 * STEP)
    assert status.message.startswith("Rollout crm-3 is held back"), "in creation order"
    paused["spec"]["paused"] = False
    paused["metadata"]["generation"] = 2
    for i in range(3):
        status = await _converge_other(world, paused, later + (4 + i) * STEP)
    assert (status.phase.value, status.canary_weight) == ("Paused", 20)
    assert status.stable_image == "crm:2"


async def test_an_edited_promoted_rollout_refused_for_a_conflict_is_not_ready() -> None:
    """Review D6. crm-2 Promoted; crm-3 delivers; crm-2's spec.image is edited: its new
    delivery is refused (RolloutConflict) and it read Ready=True (kstatus Current, Argo CD
    Healthy) on the old delivery. It says it waits: Ready False, Reconciling
    RolloutConflict; the phase stays Promoted (the target runs what it promoted). It starts
    once crm-3 has ended."""
    world = World([{"setWeight": 50}])
    now = await world.run_until("Promoted", T0)
    now = await world.run_until("Promoted", now)
    second = _second(world)
    for _ in range(3):
        status = await _converge_other(world, second, now)
        now += STEP
    assert (status.phase.value, status.canary_weight) == ("Paused", 20)
    world.body["spec"]["image"] = "crm:4"
    world.body["metadata"]["generation"] = 2
    first = await world.converge(now)
    assert first.phase.value == "Promoted"
    assert _reconciling(first) == (False, "RolloutConflict")
    assert first.message.startswith("Rollout crm-3 is Paused on XynergyService crm")
    assert [reason for reason, _ in world.events] == ["RolloutConflict"]
    assert world.client.target["spec"]["image"] == "crm:2"
    first = await world.converge(now + STEP)  # tried again: still waiting
    assert _reconciling(first) == (False, "RolloutConflict")
    second["status"]["phase"] = "RolledBack"
    first = await world.converge(now + 2 * STEP)
    assert first.phase.value == "Progressing", first.message
    assert first.canary_image == "crm:4"


async def test_the_other_rollouts_of_the_target_are_selected_server_side() -> None:
    """Review D7. Each converge listed every Rollout of the namespace (O(N) per converge of
    each of them) and filtered them by target. The list selects the target's (a field
    selector on spec.targetRef.name, the CRD's selectableFields); an apiserver that refuses
    it (before Kubernetes 1.31) is listed whole, as before, and not asked again."""
    world, now, _ = await _promoted_in_keep_window(True)
    second = _second(world)
    elsewhere = _other("web-2", "2026-12-01T13:00:00Z", None)
    elsewhere["spec"]["targetRef"]["name"] = "web"  # another target's: not listed
    world.client.rollouts = [world.body, elsewhere, second]
    world.client.selectors.clear()
    status = await _converge_other(world, second, now)
    assert status.phase.value == "Pending", status.message
    assert world.client.selectors == [{"spec.targetRef.name": "crm"}]
    world.client.selectable = False
    world.client.selectors.clear()
    for i in range(2):
        status = await _converge_other(world, second, now + (i + 1) * STEP)
        assert status.phase.value == "Pending", status.message
        assert "waiting for Rollout crm-2" in status.message
    assert world.client.selectors == [{"spec.targetRef.name": "crm"}, None, None]


async def _paused_at_20_then_edited(*, stored_pending: bool) -> tuple[World, dt.datetime, str]:
    """Review G2. A canary Paused at 20 % whose image is edited while the target's own
    Deployment is not ready a moment (the new delivery waits; the split stands), then
    spec.paused. `stored_pending`: its status as an earlier operator wrote it then (Pending
    over the split)."""
    world = World([{"setWeight": 20}, {"pause": {}}])
    now = T0
    for _ in range(6):
        status = await world.converge(now)
        now += STEP
        world.provider.ready |= set(world.provider.deployments())
        if status.phase.value == "Paused":
            break
    assert status.phase.value == "Paused"
    assert status.canary_weight == 20
    old = status.canary_revision
    world.body["spec"]["image"] = "crm:4"
    world.body["metadata"]["generation"] = 2
    world.provider.ready.discard("crm")
    status = await world.converge(now)
    assert status.canary_weight == 20, "the split stands while the target is not ready"
    if stored_pending:
        world.body["status"]["phase"] = "Pending"
    else:
        assert status.phase.value == "Paused", "a delivering Rollout keeps its phase"
        assert status.message == "the target has no serving revision yet"
    world.body["spec"]["paused"] = True
    world.body["metadata"]["generation"] = 3
    world.provider.ready.add("crm")
    return world, now + STEP, old


@pytest.mark.parametrize("stored_pending", [False, True])
async def test_a_delivering_rollout_edited_while_the_target_is_not_ready_is_not_unstarted(
    stored_pending: bool,
) -> None:
    """Review G2. Paused then (spec.paused) it is not taken for a Rollout held back before it
    started (before: Pending "paused by spec.paused before its delivery started", never
    polled, the old canary keeping its 20 %): its new delivery starts and the old canary,
    with its traffic, goes."""
    world, now, old = await _paused_at_20_then_edited(stored_pending=stored_pending)
    status = await world.converge(now)
    assert status.phase.value != "Pending", status.message
    assert "before its delivery started" not in (status.message or "")
    assert status.canary_revision != old
    assert old not in world.provider.deployments(), "the old canary is retired"
    assert not status.canary_weight


WAIT_DEADLINE = dt.timedelta(seconds=600)
"""crm-3's spec.progressDeadlineSeconds (the default)."""


async def _waiting_for_a_promotion() -> tuple[World, dict[str, Any], dt.datetime]:
    """crm-3 waits (Pending, waitingSince `now`) for crm-2's promotion, whose keep window
    ended early for it: the target is patched and rolls, and never gets ready."""
    world, now, _ = await _promoted_in_keep_window(True)
    second = _second(world)
    status = await _converge_other(world, second, now)
    assert status.phase.value == "Pending"
    assert status.waiting_since == now
    await world.converge(now)
    world.provider.ready.discard("crm")
    return world, second, now


async def test_a_failed_sibling_list_keeps_the_wait_deadline() -> None:
    """Review G4. A list of the Rollouts that fails (500, retried) reports the status as
    stored, waitingSince kept, so the wait still times out from when it began (before: the
    field was cleared before the list, and the error's status restarted the deadline)."""
    world, second, now = await _waiting_for_a_promotion()
    real = world.client.list
    failing = {"on": True}

    async def flaky(resource: Any, **kw: Any) -> AsyncIterator[Any]:
        if failing["on"]:
            raise ApiError(status=Status(code=500, reason="InternalError", message="etcd"))
        async for found in real(resource, **kw):
            yield found

    world.client.list = flaky  # type: ignore[method-assign]
    status = await _converge_other(world, second, now + WAIT_DEADLINE / 2)
    assert status.waiting_since == now, "kept through a failed list"
    failing["on"] = False
    status = await _converge_other(world, second, now + WAIT_DEADLINE + STEP)
    assert status.phase.value == "Degraded", status.message
    assert "has not finished its promotion" in status.message


async def test_a_wait_whose_waiting_since_an_old_crd_prunes_still_times_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Review G3. A CRD older than the operator prunes status.waitingSince at every write:
    the wait counts from the Reconciling RolloutConflict condition's lastTransitionTime
    instead, a warning said once (before: it never timed out, Pending and polled for good)."""
    world, second, now = await _waiting_for_a_promotion()
    second["status"].pop("waitingSince")
    status = await _converge_other(world, second, now + WAIT_DEADLINE / 2)
    assert status.phase.value == "Pending", status.message
    second["status"].pop("waitingSince")
    status = await _converge_other(world, second, now + WAIT_DEADLINE + STEP)
    assert status.phase.value == "Degraded", status.message
    warned = [r for r in caplog.records if "older than this operator" in r.getMessage()]
    assert len(warned) == 1, warned


@pytest.mark.parametrize(("field", "reason"), [("paused", "SpecPaused"), ("abort", "Aborted")])
async def test_a_newer_rollout_held_by_hand_behind_a_keep_window_is_not_polled(
    field: str, reason: str
) -> None:
    """Review G5. A newer Rollout with spec.paused (or spec.abort) behind a keep window says
    it is held back, with that reason, and is converged at the resync (before: polled every
    poll interval, RolloutConflict, saying it starts once the target runs the promoted
    revision, which it would not while held)."""
    world, now, _ = await _promoted_in_keep_window(True)
    second = _second(world)
    second["spec"][field] = True
    status = await _converge_other(world, second, now)
    assert status.phase.value == "Pending"
    assert _reconciling(status) == (False, reason)
    assert status.message.startswith(f"held back by spec.{field} before its delivery started")
    assert world.other.requeue_after is None
    assert world.other.requeue == Requeue.RESYNC
    assert status.waiting_since is None, "no clock while a person holds it"


def _edit(world: World, image: str) -> None:
    """A person (or GitOps) edits crm-2's own spec.image: a new delivery."""
    world.body["spec"]["image"] = image
    world.body["metadata"]["generation"] += 1


def _condition(status: Any, type_: str) -> Any:
    return next(c for c in status.conditions if c.type == type_)


@pytest.mark.parametrize("routes", [True, False])
async def test_an_edit_within_the_keep_window_hands_over_then_starts_from_the_promoted_one(
    routes: bool,
) -> None:
    """Review G6 / K. crm-2 promoted crm:2 (its own Deployment serves everything; the target,
    patched only when the window ends, still runs crm:1) and its image is edited to crm:4 in
    the window. Before: the new delivery started at once from crm:1 (the stable one judged
    against and rolled back to) and removed the promoted Deployment: users fell back to crm:1.
    Now the window ends (the target patched to crm:2), the Rollout stays Promoted, its
    promoted revision serving, until the target runs crm:2 and is ready; then the new
    delivery starts from crm:2."""
    world, now, promoted = await _promoted_in_keep_window(routes)
    _edit(world, "crm:4")
    status = await world.converge(now)
    world.provider.ready.discard("crm")  # the target's Deployment rolls once patched
    assert status.phase.value == "Promoted", status.message
    assert world.client.target["spec"]["image"] == "crm:2", "patched to the promoted revision"
    assert status.scale_down_at is None, "the window ended"
    assert world.provider.deployments().keys() == {"crm", promoted}, "nothing of crm:4 yet"
    assert _serving(world, promoted) == (4, not routes), "the promoted revision serves"
    image = world.provider.deployments()[promoted]["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == "crm:2", "the promoted Deployment is not rolled to the edit"
    assert [t.revision for t in status.traffic or []] == ([promoted] if routes else [])
    assert status.message.endswith("waiting for the target to run the new revision")
    assert [reason for reason, _ in world.events] == ["KeepWindowEnded"]
    assert "for an edit of this Rollout's own spec (image crm:4)" in world.events[0][1]
    assert _condition(status, "Ready").status == "False", "the edit is not delivered yet"
    assert _condition(status, "Reconciling").reason == "HandingOver"
    status = await world.converge(now + STEP)  # the target still rolls
    assert status.phase.value == "Promoted"
    assert promoted in world.provider.deployments(), "kept until the target is ready"
    assert world.events == [], "said once"
    world.settle()
    world.provider.ready.add("crm")
    if routes:  # the gateway is moved off the promoted revision before it is removed
        status = await world.converge(now + 2 * STEP)
        assert status.phase.value == "Promoted", status.message
        assert _condition(status, "Reconciling").reason == "HandingOver"
        assert not status.traffic, "the target's own Service serves"
        assert promoted in world.provider.deployments(), "removed only after that write"
    status = await world.converge(now + 3 * STEP)
    assert status.phase.value == "Progressing", status.message
    target = XynergyService.model_validate(world.client.target)
    assert status.stable_revision == revision_name(target), "the target's own revision"
    assert status.stable_image == "crm:2", "judged against (and rolled back to) crm:2"
    assert status.canary_image == "crm:4"
    assert promoted not in world.provider.deployments(), "removed once the target serves it"
    assert world.client.patches == [{"spec": {"image": "crm:2"}}]


async def test_an_edit_reverted_during_the_handover_leaves_a_plain_promoted_rollout() -> None:
    """Review K (a). The edit is reverted before the target runs the promoted revision: the
    Rollout is Promoted (its window ended: the target runs crm:2 now, the old revision is not
    kept anywhere to switch back to), its promotion finishes, and nothing new starts. The
    reverted handover wrote Pending over Promoted, and a Rollout stored so stayed Pending for
    good with its traffic on the promoted Deployment."""
    world, now, promoted = await _promoted_in_keep_window(True)
    _edit(world, "crm:4")
    await world.converge(now)
    world.provider.ready.discard("crm")  # rolling to crm:2
    _edit(world, "crm:2")  # reverted
    status = await world.converge(now + STEP)
    assert status.phase.value == "Promoted", status.message
    assert promoted in world.provider.deployments()
    world.settle()
    world.provider.ready.add("crm")
    for tick in (2, 3):
        status = await world.converge(now + tick * STEP)
        assert status.phase.value == "Promoted", status.message
        assert status.canary_revision == promoted, "no new delivery"
        assert _condition(status, "Ready").status == "True"
        assert _condition(status, "Ready").reason == "Promoted"
        assert not status.traffic, "the target's own Service serves"
        assert not status.message.endswith("new revision")
        assert not needs_finalizer(world.body)
    assert world.provider.deployments().keys() == {"crm"}
    assert world.client.patches == [{"spec": {"image": "crm:2"}}]


async def test_a_newer_rollout_waits_during_the_handover_and_the_edit_goes_first() -> None:
    """Review K (b). A newer Rollout of the target (crm-3) converged during crm-2's handover
    waits: crm-2 holds the target (Promoted, its promoted revision serving) until its new
    delivery has started. The reverted handover's Pending crm-2 held nothing: crm-3 started,
    two Rollouts publishing traffic for one target."""
    world, now, promoted = await _promoted_in_keep_window(True)
    second = _second(world)
    _edit(world, "crm:4")
    await world.converge(now)
    world.provider.ready.discard("crm")  # rolling to crm:2
    status = await _converge_other(world, second, now)
    assert status.phase.value == "Pending", status.message
    assert status.message.startswith("waiting for Rollout crm-2")
    assert status.canary_revision is None
    world.provider.ready.discard("crm")  # _converge_other counts every Deployment ready
    assert world.provider.deployments().keys() == {"crm", promoted}, "crm-3 deployed nothing"
    world.settle()
    world.provider.ready.add("crm")
    first = await world.converge(now + STEP)  # the gateway off the promoted revision
    assert (first.phase.value, first.traffic) == ("Promoted", [])
    status = await _converge_other(world, second, now + STEP)
    assert status.canary_revision is None, "it still waits for crm-2's handover"
    first = await world.converge(now + 2 * STEP)
    assert first.phase.value == "Progressing", "the edit starts as the handover ends"
    status = await _converge_other(world, second, now + 2 * STEP)
    assert status.canary_revision is None, "one rollout of a target at a time"
    assert _condition(status, "Reconciling").reason == "RolloutConflict"
    assert status.message.startswith("Rollout crm-2 is Progressing on XynergyService crm")


async def test_the_finalizer_is_kept_during_the_handover() -> None:
    """Review K (c). Promoted and handing over (the window ended, the promoted revision still
    serving until the target runs it): the finalizer stays. The reverted handover wrote
    Pending on Kubernetes, which holds none."""
    world, now, _ = await _promoted_in_keep_window(True)
    _edit(world, "crm:4")
    status = await world.converge(now)
    world.provider.ready.discard("crm")
    assert status.scale_down_at is None
    assert needs_finalizer(world.body)
    world.settle()
    world.provider.ready.add("crm")
    status = await world.converge(now + STEP)  # the gateway off the promoted revision
    assert (status.phase.value, status.traffic) == ("Promoted", [])
    assert needs_finalizer(world.body), "still handing over"
    status = await world.converge(now + 2 * STEP)
    assert status.phase.value == "Progressing"
    assert not needs_finalizer(world.body), "Kubernetes: none while delivering"


@pytest.mark.parametrize("routes", [True, False])
async def test_an_edit_back_to_the_kept_revision_within_the_window_switches_back(
    routes: bool,
) -> None:
    """Review O 1. crm-2 promoted crm:2 and keeps crm:1 for its window; the release is
    reverted (GitOps sets the Rollout's image back to crm:1) within the window. That is the
    window's fast rollback, as `undo` does: all traffic back on the kept revision at once
    (the target, never patched, still runs it), RolledBack, and no new delivery. The
    handover patched the target to crm:2 (the bad release), removed the kept crm:1 pods and
    ran a canary of crm:1 judged against crm:2."""
    world, now, promoted = await _promoted_in_keep_window(routes)
    kept = world.body["status"]["history"][0]["revision"]
    _edit(world, "crm:1")
    status = await world.converge(now)
    assert status.phase.value == "RolledBack", status.message
    assert world.client.patches == [], "the target stays on the kept revision"
    assert (status.stable_revision, status.stable_image) == (kept, "crm:1")
    assert status.scale_down_at is None
    assert not status.traffic, "the target's own Service serves everything"
    assert _serving(world, promoted) == (0, False), "the promoted revision is released"
    assert [reason for reason, _ in world.events] == ["SwitchedBack"]
    assert "spec was edited back to that revision (image crm:1)" in world.events[0][1]
    assert _condition(status, "Stalled").reason == "SwitchedBack"
    deployments = set(world.provider.deployments())
    for tick in (1, 2):
        status = await world.converge(now + tick * STEP)
        assert status.phase.value == "RolledBack", status.message
        assert status.canary_revision == promoted, "no new delivery"
        assert set(world.provider.deployments()) == deployments
        assert world.client.patches == []
        assert world.events == []


async def test_a_newer_rollout_waits_for_a_handover_whose_target_is_ready_at_once() -> None:
    """Review O 2. The target runs the promoted spec and is ready when the handover's first
    converge comes (the operator restarted between the target patch and the status write,
    or GitOps set the target's image): that converge writes Promoted, Reconciling
    `HandingOver`, with no traffic entries and no settling marker. A newer Rollout took that
    for a promotion that no longer holds the target and started for one poll, before crm-2's
    own delivery."""
    world, now, _ = await _promoted_in_keep_window(True)
    second = _second(world)
    world.client.target["spec"]["image"] = "crm:2"
    world.settle()  # the target runs crm:2 and is ready
    _edit(world, "crm:4")
    status = await world.converge(now)
    assert (status.phase.value, status.traffic) == ("Promoted", [])
    assert _condition(status, "Reconciling").reason == "HandingOver"
    other = await _converge_other(world, second, now)
    assert other.canary_revision is None, "it waits for crm-2's handover"
    assert other.message.startswith("waiting for Rollout crm-2"), other.message
    assert "hands over to an edit of its own spec" in other.message
    status = await world.converge(now + STEP)
    assert status.phase.value == "Progressing", status.message
    assert (status.stable_image, status.canary_image) == ("crm:2", "crm:4")


async def test_an_abort_during_the_handover_is_refused_saying_how_to_stop_the_edit() -> None:
    """Review O 3. An abort (the annotation) after the handover ended the keep window has
    nothing to take back (the edit's delivery has not started; the old revision is no longer
    kept): a Warning `AbortRefused` says so and how to stop the edit. It was consumed with
    no word (handledAction abort) and the edit delivered anyway. spec.abort, as the Event
    says, aborts the edit's delivery as it starts: all traffic stays on crm:2."""
    world, now, promoted = await _promoted_in_keep_window(True)
    _edit(world, "crm:4")
    await world.converge(now)
    world.provider.ready.discard("crm")  # rolling to crm:2
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "abort/1"}
    status = await world.converge(now + STEP)
    assert status.handled_action == "abort/1"
    assert status.phase.value == "Promoted", status.message
    assert _condition(status, "Reconciling").reason == "HandingOver"
    assert [t.revision for t in status.traffic or []] == [promoted], "it still serves"
    assert [reason for reason, _ in world.events] == ["AbortRefused"]
    refused = world.events[0][1]
    assert refused.startswith("abort refused: this Rollout is handing over to an edit")
    assert "revert the edit" in refused
    assert "spec.abort: true" in refused
    status = await world.converge(now + 2 * STEP)
    assert world.events == [], "refused once"
    world.body["spec"]["abort"] = True
    world.body["metadata"]["generation"] += 1
    world.settle()
    world.provider.ready.add("crm")
    for tick in (3, 4):
        status = await world.converge(now + tick * STEP)
    assert status.phase.value == "Aborted", status.message
    assert (status.stable_image, status.canary_image) == ("crm:2", "crm:4")
    assert world.client.target["spec"]["image"] == "crm:2"
    assert world.provider.deployments().keys() == {"crm"}, "nothing of crm:4 deployed"


async def test_the_handover_removes_the_promoted_revision_only_once_no_status_routes_to_it() -> (
    None
):
    """Review O 4. At the handover's exit the promoted revision's Deployment and Service were
    removed (the new delivery's start) before the status write that took the gateway off
    them: for that while the gateway routed to a deleted Service. The converge that finds
    the target ready writes the status without them first; the next one removes them."""
    world, now, promoted = await _promoted_in_keep_window(True)
    _edit(world, "crm:4")
    await world.converge(now)
    world.provider.ready.discard("crm")
    world.settle()
    world.provider.ready.add("crm")
    for tick in range(1, 4):
        routed = [t["revision"] for t in world.body["status"].get("traffic") or []]
        status = await world.converge(now + tick * STEP)
        if ("Service", promoted) not in world.provider.objs:
            assert promoted not in routed, "removed while the stored status routed to it"
            assert promoted not in world.provider.deployments()
            break
        assert ("Deployment", promoted) in world.provider.objs
    else:
        raise AssertionError(f"{promoted} never removed: {world.body['status']}")
    assert status.phase.value == "Progressing", status.message


@pytest.mark.parametrize(
    ("edit", "edited"),
    [
        ({"image": "crm:4"}, "crm:4"),
        ({"template": {"env": [{"name": "MODE", "value": "b"}]}}, "crm:2"),
    ],
)
async def test_a_deletion_after_an_edit_not_converged_finishes_the_promoted_revision(
    edit: dict[str, Any], edited: str
) -> None:
    """Review O (r6). crm-2 promoted crm:2 (env MODE=a) and keeps crm:1 for its window; its
    spec is edited (image crm:4, or env MODE=b) and the Rollout is deleted before any
    converge saw the edit (the operator busy or down, a GitOps prune). The deletion patched
    the target with the edit, delivered with no canary and no analysis and called "the
    promoted revision". It finishes the promotion it made: the target gets crm:2 with the env
    it was promoted with, and the Event says the edit is not delivered."""
    world, now, promoted = await _promoted_in_keep_window(
        True, template={"env": [{"name": "MODE", "value": "a"}]}
    )
    world.body["spec"].update(edit)
    world.body["metadata"]["generation"] += 1
    world.body["metadata"]["deletionTimestamp"] = _stamp(now)
    world.reconciler.clock = lambda: now + STEP
    promoted_spec = {"image": "crm:2", "env": [{"name": "MODE", "value": "a"}]}
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert not gone, "it waits for the target to run the promoted revision"
    assert world.client.patches == [{"spec": promoted_spec}]
    assert event is not None
    assert event.reason == "DeletionWaiting"
    assert f"the promoted revision {promoted} (image crm:2)" in event.message
    assert f"the edit of its spec (image {edited}) is not delivered: the Rollout is deleted" in (
        event.message
    )
    assert promoted in world.provider.deployments(), "the promoted revision serves meanwhile"
    world.provider.ready.discard("crm")  # the target's Deployment rolls to crm:2
    world.settle()
    world.provider.ready.add("crm")
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert gone
    assert event is not None
    assert event.reason == "Released"
    assert f"runs the promoted revision {promoted} (image crm:2)" in event.message
    assert world.client.patches == [{"spec": promoted_spec}], "patched once"


async def test_a_deletion_during_the_handover_waits_for_the_target_to_run_the_promoted_one() -> (
    None
):
    """Review O (r1). The Rollout's own spec edited in its keep window: the handover ended the
    window (the target patched to crm:2 and rolling; the promoted revision serving everything
    until the target is ready). Deleted then, it let go at once, and the promoted Deployment
    went by garbage collection while the target's Service still ran crm:1 or was not ready.
    The deletion waits (DeletionWaiting) until the target runs crm:2 and is ready, never
    patching the edit (crm:4) in."""
    world, now, promoted = await _promoted_in_keep_window(True)
    _edit(world, "crm:4")
    status = await world.converge(now)
    world.provider.ready.discard("crm")  # rolling to crm:2
    assert _condition(status, "Reconciling").reason == "HandingOver"
    assert needs_finalizer(world.body)
    world.body["metadata"]["deletionTimestamp"] = _stamp(now + STEP)
    world.reconciler.clock = lambda: now + 2 * STEP
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert not gone, "the promoted revision serves until the target is ready"
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "DeletionWaiting")
    assert "the keep window ended for an edit of the Rollout's own spec" in event.message
    assert "(image crm:4) is not delivered" in event.message
    assert world.client.patches == [{"spec": {"image": "crm:2"}}], "patched by the handover"
    assert promoted in world.provider.deployments()
    deletion = world.reconciler.deletion_status(world.body)
    assert deletion is not None
    assert _condition(deletion, "Reconciling").reason == "Deleting"
    # as the core writes it: Reconciling `Deleting` in place of `HandingOver`
    world.body["status"] = deletion.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert needs_finalizer(world.body), "the held deletion keeps the finalizer"
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert not gone, "still held: the target is not ready"
    assert event is not None
    assert event.reason == "DeletionWaiting"
    world.settle()
    world.provider.ready.add("crm")
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert gone
    assert event is not None
    assert event.reason == "Released"
    assert "while handing over to an edit of its own spec" in event.message
    assert world.client.target["spec"]["image"] == "crm:2"
    assert world.client.patches == [{"spec": {"image": "crm:2"}}]


async def test_a_deletion_after_an_edit_back_to_the_kept_revision_leaves_the_target_on_it() -> None:
    """A revert of the release to the kept revision (crm:1) within the window, deleted before
    a converge saw it: as the converge would switch back (`_hand_over`), the target, which
    still runs crm:1, is not patched to the promoted crm:2, and the Rollout goes at once."""
    world, now, promoted = await _promoted_in_keep_window(True)
    kept = world.body["status"]["history"][0]["revision"]
    _edit(world, "crm:1")
    world.body["metadata"]["deletionTimestamp"] = _stamp(now)
    world.reconciler.clock = lambda: now + STEP
    gone, event = await world.reconciler.release(copy.deepcopy(world.body))
    assert gone
    assert world.client.patches == [], "the target stays on the kept revision"
    assert event is not None
    assert event.reason == "Released"
    assert f"edited back to the revision the window keeps, {kept} (image crm:1)" in event.message
    assert f"the promoted revision {promoted} goes with this Rollout" in event.message


async def test_a_newer_rollout_waits_while_a_deleted_handover_finishes_its_promotion() -> None:
    """Replica routing (no status.traffic): a Rollout handing over to an edit of its own spec
    is deleted while its target still rolls; its deletion is held (Reconciling `Deleting`
    over `HandingOver`, the message no longer ending with the settling marker). A newer
    Rollout converging once the target is ready, before the deleted one's release is tried
    again, still waits: the deleted one's promoted Deployment serves until it lets go, and
    a canary started beside it would get a share of the wrong size (review T 1)."""
    world, now, _ = await _promoted_in_keep_window(False)
    _edit(world, "crm:4")
    await world.converge(now)
    world.provider.ready.discard("crm")  # the target rolls to the promoted revision
    second = _second(world)
    await _converge_other(world, second, now)
    world.provider.ready.discard("crm")
    world.body["metadata"]["deletionTimestamp"] = _stamp(now + STEP)
    world.body["metadata"]["finalizers"] = [FINALIZER]  # held: the deletion waits
    world.reconciler.clock = lambda: now + 2 * STEP
    gone, _ = await world.reconciler.release(copy.deepcopy(world.body))
    assert not gone
    deletion = world.reconciler.deletion_status(world.body)
    assert deletion is not None
    world.body["status"] = deletion.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert needs_finalizer(world.body)
    world.settle()
    world.provider.ready.add("crm")  # ready on the promoted revision; release not tried yet

    after = await _converge_other(world, second, now + 3 * STEP)

    assert after.phase.value == "Pending"
    assert "being deleted and finishes its promotion first" in (after.message or "")


async def test_deleting_an_unreadable_rollout_during_a_handover_says_what_it_leaves() -> None:
    """A Rollout handing over whose spec this operator then cannot read keeps its hold
    (Reconciling HandingOver, the finalizer); deleting it cannot finish the promotion (no
    target known from the spec), and it must not let go silently: a Warning says the
    promoted revision goes before the target may be ready (review T 2)."""
    world, now, _ = await _promoted_in_keep_window(False)
    _edit(world, "crm:4")
    await world.converge(now)
    world.provider.ready.discard("crm")  # the target rolls to the promoted revision
    world.body["spec"]["strategy"] = {"bogus": {}}  # a spec this operator cannot read
    world.body["metadata"]["generation"] += 1
    await world.converge(now + STEP)
    world.provider.ready.discard("crm")
    assert needs_finalizer(world.body)
    world.body["metadata"]["deletionTimestamp"] = _stamp(now + 2 * STEP)
    world.reconciler.clock = lambda: now + 2 * STEP

    gone, event = await world.reconciler.release(copy.deepcopy(world.body))

    assert gone
    assert event is not None
    assert (event.type, event.reason) == ("Warning", "PromotionUnfinished")
    assert "may not be ready yet" in event.message


async def test_a_deleted_rollout_the_operator_let_go_of_holds_nothing() -> None:
    """A deleted Rollout whose deletion this operator finished (its finalizer removed) but
    which another finalizer keeps stored still reads Promoted with Reconciling `Deleting`:
    a newer Rollout of the target does not wait for it (review U 3)."""
    world, now, _ = await _promoted_in_keep_window(False)
    _edit(world, "crm:4")
    await world.converge(now)
    world.provider.ready.discard("crm")
    world.body["metadata"]["deletionTimestamp"] = _stamp(now + STEP)
    world.body["metadata"]["finalizers"] = [FINALIZER, "example.com/someone-else"]
    world.reconciler.clock = lambda: now + 2 * STEP
    gone, _ = await world.reconciler.release(copy.deepcopy(world.body))
    assert not gone
    deletion = world.reconciler.deletion_status(world.body)
    assert deletion is not None
    world.body["status"] = deletion.model_dump(by_alias=True, exclude_none=True, mode="json")
    world.body["metadata"]["finalizers"] = ["example.com/someone-else"]  # ours removed
    second = _second(world)
    world.settle()
    world.provider.ready.add("crm")

    after = await _converge_other(world, second, now + 3 * STEP)

    assert after.phase.value != "Pending", after.message
