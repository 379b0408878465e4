"""The world of the Rollout's Cloud Run unit tests: a target XynergyService (and other
Rollouts) behind a recording client, its Cloud Run service on the in-process fake Cloud Run
API, and the reconciler on the real Cloud Run backend, provider and client library. Shared by
test_rollout_cloudrun_promotion.py and test_rollout_cloudrun_tags.py; `at_last_step` and
`previewing` are the setups most of their tests start from."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from _merge_patch import apply_merge_patch
from fakes.cloudrun import FakeCloudRun
from google.cloud import run_v2
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.controller import Requeue, Result
from controllers.core.retry import RetryPolicy
from controllers.core.status import with_generation
from controllers.providers.cloudrun import CloudRunProvider
from controllers.rollout.backends import CloudRunRollout
from controllers.rollout.reconciler import ACTION_ANNOTATION, RolloutReconciler
from controllers.rollout.settings import RolloutSettings
from controllers.xynergyservice.resources import cloudrun

__all__ = [
    "BLUE_GREEN_NO_KEEP",
    "CANARY",
    "FAST",
    "NAME",
    "PATH",
    "PROJECT",
    "REGION",
    "STABLE",
    "STEP",
    "T0",
    "Client",
    "World",
    "at_last_step",
    "previewing",
    "rollout_body",
    "target_body",
]

PROJECT, REGION, NAME = "xynergy-test", "us-central1", "crm"
PATH = f"projects/{PROJECT}/locations/{REGION}/services/{NAME}"
FAST = RetryPolicy(initial=0.01, maximum=0.05, deadline=5.0, max_attempts=3)
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(seconds=1)
STABLE = f"{NAME}-00001"
CANARY: dict[str, Any] = {"canary": {"steps": [{"setWeight": 20}]}}
"""One step: the converge after it promotes."""
BLUE_GREEN_NO_KEEP: dict[str, Any] = {"blueGreen": {"scaleDownDelaySeconds": 0}}
"""A preview paused for a person's `promote`, no keep window."""


def target_body(name: str = NAME) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": name, "namespace": "team-a", "uid": "t-1", "generation": 1},
        "spec": {
            "image": "us-docker.pkg.dev/xynergy-test/platform/crm:1",
            "backend": "cloudRun",
            "cloudRun": {"project": PROJECT, "region": REGION},
        },
    }


def rollout_body(
    target: str, strategy: dict[str, Any], *, deadline: int | None = None
) -> dict[str, Any]:
    """A Rollout named `ro` of `target` to image crm:2 (`deadline`: its
    progressDeadlineSeconds; None: the default)."""
    body: dict[str, Any] = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "ro", "namespace": "team-a", "uid": "uid-ro", "generation": 1},
        "spec": {
            "targetRef": {"name": target},
            "image": "us-docker.pkg.dev/xynergy-test/platform/crm:2",
            "strategy": strategy,
        },
    }
    if deadline is not None:
        body["spec"]["progressDeadlineSeconds"] = deadline
    return body


