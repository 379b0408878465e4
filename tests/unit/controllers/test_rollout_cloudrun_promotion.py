"""A Rollout's promotion on Cloud Run when Cloud Run does not carry it out: the traffic write
refused (400 INVALID_ARGUMENT), its operation failed, or its answer lost (a 503 after the
write was done). The promotion is one write (template and traffic together), so a refused one
moves nothing; one that moved the service's spec without serving it gives the service its
template and traffic back and is tried again at the next converge. The status says what Cloud
Run serves (read back from the fake's `trafficStatuses`), and after a rollback the target's
own controller finds its template and makes no revision. Through the reconciler, the real
Cloud Run backend, provider and client library, against the in-process fake Cloud Run API."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fakes.cloudrun import FakeCloudRun
from google.cloud import run_v2

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.retry import RetryPolicy
from controllers.core.status import with_generation
from controllers.providers.cloudrun import CloudRunProvider
from controllers.rollout.backends import CloudRunRollout
from controllers.rollout.reconciler import RolloutReconciler
from controllers.rollout.settings import RolloutSettings
from controllers.xynergyservice.resources import cloudrun

pytestmark = pytest.mark.unit

PROJECT, REGION, NAME = "xynergy-test", "us-central1", "crm"
PATH = f"projects/{PROJECT}/locations/{REGION}/services/{NAME}"
FAST = RetryPolicy(initial=0.01, maximum=0.05, deadline=5.0, max_attempts=3)
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(seconds=1)
STABLE = f"{NAME}-00001"


def _target() -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": NAME, "namespace": "team-a", "uid": "t-1", "generation": 1},
        "spec": {
            "image": "us-docker.pkg.dev/xynergy-test/platform/crm:1",
            "backend": "cloudRun",
            "cloudRun": {"project": PROJECT, "region": REGION},
        },
    }


def _rollout() -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "ro", "namespace": "team-a", "uid": "uid-ro", "generation": 1},
        "spec": {
            "targetRef": {"name": NAME},
            "image": "us-docker.pkg.dev/xynergy-test/platform/crm:2",
            # one step: the converge after it promotes
            "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
        },
    }


class Client:
    """The target XynergyService (merge patches recorded and applied); no other Rollout."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target
        self.patches: list[Any] = []

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        return SimpleNamespace(to_dict=lambda: copy.deepcopy(self.target))

    async def list(self, resource: Any, *, namespace: str | None = None) -> AsyncIterator[Any]:
        for _ in ():
            yield _

    async def patch(self, resource: Any, name: str, patch: Any, **_: Any) -> None:
        self.patches.append(patch)
        self.target["spec"].update(patch["spec"])


@pytest.fixture
def fake() -> Iterator[FakeCloudRun]:
    with FakeCloudRun(operation_delay=0.02) as run:
        yield run
        assert not run.crashes, run.crashes[0]


class World:
    """The target's Cloud Run service with its stable revision, and the reconciler on the
    real Cloud Run backend over the fake."""

    def __init__(self, fake: FakeCloudRun) -> None:
        self.fake = fake
        self.client = Client(_target())
        self.body = _rollout()
        self.provider = CloudRunProvider(
            api_endpoint=fake.endpoint, retry=FAST, operation_timeout=5.0, poll_interval=0.02
        )
        backend = CloudRunRollout(self.provider)
        self.reconciler = RolloutReconciler(
            client=self.client,  # type: ignore[arg-type]
            backends=lambda *_: backend,
            metrics=lambda *_: None,  # type: ignore[arg-type,return-value]
            settings=RolloutSettings(),
        )
        self.events: list[tuple[str, str, str]] = []

    def target(self) -> XynergyService:
        return XynergyService.model_validate(self.client.target)

    async def deploy(self) -> None:
        target = self.target()
        await self.provider.apply(PATH, lambda found: cloudrun.plan(target, found))
        assert self.revisions() == [STABLE]

    def revisions(self) -> list[str]:
        return self.fake.revisions_of(PROJECT, REGION, NAME)

    def service(self) -> run_v2.Service:
        with self.fake.state.lock:
            return self.fake.state.get_service(PATH)

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

    def template_revision(self) -> str:
        return str(self.service().template.revision)

    async def target_converge(self) -> int:
        """The XynergyService controller's converge of the target (its Cloud Run plan, as
        written by its backend); the writes it made."""
        target = self.target()
        _, writes = await self.provider.apply(PATH, lambda found: cloudrun.plan(target, found))
        return writes

    async def converge(self, now: dt.datetime) -> Any:
        result = await self.reconciler.reconcile(copy.deepcopy(self.body), now=now, child=None)
        written = with_generation(result.status, self.body)  # as the core writes it
        self.body["status"] = written.model_dump(by_alias=True, exclude_none=True, mode="json")
        self.events = [(e.type, e.reason, e.message) for e in result.events]
        return result.status

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


