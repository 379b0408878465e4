"""Cloud Run traffic tags and the target's name: Cloud Run refuses a tag whose length plus the
service's name exceeds 46 characters, and the CRD admits a Cloud Run XynergyService name of
49. A Rollout whose target's name leaves no room for the longest tag it will set is refused
when it starts (Degraded, Stalled `InvalidTarget`, naming the name, its length, the tag and
the limit) with nothing written to Cloud Run and the target untouched; one already in flight
is not (its tags are set), and a blue-green promotion whose `previous` tag does not fit keeps
the old revision without it instead of failing. Through the reconciler, the real Cloud Run
backend, provider and client library, against the in-process fake Cloud Run API (which
refuses such tags as Cloud Run does)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from fakes.cloudrun import FakeCloudRun

from apis.v1alpha1.rollout import Rollout
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import StalledError
from controllers.core.retry import RetryPolicy
from controllers.core.status import with_generation
from controllers.providers.cloudrun import CloudRunProvider
from controllers.rollout.backends import CloudRunRollout
from controllers.rollout.reconciler import RolloutReconciler, check_tags, cloud_run_tags
from controllers.rollout.settings import RolloutSettings
from controllers.xynergyservice.resources import cloudrun

pytestmark = pytest.mark.unit

PROJECT, REGION = "xynergy-test", "us-central1"
FAST = RetryPolicy(initial=0.01, maximum=0.05, deadline=5.0, max_attempts=3)
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(seconds=1)
CANARY: dict[str, Any] = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
BLUE_GREEN: dict[str, Any] = {"blueGreen": {}}  # scaleDownDelaySeconds 30: `previous`
BLUE_GREEN_NO_KEEP: dict[str, Any] = {"blueGreen": {"scaleDownDelaySeconds": 0}}


def _name(length: int) -> str:
    """A valid Cloud Run service id of `length` characters (the CRD admits up to 49)."""
    return ("svc-" + "a" * length)[:length]


def _target(name: str) -> dict[str, Any]:
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


def _rollout(target: str, strategy: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "ro", "namespace": "team-a", "uid": "uid-ro", "generation": 1},
        "spec": {
            "targetRef": {"name": target},
            "image": "us-docker.pkg.dev/xynergy-test/platform/crm:2",
            "strategy": strategy,
        },
    }


@pytest.mark.parametrize(
    ("strategy", "tags"),
    [
        (CANARY, ("stable", "canary")),
        ({"rolling": {}}, ("stable", "canary")),
        ({"immediate": {}}, ("stable", "canary")),
        (BLUE_GREEN, ("stable", "preview", "previous")),
        (BLUE_GREEN_NO_KEEP, ("stable", "preview")),
    ],
)
def test_the_tags_a_rollout_sets_follow_its_strategy(
    strategy: dict[str, Any], tags: tuple[str, ...]
) -> None:
    assert cloud_run_tags(Rollout.model_validate(_rollout("crm", strategy))) == tags


@pytest.mark.parametrize(
    ("strategy", "longest", "tag", "hint"),
    [
        (CANARY, 40, "canary", False),
        ({"rolling": {}}, 40, "canary", False),
        ({"immediate": {}}, 40, "canary", False),
        (BLUE_GREEN, 38, "previous", True),
        (BLUE_GREEN_NO_KEEP, 39, "preview", False),
    ],
)
def test_a_target_name_is_refused_one_character_past_its_longest_tag(
    strategy: dict[str, Any], longest: int, tag: str, hint: bool
) -> None:
    fits, over = _name(longest), _name(longest + 1)
    check_tags(Rollout.model_validate(_rollout(fits, strategy)), _svc(fits))
    with pytest.raises(StalledError) as err:
        check_tags(Rollout.model_validate(_rollout(over, strategy)), _svc(over))
    assert err.value.reason == "InvalidTarget"
    message = err.value.message
    assert message.startswith(f"spec.targetRef: XynergyService '{over}' ({longest + 1} characters)")
    assert f"the traffic tag '{tag}' ({len(tag)} characters)" in message
    assert "longer than 46 characters together" in message
    assert f"a target of at most {longest} characters" in message
    assert ("scaleDownDelaySeconds 0 (no 'previous' tag)" in message) is hint


def _svc(name: str) -> XynergyService:
    return XynergyService.model_validate(_target(name))


class Client:
    """The target XynergyService (merge patches recorded and applied); no other Rollout."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target
        self.patches: list[Any] = []

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        assert name == self.target["metadata"]["name"]
        return SimpleNamespace(to_dict=lambda: copy.deepcopy(self.target))

    async def list(
        self, resource: Any, *, namespace: str | None = None, fields: Any = None
    ) -> AsyncIterator[Any]:
        for _ in ():
            yield _

    async def patch(self, resource: Any, name: str, patch: Any, **_: Any) -> None:
        self.patches.append(patch)
        self.target["spec"].update(patch["spec"])


