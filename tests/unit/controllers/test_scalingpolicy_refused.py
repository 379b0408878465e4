"""The memory of a refused scale (review P): kept for one target (kind, name, uid), one count,
the target's generation and the policy's generation; a retarget or any policy edit tries at
once, the retry time follows the current interval (never later than its schedule), and only
the remembered refusal is reported with the backoff note."""

from __future__ import annotations

from typing import Any

from _scaling_world import World
from test_scalingpolicy_lost_scale import Failing, _at_4

from controllers.core.errors import TransientError
from controllers.scalingpolicy.target import Target

BACKOFF = "tried again after 2 intervals"


class Recreated(Failing):
    """A target with a metadata.uid (`recreate`: deleted and created again under its name)."""

    def __init__(self, replicas: int | None) -> None:
        super().__init__(replicas=replicas)
        self.uid = "t1"

    async def read(self, namespace: str, name: str) -> Target:
        read = await super().read(namespace, name)
        meta = read.service.metadata.model_copy(update={"uid": self.uid})
        svc = read.service.model_copy(update={"metadata": meta})
        return Target(svc, read.sizing, read.replicas_managers)


def _ready(w: World) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = w.b["status"]["conditions"]
    return next(c for c in conditions if c["type"] == "Ready")


async def _refused_at_8(target: Failing, *, interval: str = "30s") -> World:
    """At 4; the load asks 8 at t=30 and the scale is refused (remembered, with its note)."""
    w = await _at_4(target)
    w.prom.load = 400
    w.b["spec"]["interval"] = interval
    target.fail = ["refused"]
    await w.synced(30)
    assert not target.fail  # tried, refused
    assert target.replicas == 4
    assert BACKOFF in _ready(w)["message"]
    return w


async def test_a_retargeted_policy_tries_its_new_target_at_once() -> None:
    """Review P: pointed at another XynergyService (same generation, same count by chance),
    the new target is scaled at the next sync, and the status does not blame the old one."""
    target = Failing(replicas=None)
    w = await _refused_at_8(target)
    w.b["spec"]["targetRef"]["name"] = "other"
    await w.synced(60)
    assert target.scaled == [4, 8]
    assert w.b["status"]["scaledTarget"]["name"] == "other"
    assert w.b["status"]["scaledTarget"]["lastWritten"] == 8
    message = _ready(w)["message"]
    assert "422" not in message
    assert BACKOFF not in message


async def test_a_target_recreated_under_its_name_is_tried_at_once() -> None:
    """The same name and generation, another uid: another object, never refused."""
    target = Recreated(replicas=None)
    w = await _refused_at_8(target)
    target.uid = "t2"
    await w.synced(60)
    assert target.scaled == [4, 8]
    assert BACKOFF not in _ready(w)["message"]


async def test_a_policy_edit_clears_the_refusal() -> None:
    """Any spec change of the policy (its metadata.generation moves) tries at once."""
    target = Failing(replicas=None)
    w = await _refused_at_8(target, interval="1h")
    w.b["spec"]["interval"] = "30s"
    w.b["metadata"]["generation"] += 1  # as the apiserver does for a spec change
    await w.synced(60)
    assert target.scaled == [4, 8]


async def test_the_retry_follows_a_shorter_interval() -> None:
    """The retry time is computed from the interval in force, never later than the new
    schedule (even were the policy's generation not to move): refused at t=30 on a 1 h
    interval, cut to 30 s, tried again 2 intervals of 30 s later (t=90), not at t=7230."""
    target = Failing(replicas=None)
    w = await _refused_at_8(target, interval="1h")
    w.b["spec"]["interval"] = "30s"
    target.fail = ["refused", "refused"]
    await w.synced(60)
    assert len(target.fail) == 2  # within the backoff: not tried
    await w.synced(90)
    assert len(target.fail) == 1  # tried again on the 30 s schedule
    # and a longer interval again does not push the retry past the schedule it was given
    w.b["spec"]["interval"] = "1h"
    await w.synced(90 + 4 * 30)
    assert not target.fail


async def unreachable(*args: Any) -> None:
    """An intent write (status.scaledTarget) that cannot reach the apiserver."""
    raise TransientError("recording the scale in crm's status: ConnectError",
                         reason="ApiUnreachable")  # fmt: skip


async def test_another_counts_failure_after_a_refusal_is_not_given_its_backoff_note() -> None:
    """Review P: a 409 of another count after a remembered refusal is reported as itself."""
    target = Failing(replicas=None)
    w = await _refused_at_8(target)
    w.prom.load = 300  # asks 6: another count, tried at once
    target.fail = ["conflict"]
    await w.synced(60)
    assert target.scaled == [4]
    message = _ready(w)["message"]
    assert "409" in message
    assert BACKOFF not in message


async def test_a_retry_that_fails_otherwise_is_not_given_the_backoff_note() -> None:
    """Review P: the remembered count's retry, due, fails on its intent write, then on a 409:
    each is reported as itself; a refusal again is the remembered one, with its note."""
    target = Failing(replicas=None)
    w = await _refused_at_8(target)
    intend = w.rec.intend
    w.rec.intend = unreachable
    await w.synced(90)  # the retry is due (2 intervals of 30 s after t=30)
    message = _ready(w)["message"]
    assert "recording the scale" in message
    assert BACKOFF not in message
    w.rec.intend = intend
    target.fail = ["conflict"]
    await w.synced(120)
    assert not target.fail  # tried
    message = _ready(w)["message"]
    assert "409" in message
    assert BACKOFF not in message
    target.fail = ["refused"]
    await w.synced(150)
    assert not target.fail  # tried, refused again: remembered, and said so
    assert "422" in _ready(w)["message"]
    assert "tried again after" in _ready(w)["message"]
    assert target.scaled == [4]