async def test_a_refused_promotion_moves_nothing_and_its_rollback_leaves_the_template(
    fake: FakeCloudRun,
) -> None:
    """Cloud Run refuses the promotion's write (400): the template must not have moved, so
    when the Rollout rolls back (Degraded, then all traffic on stable) the target's own
    controller finds the service as it left it and deploys no revision of its own. Before,
    the template moved in a first write and only the traffic write was refused."""
    world = World(fake)
    await world.deploy()
    canary, now = await world.at_last_step()
    fake.inject(  # the write that moves all traffic to the new revision
        400,
        rpc="services.patch",
        message="traffic refused",
        status="INVALID_ARGUMENT",
        when=lambda svc: [(t.revision, t.percent) for t in svc.traffic] == [("", 100)],
    )

    status = await world.converge(now)
    assert status.phase.value == "Degraded"
    assert "traffic refused" in status.message
    assert world.template_revision() == STABLE, "the template did not move"
    assert world.served() == {STABLE: 80, canary: 20}
    assert status.canary_weight == 20, "the status says what is served until it moved"
    assert world.client.patches == [], "the target is not patched"

    status = await world.converge(now + STEP)  # the rollback routes everything to stable
    assert status.canary_weight == 0
    assert status.message.endswith(f"all traffic back on {STABLE}")
    assert world.served() == {STABLE: 100}
    assert world.template_revision() == STABLE
    assert await world.target_converge() == 0, "the target's controller has nothing to write"
    assert world.revisions() == [STABLE, canary], "no unexpected revision"


async def test_a_failed_promotion_operation_gives_the_service_back_and_is_tried_again(
    fake: FakeCloudRun,
) -> None:
    """Cloud Run accepts the promotion's write but its operation fails: nothing of it is
    served. The Rollout is not Promoted (before: it was, with its target patched, while Cloud
    Run still served 20 % of the new revision), the service has its template and traffic back
    (so the target's controller makes no revision meanwhile), the status and a Warning say
    what is served, and the next converge promotes."""
    world = World(fake)
    await world.deploy()
    canary, now = await world.at_last_step()
    fake.fail_updates(message="could not program the route")

    status = await world.converge(now)
    assert status.phase.value == "Progressing", status.message
    assert status.canary_weight == 20
    assert world.served() == {STABLE: 80, canary: 20}
    assert f"Cloud Run did not promote revision {canary}: could not program the route" in (
        status.message
    )
    assert f"it serves {STABLE} 80%, {canary} 20%" in status.message
    assert "template and traffic are back as they were" in status.message
    assert ("Warning", "PromotionFailed", status.message) in world.events
    assert world.template_revision() == STABLE
    assert world.client.patches == [], "the target is not patched"
    assert await world.target_converge() == 0, "the target's controller has nothing to write"

    status = await world.converge(now + STEP)  # tried again
    assert status.phase.value == "Promoted", status.message
    assert status.canary_weight == 100
    assert world.served() == {canary: 100}
    assert world.template_revision() == canary
    assert world.client.patches[-1]["spec"]["image"].endswith(":2")
    assert await world.target_converge() == 0, "the promoted template is the target's own"
    assert world.revisions() == [STABLE, canary]


async def test_a_promotion_whose_answer_was_lost_is_read_back_as_done(
    fake: FakeCloudRun,
) -> None:
    """The write is carried out but every answer to it is lost (503 after the fact, then the
    client's retries answered 503): Cloud Run serves the new revision, so the Rollout is
    Promoted (read back now, or at the next converge while the operation still runs) and
    the write is neither given back nor made twice."""
    world = World(fake)
    await world.deploy()
    canary, now = await world.at_last_step()
    before = fake.writes["services.patch"]
    fake.inject(503, rpc="services.patch", after=True, count=1)
    fake.inject(503, rpc="services.patch", count=FAST.max_attempts)  # the client's retries

    status = await world.converge(now)
    if status.phase.value != "Promoted":  # the operation was still running: read again
        assert status.phase.value == "Progressing", status.message
        status = await world.converge(now + STEP)
    assert status.phase.value == "Promoted", status.message
    assert fake.writes["services.patch"] - before == 1, "one write: not given back, not redone"
    assert world.served() == {canary: 100}
    assert world.template_revision() == canary
    assert world.revisions() == [STABLE, canary]


async def test_a_promotion_is_one_write(fake: FakeCloudRun) -> None:
    """Template and traffic move in one UpdateService: no state in between where the
    template names the new revision while the traffic has not moved."""
    world = World(fake)
    await world.deploy()
    canary, now = await world.at_last_step()
    before = fake.writes["services.patch"]

    status = await world.converge(now)
    assert status.phase.value == "Promoted", status.message
    assert fake.writes["services.patch"] - before == 1
    assert world.served() == {canary: 100}
    assert world.template_revision() == canary
