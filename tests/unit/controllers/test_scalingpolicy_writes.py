"""Status write budget: an unchanged decision writes no status, and what is not written
still keeps HPA behaviour right across an operator restart.

Each test drives the reconciler through many syncs the way the core `Controller` does: the
body carries the stored status, the result is written through the core's compare-before-write
(`status_changed`), and a write stores what was written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from test_scalingpolicy_reconciler import NOW, FakeProm, FakeTarget, body, reconciler

from controllers.core.status import merge_patch, status_changed, with_generation
from controllers.providers.metrics import Samples
from controllers.scalingpolicy.reconciler import ScalingPolicyReconciler
from controllers.scalingpolicy.state import reduce
from intelligence.scaling import DEFAULT_SCALE_UP, RateRules, Rates, ScalingState
from intelligence.scaling.rules import stabilize
from intelligence.scaling.types import Recommendation

INTERVAL = 30.0


@dataclass
class Store:
    """The apiserver's copy of one policy, written as the core's StatusWriter writes."""

    body: dict[str, Any]
    writes: int = 0
    times: list[float] = field(default_factory=list)

    async def sync(self, rec: ScalingPolicyReconciler, now: dt.datetime) -> None:
        result = await rec.reconcile(self.body, now=now, child=None)
        await rec.models.settle()  # a refit started by this sync serves the next one
        status = with_generation(result.status, self.body)
        if status_changed(self.body.get("status"), status, volatile=result.volatile):
            patch = {k: v for k, v in merge_patch(status).items() if v is not None}
            self.body["status"] = patch
            self.writes += 1
            self.times.append(now.timestamp())


def at(i: int) -> dt.datetime:
    return NOW + dt.timedelta(seconds=INTERVAL * i)


async def test_unchanged_reactive_decisions_write_nothing() -> None:
    """Two hours of syncs whose load moves within the tolerance (300 +- 4 per 50 per
    instance: 6 instances throughout): the first sync writes, the rest write nothing but the
    periodic refresh (at most one per refresh period)."""
    target = FakeTarget(replicas=6)
    prom = FakeProm(load=300)
    rec = reconciler(target, prom)
    store = Store(body())
    syncs = 240
    rng = np.random.default_rng(1)
    for i in range(syncs):
        prom.load = 300 + float(rng.uniform(-4, 4))
        await store.sync(rec, at(i))
    refresh = rec.status_refresh_seconds
    assert target.scaled == []
    assert store.writes <= 1 + syncs * INTERVAL / refresh
    assert store.writes < syncs / 10
    gaps = np.diff(store.times)
    assert all(g >= refresh for g in gaps)


def flat(days: float, level: float, step: float = 300.0) -> Samples:
    t = cast(
        "npt.NDArray[np.float64]",
        NOW.timestamp() - np.arange(int(days * 86400 / step), 0, -1) * step,
    )
    noise = np.random.default_rng(2).uniform(-1, 1, t.size)
    return Samples(timestamps=t, values=level + noise)


async def test_unchanged_predictive_decisions_write_only_on_refit_and_refresh() -> None:
    """Predictive (forecast and calibration on) on a steady load: the model is refitted
    hourly and the status refreshed at most every refresh period; nothing else writes while
    the plan holds."""
    prom = FakeProm(load=120, history=flat(3, 120))
    target = FakeTarget(replicas=3)
    rec = reconciler(target, prom)
    store = Store(body(mode="predictive", forecast={"minimumHistory": "24h"}))
    syncs = 240  # two hours
    rng = np.random.default_rng(3)
    for i in range(syncs):
        prom.load = 120 + float(rng.uniform(-1, 1))
        await store.sync(rec, at(i))
    refits = rec.models.fits
    assert refits == 2
    assert store.body["status"]["mode"] == "predictive"
    assert (
        store.writes
        <= 1 + len(target.scaled) + refits + syncs * INTERVAL / rec.status_refresh_seconds
    )
    assert store.writes < syncs / 10


async def test_a_changed_decision_is_written_at_once() -> None:
    target, prom = FakeTarget(replicas=6), FakeProm(load=300)
    rec = reconciler(target, prom)
    store = Store(body())
    for i in range(5):
        await store.sync(rec, at(i))
    before = store.writes
    prom.load = 500
    await store.sync(rec, at(5))
    assert store.writes == before + 1
    assert store.body["status"]["desiredInstances"] == 10
    assert store.body["status"]["currentLoad"] == 500


async def test_a_restart_after_unwritten_syncs_keeps_the_scale_down_window() -> None:
    """A 300 s scale-down window: load falls at t=30 after a scale-up to 10 at t=0; the syncs that
    follow write nothing. An operator restarted at t=210 (empty memory, the stored status only)
    still holds 10 until the window since the high recommendation has passed, and then lowers
    on the same sync the uninterrupted operator does, not a window after its own start."""
    spec: dict[str, Any] = {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}
    plans: dict[str, list[int]] = {}
    for run in ("uninterrupted", "restarted"):
        target, prom = FakeTarget(replicas=5), FakeProm(load=500)
        rec = reconciler(target, prom)
        store = Store(body(**spec))
        plan = []
        for i in range(16):
            if i == 1:
                prom.load = 100
            if run == "restarted" and i == 7:
                rec = reconciler(target, prom)  # a new operator: nothing in memory
            await store.sync(rec, at(i))
            plan.append(int(store.body["status"]["desiredInstances"]))
        plans[run] = plan
        assert store.writes < 6
    assert plans["restarted"] == plans["uninterrupted"]
    assert plans["uninterrupted"][:10] == [10] * 10  # held through the window (t < 300)
    assert plans["uninterrupted"][-1] == 2


async def test_a_restart_with_no_status_state_would_hold_longer() -> None:
    """The control for the test above: without the state in status, a new operator seeds the
    window with the current count at its start, so it lowers a window after the restart."""
    spec: dict[str, Any] = {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}
    target, prom = FakeTarget(replicas=5), FakeProm(load=500)
    store = Store(body(**spec))
    rec = reconciler(target, prom)
    await store.sync(rec, at(0))
    prom.load = 100
    for i in range(1, 7):
        await store.sync(rec, at(i))
    store.body["status"].pop("scalingState")
    rec = reconciler(target, prom)
    plan = []
    for i in range(7, 16):
        await store.sync(rec, at(i))
        plan.append(int(store.body["status"]["desiredInstances"]))
    assert plan[-1] == 10


def test_reduced_recommendations_stabilize_as_the_full_history_does() -> None:
    """`reduce` drops only recommendations no later window can read: on random histories
    (equal timestamps included, as a fresh start seeds one beside the first), both
    stabilization windows give the same result from the reduced state at every later time."""
    rng = np.random.default_rng(7)
    rates = Rates(
        scale_up=RateRules(stabilization_window_seconds=90, policies=DEFAULT_SCALE_UP.policies),
        scale_down=RateRules(stabilization_window_seconds=300, policies=()),
    )
    for _ in range(200):
        times = np.sort(rng.integers(0, 600, size=int(rng.integers(1, 30)))).astype(float)
        recs = tuple(Recommendation(float(t), int(rng.integers(1, 9))) for t in times)
        full = ScalingState(recommendations=recs)
        reduced = reduce(full)
        assert len(reduced.recommendations) <= len(recs)
        for now in np.arange(times[-1], times[-1] + 400, 15.0):
            for raw in (1, 5, 9):
                args: dict[str, Any] = {"raw": raw, "current": 4, "now": float(now), "rates": rates}
                a, _ = stabilize(state=full, fresh=False, **args)
                b, _ = stabilize(state=reduced, fresh=False, **args)
                assert a == b


async def test_status_reports_the_share_of_time_above_what_is_asked_for() -> None:
    """6 instances of 50 whose load is above 300 at one sync in four, always within the
    tolerance (so the decision never changes): the stored `observedUnderProvisioning` reads
    a quarter, refreshed with the periodic refresh (the first write read 0: no time seen),
    and its moving at every sync writes nothing of itself."""
    target, prom = FakeTarget(replicas=6), FakeProm(load=300)
    rec = reconciler(target, prom)
    store = Store(body())
    syncs = 240
    for i in range(syncs):
        prom.load = 320.0 if i % 4 == 0 else 290.0
        await store.sync(rec, at(i))
        if i == 0:
            assert store.body["status"]["observedUnderProvisioning"] == 0.0
    assert target.scaled == []
    assert store.body["status"]["observedUnderProvisioning"] == pytest.approx(0.25, abs=0.02)
    assert store.writes <= 1 + syncs * INTERVAL / rec.status_refresh_seconds


async def test_a_second_held_sync_writes_nothing() -> None:
    """Review L 5: while the metric cannot be read the policy holds, Degraded; the first held
    sync writes that, the next ones find the same status (Degraded keeps its
    lastTransitionTime) and write nothing, until the reason changes."""
    target = FakeTarget(replicas=6)
    prom = FakeProm(load=300)
    rec = reconciler(target, prom)
    store = Store(body(maxInstances=20))
    await store.sync(rec, at(0))
    prom.load = None  # Prometheus unreachable from here on
    await store.sync(rec, at(1))
    assert store.writes == 2

    def degraded() -> dict[str, Any]:
        conditions = store.body["status"]["conditions"]
        return cast(dict[str, Any], next(c for c in conditions if c["type"] == "Degraded"))

    since = degraded()["lastTransitionTime"]
    assert degraded()["reason"] == "MetricsUnreachable"
    for i in range(2, 6):
        await store.sync(rec, at(i))
    assert store.writes == 2
    assert degraded()["lastTransitionTime"] == since
    target.exists = False  # another reason (a stall): written, Degraded gone
    await store.sync(rec, at(6))
    assert store.writes == 3