class World:
    """The target's Cloud Run service with its stable revision, and the reconciler on the
    real Cloud Run backend over the fake."""

    def __init__(self, cloud_run: FakeCloudRun, name: str, strategy: dict[str, Any]) -> None:
        self.fake = cloud_run
        self.name = name
        self.client = Client(_target(name))
        self.body = _rollout(name, strategy)
        self.provider = CloudRunProvider(
            api_endpoint=cloud_run.endpoint, retry=FAST, operation_timeout=5.0, poll_interval=0.02
        )
        backend = CloudRunRollout(self.provider)
        self.reconciler = RolloutReconciler(
            client=self.client,  # type: ignore[arg-type]
            backends=lambda *_: backend,
            metrics=lambda *_: None,  # type: ignore[arg-type,return-value]
            settings=RolloutSettings(),
        )
        self.events: list[tuple[str, str, str]] = []

    async def deploy(self) -> None:
        target = _svc(self.name)
        await self.provider.apply(
            cloudrun.service_path(target), lambda found: cloudrun.plan(target, found)
        )
        assert self.revisions() == [f"{self.name}-00001"]

    def revisions(self) -> list[str]:
        return self.fake.revisions_of(PROJECT, REGION, self.name)

    def served(self) -> list[tuple[str, int, str]]:
        """The service's configured traffic: (revision or LATEST, percent, tag)."""
        with self.fake.state.lock:
            svc = self.fake.state.get_service(
                f"projects/{PROJECT}/locations/{REGION}/services/{self.name}"
            )
        return [(t.revision or "LATEST", t.percent, t.tag) for t in svc.traffic]

    async def converge(self, now: dt.datetime) -> Any:
        result = await self.reconciler.reconcile(copy.deepcopy(self.body), now=now, child=None)
        written = with_generation(result.status, self.body)  # as the core writes it
        self.body["status"] = written.model_dump(by_alias=True, exclude_none=True, mode="json")
        self.events = [(e.type, e.reason, e.message) for e in result.events]
        return result.status

    async def until(self, phase: str, now: dt.datetime) -> tuple[Any, dt.datetime]:
        for _ in range(10):
            status = await self.converge(now)
            now += STEP
            if status.phase.value == phase:
                return status, now
        raise AssertionError(f"not {phase}: {self.body['status']}")


