"""Peering: kopf pauses a replica; the core's scheduler and converge path follow the pause, and
replicas never share a priority (the pause of equal-priority peers stops them all)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import references
from kopf._core.engines import peering as kopf_peering
from test_core import Clock, FakeClient, FakeReconciler, _body, _controller, _key

from controllers.__main__ import operator_options
from controllers.core.peering import KOPF_PEERING_LOGGER, ActivityGate, KopfPeeringFollower
from controllers.core.scheduler import ResyncScheduler
from controllers.settings import OperatorSettings

PEERINGS = references.Resource(
    group="kopf.dev", version="v1", plural="clusterkopfpeerings", namespaced=False
)


@pytest.fixture
def follower() -> Iterator[KopfPeeringFollower]:
    installed = KopfPeeringFollower.install(ActivityGate(active=False))
    yield installed
    logging.getLogger(KOPF_PEERING_LOGGER).removeHandler(installed)


def _peer(priority: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return {"priority": priority, "lifetime": 60, "lastseen": now}


async def _kopf_decides(status: dict[str, Any], toggle: aiotoggles.Toggle) -> None:
    """kopf's own peering step on a peering object with `status`, as "me" at priority 10."""
    settings = kopf.OperatorSettings()
    settings.peering.name, settings.peering.priority = "xynergy", 10
    pressure = asyncio.Event()
    pressure.set()  # do not wait for the blocking peer to expire
    raw = {"type": "MODIFIED", "object": {"metadata": {"name": "xynergy"}, "status": status}}
    await kopf_peering.process_peering_event(
        raw_event=raw,  # type: ignore[arg-type]
        namespace=None,
        resource=PEERINGS,
        identity=kopf_peering.Identity("me"),
        settings=settings,
        autoclean=False,
        stream_pressure=pressure,
        conflicts_found=toggle,
    )


async def test_the_gate_follows_kopfs_own_pause_and_resume(follower: KopfPeeringFollower) -> None:
    toggles = aiotoggles.ToggleSet(any)
    toggle = await toggles.make_toggle(True)  # mandatory peering: kopf starts paused
    await _kopf_decides({"me": _peer(10)}, toggle)
    assert toggle.is_off()
    assert follower.gate.active
    await _kopf_decides({"me": _peer(10), "other": _peer(20)}, toggle)
    assert toggle.is_on()
    assert not follower.gate.active
    await _kopf_decides({"me": _peer(10)}, toggle)  # the higher peer is gone
    assert toggle.is_off()
    assert follower.gate.active


async def test_a_paused_scheduler_starts_no_check_and_runs_it_on_resume() -> None:
    checked: list[str] = []

    async def check(key: Any) -> None:
        checked.append(key.uid)

    gate, clock = ActivityGate(active=False), Clock()
    scheduler = ResyncScheduler(check, clock=clock, gate=gate)
    scheduler.schedule(_key("a"), 0)
    assert scheduler.start_due() == []
    assert scheduler.due_in("a") is not None  # still due, not dropped
    gate.resume()
    assert len(scheduler.start_due()) == 1
    await scheduler.idle()
    assert checked == ["a"]


async def test_a_paused_converge_changes_nothing_and_stays_due() -> None:
    client, reconciler = FakeClient({"crm": _body()}), FakeReconciler()
    controller = _controller(client, reconciler)
    gate = controller.scheduler.gate
    gate.pause()
    assert await controller.converge(_key()) is None
    await controller.on_event(_body(), None)  # an event of a watch opened before the pause
    assert (reconciler.calls, client.patches, client.gets) == ([], [], 0)
    assert controller.scheduler.due_in("u1") == 0  # checked at once when this replica acts
    gate.resume()
    assert await controller.converge(_key()) is not None
    assert len(client.patches) == 1


def test_two_replicas_never_share_a_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XYNERGY_PEERING_PRIORITY", raising=False)
    monkeypatch.setenv("XYNERGY_PEERING", "xynergy")
    priorities = {operator_options(OperatorSettings())["priority"] for _ in range(50)}
    assert len(priorities) == 50
    monkeypatch.setenv("XYNERGY_PEERING_PRIORITY", "7")
    options = operator_options(OperatorSettings())
    assert (options["priority"], options["peering_name"], options["standalone"]) == (
        7,
        "xynergy",
        False,
    )


def test_a_negative_priority_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XYNERGY_PEERING_PRIORITY", "-1")
    with pytest.raises(ValueError, match="peering_priority"):
        OperatorSettings()