class Client:
    """The target XynergyService (merge patches recorded and applied) and the Rollouts in
    `rollouts` (none unless a test adds them; listed as they are now)."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target
        self.patches: list[Any] = []
        self.rollouts: list[dict[str, Any]] = []
        self.failures: list[ApiError] = []

    def fail_next_patch(self, message: str) -> None:
        """The next patch of the target fails (500 `message`), changing nothing."""
        self.failures.append(ApiError(status=Status(code=500, message=message)))

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        assert name == self.target["metadata"]["name"]
        return SimpleNamespace(to_dict=lambda: copy.deepcopy(self.target))

    async def list(
        self, resource: Any, *, namespace: str | None = None, fields: Any = None
    ) -> AsyncIterator[Any]:
        # as the apiserver answers the Rollout CRD's selectable field spec.targetRef.name
        wanted = (fields or {}).get("spec.targetRef.name")
        for body in self.rollouts:
            if wanted is not None and body["spec"]["targetRef"]["name"] != wanted:
                continue
            yield SimpleNamespace(to_dict=lambda body=body: copy.deepcopy(body))

    async def patch(self, resource: Any, name: str, patch: Any, **_: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.patches.append(patch)
        merged = apply_merge_patch(self.target, patch)
        self.target.clear()  # in place: a test may hold the dict
        self.target.update(merged)


class World:
    """The target's Cloud Run service with its stable revision, and the reconciler on the
    real Cloud Run backend over the fake."""

    def __init__(
        self,
        cloud_run: FakeCloudRun,
        *,
        name: str = NAME,
        strategy: dict[str, Any] | None = None,
        deadline: int | None = 60,
        operation_timeout: float = 5.0,
    ) -> None:
        self.fake = cloud_run
        self.name = name
        self.path = f"projects/{PROJECT}/locations/{REGION}/services/{name}"
        self.client = Client(target_body(name))
        self.body = rollout_body(name, strategy or CANARY, deadline=deadline)
        self.provider = CloudRunProvider(
            api_endpoint=cloud_run.endpoint,
            retry=FAST,
            operation_timeout=operation_timeout,
            poll_interval=0.02,
        )
        backend = CloudRunRollout(self.provider)
        self.reconciler = RolloutReconciler(
            client=self.client,  # type: ignore[arg-type]
            backends=lambda *_: backend,
            metrics=lambda *_: None,  # type: ignore[arg-type,return-value]
            settings=RolloutSettings(),
        )
        self.events: list[tuple[str, str, str]] = []
        self.result: Result | None = None

    def target(self) -> XynergyService:
        return XynergyService.model_validate(self.client.target)

    async def deploy(self) -> None:
        """The target's controller deploys its first revision."""
        await self.target_converge()
        assert self.revisions() == [f"{self.name}-00001"]

    def revisions(self) -> list[str]:
        return self.fake.revisions_of(PROJECT, REGION, self.name)

    def service(self) -> run_v2.Service:
        with self.fake.state.lock:
            return self.fake.state.get_service(self.path)

    def served(self) -> dict[str, int]:
        """What the service serves (`trafficStatuses`, LATEST resolved), not what it was
        asked for."""
        svc = self.service()
        latest = svc.latest_ready_revision.rpartition("/")[2]
        out: dict[str, int] = {}
        for t in svc.traffic_statuses:
            if t.percent:
                revision = t.revision.rpartition("/")[2] or latest
                out[revision] = out.get(revision, 0) + t.percent
        return out

    def traffic(self) -> list[tuple[str, int, str]]:
        """The service's configured traffic: (revision or LATEST, percent, tag)."""
        return [(t.revision or "LATEST", t.percent, t.tag) for t in self.service().traffic]

    def template_revision(self) -> str:
        return str(self.service().template.revision)

    def writes(self) -> int:
        """UpdateService requests Cloud Run accepted so far."""
        return int(self.fake.writes["services.patch"])

    async def target_converge(self) -> int:
        """The XynergyService controller's converge of the target (its Cloud Run plan, as
        written by its backend); the writes it made."""
        target = self.target()
        _, writes = await self.provider.apply(self.path, lambda found: cloudrun.plan(target, found))
        return writes

    def ask(self, action: str) -> None:
        self.body["metadata"].setdefault("annotations", {})[ACTION_ANNOTATION] = action

    async def converge(self, now: dt.datetime, body: dict[str, Any] | None = None) -> Any:
        """A converge of the Rollout (`body`: another one of the target), its status written
        as the core writes it."""
        body = self.body if body is None else body
        result = await self.reconciler.reconcile(copy.deepcopy(body), now=now, child=None)
        written = with_generation(result.status, body)  # as the core writes it
        body["status"] = written.model_dump(by_alias=True, exclude_none=True, mode="json")
        self.events = [(e.type, e.reason, e.message) for e in result.events]
        self.result = result
        return result.status

    def requeue(self) -> Requeue:
        """When the last converge asked the core to come back."""
        assert self.result is not None
        return self.result.requeue

    def condition(self, type_: str) -> dict[str, Any]:
        found = [c for c in self.body["status"]["conditions"] if c["type"] == type_]
        assert found, self.body["status"]["conditions"]
        return dict(found[0])

    async def until(self, phase: str, now: dt.datetime) -> tuple[Any, dt.datetime]:
        """Converge until `phase`; its status and the time after it."""
        for _ in range(10):
            status = await self.converge(now)
            now += STEP
            if status.phase.value == phase:
                return status, now
        raise AssertionError(f"not {phase}: {self.body['status']}")

    async def stall_mid_promotion(self, now: dt.datetime) -> Any:
        """The promotion is written at `now` (its operation held: still running); at the
        next converge, `now` + STEP, Cloud Run refuses the operator (403), so the Rollout
        stalls with the promotion on record (promotingSince). Then Cloud Run answers again
        and carries the operation out. The stalled status."""
        self.fake.state.hold_operations()
        status = await self.converge(now)
        assert status.promoting_since is not None, status.message
        self.fake.deny("the operator lost run.services.update")
        status = await self.converge(now + STEP)
        self.fake.deny(None)
        self.fake.state.hold_operations(False)
        self.fake.state.complete_operations()
        return status

    async def at_last_step(self) -> tuple[str, dt.datetime]:
        """Converge until 20 % is served by the new revision (the next converge promotes)."""
        now = T0
        for _ in range(10):
            status = await self.converge(now)
            now += STEP
            if status.canary_weight == 20:
                canary = str(status.canary_revision)
                assert self.served() == {STABLE: 80, canary: 20}
                assert self.template_revision() == STABLE, "the template was given back"
                return canary, now
        raise AssertionError(f"never at 20 %: {self.body['status']}")

    async def promoted(self, now: dt.datetime) -> tuple[str, dt.datetime]:
        """Converge until Promoted (no fault injected)."""
        status, now = await self.until("Promoted", now)
        return str(status.canary_revision), now


async def at_last_step(cloud_run: FakeCloudRun, **world: Any) -> tuple[World, str, dt.datetime]:
    """A World (`world`: its options) deployed and converged until the new revision serves
    20 % (the next converge promotes): the world, the new revision, the time after."""
    w = World(cloud_run, **world)
    await w.deploy()
    canary, now = await w.at_last_step()
    return w, canary, now


async def previewing(cloud_run: FakeCloudRun, **world: Any) -> tuple[World, str, dt.datetime]:
    """A blue-green World (no keep window unless `world` says another strategy) deployed and
    converged until its preview is Paused for a person's `promote`: the world, the new
    revision, the time after."""
    w = World(cloud_run, **{"strategy": BLUE_GREEN_NO_KEEP, **world})
    await w.deploy()
    status, now = await w.until("Paused", T0)
    assert status.pause_reason == "PausedForPromotion", status.message
    return w, str(status.canary_revision), now
