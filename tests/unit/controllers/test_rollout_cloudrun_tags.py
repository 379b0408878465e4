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

from typing import Any

import pytest
from _cloudrun_world import BLUE_GREEN_NO_KEEP, STEP, T0, World, rollout_body, target_body
from fakes.cloudrun import FakeCloudRun

from apis.v1alpha1.rollout import Rollout
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import StalledError
from controllers.rollout.reconciler import check_tags, cloud_run_tags

pytestmark = pytest.mark.unit

CANARY: dict[str, Any] = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
BLUE_GREEN: dict[str, Any] = {"blueGreen": {}}  # scaleDownDelaySeconds 30: `previous`


def _name(length: int) -> str:
    """A valid Cloud Run service id of `length` characters (the CRD admits up to 49)."""
    return ("svc-" + "a" * length)[:length]


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
    assert cloud_run_tags(Rollout.model_validate(rollout_body("crm", strategy))) == tags


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
    check_tags(Rollout.model_validate(rollout_body(fits, strategy)), _svc(fits))
    with pytest.raises(StalledError) as err:
        check_tags(Rollout.model_validate(rollout_body(over, strategy)), _svc(over))
    assert err.value.reason == "InvalidTarget"
    message = err.value.message
    assert message.startswith(f"spec.targetRef: XynergyService '{over}' ({longest + 1} characters)")
    assert f"the traffic tag '{tag}' ({len(tag)} characters)" in message
    assert "longer than 46 characters together" in message
    assert f"a target of at most {longest} characters" in message
    assert ("scaleDownDelaySeconds 0 (no 'previous' tag)" in message) is hint


def _svc(name: str) -> XynergyService:
    return XynergyService.model_validate(target_body(name))


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
    world = World(cloud_run, name=_name(length), strategy=strategy, deadline=None)
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
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.client.patches == [], "the target is untouched"


async def test_a_blue_green_in_flight_is_not_refused_and_promotes_without_a_previous_tag(
    cloud_run: FakeCloudRun,
) -> None:
    """A blue-green Rollout of a 39-character target already previewing (started before the
    check, or whose scaleDownDelaySeconds was set during the preview): its `preview` tag is
    set, so the check (at a start only) does not stop it, and its promotion, whose `previous`
    tag Cloud Run would refuse, keeps the old revision without a tag instead of failing."""
    world = World(cloud_run, name=_name(39), strategy=BLUE_GREEN_NO_KEEP, deadline=None)
    await world.deploy()
    stable = f"{world.name}-00001"
    status, now = await world.until("Paused", T0)
    canary = status.canary_revision
    assert world.traffic() == [(stable, 100, "stable"), (canary, 0, "preview")]
    assert status.canary_url.startswith("https://preview---")

    world.body["spec"]["strategy"] = BLUE_GREEN  # now keeps the old revision 30 s
    world.body["metadata"]["generation"] = 2
    status = await world.converge(now)
    assert status.phase.value == "Paused", f"not refused in flight: {status.message}"

    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "promote"}
    status, now = await world.until("Promoted", now + STEP)
    assert status.scale_down_at is not None, "the keep window runs"
    assert world.traffic() == [("LATEST", 100, "")]
    assert world.revisions() == [stable, canary], "the old revision is kept (no traffic)"
    assert world.client.patches[-1]["spec"]["image"].endswith(":2")
    status = await world.converge(now)  # a check within the window: still no tag written
    assert status.phase.value == "Promoted"
    assert world.traffic() == [("LATEST", 100, "")]

    # undo within the window switches back to the kept revision by name
    world.body["metadata"]["annotations"] = {"xynergy.io/rollout-action": "undo"}
    status = await world.converge(now + STEP)
    assert world.traffic() == [(stable, 100, "")], status.message


async def test_a_blue_green_in_flight_whose_revision_changes_is_not_refused_for_previous(
    cloud_run: FakeCloudRun,
) -> None:
    """An in-flight blue-green of a 39-character target (its keep window set during the
    preview) whose image is edited mid-preview starts a new revision: that is a delivery
    start, but not a new Rollout, so only the tags it needs now (`preview`) are checked and
    its promotion leaves `previous` out, as for the revision it replaces."""
    world = World(cloud_run, name=_name(39), strategy=BLUE_GREEN_NO_KEEP, deadline=None)
    await world.deploy()
    status, now = await world.until("Paused", T0)
    first = status.canary_revision
    world.body["spec"]["strategy"] = BLUE_GREEN
    world.body["spec"]["image"] = "us-docker.pkg.dev/xynergy-test/platform/crm:3"
    world.body["metadata"]["generation"] = 2
    status, now = await world.until("Paused", now)
    assert status.canary_revision != first, "a new revision is previewed"
    assert not any(c.type == "Stalled" and c.status == "True" for c in status.conditions)
    assert (status.canary_revision, 0, "preview") in world.traffic()