@pytest.mark.parametrize(
    ("length", "strategy", "tag"),
    [(41, CANARY, "canary"), (39, BLUE_GREEN, "previous")],
)
async def test_a_rollout_whose_target_name_leaves_no_room_for_its_tags_is_refused_at_its_start(
    cloud_run: FakeCloudRun, length: int, strategy: dict[str, Any], tag: str
) -> None:
    """A 41-character target cannot have a `canary` tag; a 39-character one can have a blue-
    green's `preview` (46) but not the `previous` its promotion sets (47): without the check
    the preview was deployed and the promotion failed mid-rollout with Cloud Run's error."""
    world = World(cloud_run, _name(length), strategy)
    await world.deploy()
    writes = cloud_run.total_writes
    for i in range(2):  # refused again at the next check, still touching nothing
        status = await world.converge(T0 + i * STEP)
        assert status.phase.value == "Degraded"
        assert status.canary_revision is None
        stalled = next(c for c in status.conditions if c.type == "Stalled")
        assert (stalled.status, stalled.reason) == ("True", "InvalidTarget")
        ready = next(c for c in status.conditions if c.type == "Ready")
        assert ready.status == "False"
        assert status.message.startswith(
            f"spec.targetRef: XynergyService '{world.name}' ({length} characters) is too long"
        )
        assert f"the traffic tag '{tag}' ({len(tag)} characters)" in status.message
        assert "46 characters together" in status.message
        assert world.events == [("Warning", "InvalidTarget", status.message)]
    assert cloud_run.total_writes == writes, "nothing written to Cloud Run"
    assert world.revisions() == [f"{world.name}-00001"]
    assert world.served() == [("LATEST", 100, "")]
    assert world.client.patches == [], "the target is untouched"


async def test_a_blue_green_in_flight_is_not_refused_and_promotes_without_a_previous_tag(
    cloud_run: FakeCloudRun,
) -> None:
    """A blue-green Rollout of a 39-character target already previewing (started before the
    check, or whose scaleDownDelaySeconds was set during the preview): its `preview` tag is
    set, so the check (at a start only) does not stop it, and its promotion, whose `previous`
    tag Cloud Run would refuse, keeps the old revision without a tag instead of failing."""
    world = World(cloud_run, _name(39), BLUE_GREEN_NO_KEEP)
    await world.deploy()
    stable = f"{world.name}-00001"
    status, now = await world.until("Paused", T0)
    canary = status.canary_revision
    assert world.served() == [(stable, 100, "stable"), (canary, 0, "preview")]
    assert status.canary_url.startswith("https://preview---")

    world.body["spec"]["strategy"] = BLUE_GREEN  # now keeps the old revision 30 s
    world.body["metadata"]["generation"] = 2
    status = await world.converge(now)
    assert status.phase.value == "Paused", f"not refused in flight: {status.message}"

    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "promote"}
    status, now = await world.until("Promoted", now + STEP)
    assert status.scale_down_at is not None, "the keep window runs"
    assert world.served() == [("LATEST", 100, "")]
    assert world.revisions() == [stable, canary], "the old revision is kept (no traffic)"
    assert world.client.patches[-1]["spec"]["image"].endswith(":2")
    status = await world.converge(now)  # a check within the window: still no tag written
    assert status.phase.value == "Promoted"
    assert world.served() == [("LATEST", 100, "")]

    # undo within the window switches back to the kept revision by name
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "undo"}
    status = await world.converge(now + STEP)
    assert world.served() == [(stable, 100, "")], status.message


async def test_a_blue_green_in_flight_whose_revision_changes_is_not_refused_for_previous(
    cloud_run: FakeCloudRun,
) -> None:
    """An in-flight blue-green of a 39-character target (its keep window set during the
    preview) whose image is edited mid-preview starts a new revision: that is a delivery
    start, but not a new Rollout, so only the tags it needs now (`preview`) are checked and
    its promotion leaves `previous` out, as for the revision it replaces."""
    world = World(cloud_run, _name(39), BLUE_GREEN_NO_KEEP)
    await world.deploy()
    status, now = await world.until("Paused", T0)
    first = status.canary_revision
    world.body["spec"]["strategy"] = BLUE_GREEN
    world.body["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    world.body["metadata"]["generation"] = 2
    status, now = await world.until("Paused", now)
    assert status.canary_revision != first, "a new revision is previewed"
    assert not any(c.type == "Stalled" and c.status == "True" for c in status.conditions)
    assert (status.canary_revision, 0, "preview") in world.served()
