"""ScalingPolicy sync, table-driven: given a policy, its target, the load (or a metrics failure)
and other autoscalers -> the scale calls, status, conditions and Events."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest

from apis.conditions import check_invariants, get_condition
from apis.v1alpha1.scalingpolicy import ScalingDecision, ScalingPolicyStatus
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.context import FIELD_MANAGER
from controllers.core.controller import Requeue, Result
from controllers.core.errors import StalledError
from controllers.providers.metrics import MetricsProvider, MetricsUnreachableError, Samples
from controllers.scalingpolicy.conflicts import TargetIndex
from controllers.scalingpolicy.models import FitKey, Fitted, ModelCache, backtest_steps
from controllers.scalingpolicy.reconciler import ScalingPolicyReconciler, next_slot
from controllers.scalingpolicy.target import Target
from intelligence.scaling.dispersion import relative_sigmas

NOW = dt.datetime(2024, 7, 2, 12, 0, tzinfo=dt.UTC)
NS = "ns"


@dataclass
class FakeTarget:
    replicas: int | None = 2
    exists: bool = True
    scaled: list[int] = field(default_factory=list)
    paused: bool = False
    restored: list[int | None] = field(default_factory=list)
    generation: int = 1
    """metadata.generation: moved by every spec change (a scale, a restore, `edit`)."""
    owner: str | None = "creator"
    """The field manager owning spec.replicas in managedFields (None: unset): as the real
    apiserver keeps it, a write that changes the value takes it over, one that leaves the
    value as it is does not (tests/integration/test_scalingpolicy.py checks this)."""

    def edit(self, replicas: int | None, *, by: str = "kubectl") -> None:
        """A person's change of spec.replicas (`kubectl scale`), or `by` another manager."""
        if replicas != self.replicas:
            self.owner = by if replicas is not None else None
        self.replicas = replicas
        self.generation += 1

    async def read(self, namespace: str, name: str) -> Target:
        if not self.exists:
            raise StalledError(f"target XynergyService {namespace}/{name} does not exist",
                               reason="TargetNotFound")  # fmt: skip
        svc = XynergyService.model_validate({
            "metadata": {"name": name, "namespace": namespace, "generation": self.generation},
            "spec": {"image": "reg/crm:1", "replicas": self.replicas, "paused": self.paused,
                     "scaling": {"minInstances": 1, "maxInstances": 20}},
        })  # fmt: skip
        return Target(svc, svc.spec.sizing())

    async def reread(self, namespace: str, name: str) -> Target:
        """As the apiserver holds it, with the owners of spec.replicas (the watch's cache,
        `read`, keeps none)."""
        read = await self.read(namespace, name)
        owners = frozenset({self.owner} if self.owner is not None else ())
        return dataclasses.replace(read, replicas_managers=owners)

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.scaled.append(replicas)
        self.edit(replicas, by=FIELD_MANAGER)

    async def restore(
        self, namespace: str, name: str, *, expected: int, replicas: int | None
    ) -> bool:
        """As the apiserver's JSON patch with a `test` op: only while spec.replicas is
        `expected`."""
        if not self.exists:
            raise StalledError(f"target XynergyService {namespace}/{name} does not exist",
                               reason="TargetNotFound")  # fmt: skip
        if self.replicas != expected:
            return False
        self.restored.append(replicas)
        self.edit(replicas, by=FIELD_MANAGER)
        return True


@dataclass
class FakeProm:
    load: float | None = 300.0
    history: Samples | None = None
    queries: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None
    """While set to an unset Event, history reads wait for it (a slow Prometheus)."""

    async def query(self, query: str, *, at: float) -> float:
        self.queries.append("query")
        if self.load is None:
            raise MetricsUnreachableError(
                "Prometheus at http://prom:9090 unreachable: ConnectError"
            )
        return self.load

    async def query_range(self, query: str, *, start: float, end: float, step: float) -> Samples:
        self.queries.append("query_range")
        if self.hold is not None:
            await self.hold.wait()
        if self.history is None:
            raise MetricsUnreachableError("no history")
        return self.history


def body(uid: str = "u1", name: str = "crm", status: dict[str, Any] | None = None,
         created: str = "2024-01-01T00:00:00Z", **spec: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": NS, "uid": uid, "generation": 1,
                     "creationTimestamp": created},
        "spec": {
            "targetRef": {"name": "crm"},
            "metric": {"source": "prometheus", "query": "sum(rate(x[1m]))",
                       "prometheusUrl": "http://prom:9090", "targetPerInstance": 50},
            "mode": "reactive",
            "maxInstances": 10,
            **spec,
        },
        **({"status": status} if status else {}),
    }  # fmt: skip


def reconciler(target: FakeTarget, prom: MetricsProvider, index: TargetIndex | None = None
               ) -> ScalingPolicyReconciler:  # fmt: skip
    return ScalingPolicyReconciler(
        target=target,
        metrics=lambda policy, t: (prom, policy.spec.metric.query or ""),
        models=ModelCache(refit_seconds=3600, concurrency=1),
        index=index or TargetIndex(),
    )


async def sync(rec: ScalingPolicyReconciler, b: dict[str, Any], now: dt.datetime = NOW) -> Result:
    result = await rec.reconcile(b, now=now, child=None)
    status = result.status
    assert isinstance(status, ScalingPolicyStatus)
    assert check_invariants(generation=1, observed_generation=1, conditions=status.conditions) == []
    return result


def status_of_dict(data: dict[str, Any]) -> ScalingPolicyStatus:
    return ScalingPolicyStatus.model_validate(data)


def status_of(result: Result) -> ScalingPolicyStatus:
    assert isinstance(result.status, ScalingPolicyStatus)
    return result.status


def dumped(result: Result) -> dict[str, Any]:
    return status_of(result).model_dump(by_alias=True, mode="json", exclude_none=True)


async def test_reactive_scales_the_target_to_the_load_and_says_so() -> None:
    target, prom = FakeTarget(replicas=2), FakeProm(load=300)
    result = await sync(reconciler(target, prom), body())
    assert target.scaled == [6]  # 300 / 50 per instance
    s = status_of(result)
    assert (s.current_instances, s.desired_instances, s.current_load) == (2, 6, 300)
    assert s.last_decision is not None
    assert s.last_decision.reason == "CurrentLoad"
    assert s.last_scale_time == NOW
    assert [e.reason for e in result.events] == ["Scaled"]
    ready = get_condition(s.conditions, "Ready")
    assert ready is not None
    assert ready.status == "True"
    assert result.requeue is Requeue.RESYNC
    assert result.requeue_after is not None
    assert 0 < result.requeue_after <= 30


async def test_dry_run_reports_the_same_plan_and_changes_nothing() -> None:
    real, dry = FakeTarget(replicas=1), FakeTarget(replicas=1)
    prom = FakeProm(load=1000)  # 20 instances' worth, capped at 10; +4 per 15 s at most
    r_real, r_dry = reconciler(real, prom), reconciler(dry, prom)
    b_real, b_dry = body(), body(dryRun=True)
    plans: list[tuple[int | None, int | None]] = []
    for step in range(3):
        now = NOW + dt.timedelta(seconds=30 * step)
        a, b = await sync(r_real, b_real, now), await sync(r_dry, b_dry, now)
        b_real["status"], b_dry["status"] = dumped(a), dumped(b)
        plans.append((status_of(a).desired_instances, status_of(b).desired_instances))
    assert plans == [(5, 5), (10, 10), (10, 10)]
    assert real.scaled == [5, 10]
    assert dry.scaled == []
    assert dry.replicas == 1
    assert status_of(b).current_instances == 1
    assert [e.reason for e in (await sync(r_dry, body(dryRun=True))).events] == ["WouldScale"]


async def test_metrics_unavailable_holds_the_count_and_says_why() -> None:
    target, prom = FakeTarget(replicas=7), FakeProm(load=None)
    result = await sync(reconciler(target, prom), body())
    assert target.scaled == []
    s = status_of(result)
    assert (s.current_instances, s.desired_instances) == (7, 7)
    ready, degraded = get_condition(s.conditions, "Ready"), get_condition(s.conditions, "Degraded")
    assert ready is not None
    assert (ready.status, ready.reason) == ("False", "MetricsUnreachable")
    assert degraded is not None
    assert degraded.status == "True"
    assert "holding 7 instances" in degraded.message
    assert "http://prom:9090" in degraded.message
    assert [e.reason for e in result.events] == ["MetricsUnreachable"]


@pytest.mark.parametrize(
    ("other", "reason", "named"),
    [
        ({"kind": "policy", "created": "2023-01-01T00:00:00Z"}, "ConflictingPolicy",
         "ScalingPolicy ns/older"),
        ({"kind": "hpa", "ref": "Deployment"}, "ConflictingHPA",
         "HorizontalPodAutoscaler ns/crm-hpa also scales Deployment/crm"),
        ({"kind": "hpa", "ref": "XynergyService"}, "ConflictingHPA",
         "HorizontalPodAutoscaler ns/crm-hpa also scales XynergyService/crm"),
    ],
)  # fmt: skip
async def test_another_autoscaler_on_the_target_stalls_naming_it(
    other: dict[str, str], reason: str, named: str
) -> None:
    index = TargetIndex()
    mine = body()
    index.observe_policy(mine, deleted=False)
    if other["kind"] == "policy":
        index.observe_policy(body(uid="u0", name="older", created=other["created"]), deleted=False)
    else:
        hpa = {"metadata": {"name": "crm-hpa", "namespace": NS},
               "spec": {"scaleTargetRef": {"kind": other["ref"], "name": "crm"}}}  # fmt: skip
        index.observe_hpa(hpa, deleted=False)
    target, prom = FakeTarget(), FakeProm()
    result = await sync(reconciler(target, prom, index), mine)
    stalled = get_condition(status_of(result).conditions, "Stalled")
    assert stalled is not None
    assert stalled.reason == reason
    assert named in stalled.message
    assert target.scaled == []
    assert prom.queries == []
    assert result.requeue is Requeue.BACKOFF


async def test_the_oldest_policy_keeps_its_target() -> None:
    index = TargetIndex()
    index.observe_policy(body(), deleted=False)
    index.observe_policy(body(uid="u9", name="younger", created="2025-01-01T00:00:00Z"),
                         deleted=False)  # fmt: skip
    target = FakeTarget()
    result = await sync(reconciler(target, FakeProm(), index), body())
    assert get_condition(status_of(result).conditions, "Stalled") is None
    assert target.scaled == [6]


async def test_a_missing_target_stalls() -> None:
    result = await sync(reconciler(FakeTarget(exists=False), FakeProm()), body())
    stalled = get_condition(status_of(result).conditions, "Stalled")
    assert stalled is not None
    assert stalled.reason == "TargetNotFound"
    assert "ns/crm" in stalled.message


async def test_paused_reads_no_metrics_and_decides_nothing() -> None:
    target, prom = FakeTarget(), FakeProm()
    result = await sync(reconciler(target, prom), body(paused=True))
    assert prom.queries == []
    assert target.scaled == []
    assert result.requeue_after is None  # no periodic sync while paused


async def test_a_restart_keeps_the_behaviour_state_so_nothing_jumps() -> None:
    """At most one instance added per 300 s: the policy adds one at t=0; a new operator
    (empty memory) at t=60 must not add another, because the scale events live in status."""
    spec: dict[str, Any] = {"behavior": {"scaleUp": {"policies": [
        {"type": "Pods", "value": 1, "periodSeconds": 300}]}}}  # fmt: skip
    target, prom = FakeTarget(replicas=2), FakeProm(load=500)
    b = body(**spec)
    first = await sync(reconciler(target, prom), b)
    assert target.scaled == [3]
    b["status"] = dumped(first)
    later = NOW + dt.timedelta(seconds=60)
    restarted = await sync(reconciler(target, prom), b, later)  # fresh reconciler
    assert target.scaled == [3]
    assert status_of(restarted).desired_instances == 3
    assert status_of(restarted).last_decision is not None
    assert cast(ScalingDecision, status_of(restarted).last_decision).reason == "ScaleUpLimit"
    # without the state in status the new operator would add another at once
    b.pop("status")
    await sync(reconciler(target, prom), b, later)
    assert target.scaled == [3, 4]


def daily(days: float, step: float = 300.0) -> Samples:
    t = cast(
        "npt.NDArray[np.float64]",
        NOW.timestamp() - np.arange(int(days * 86400 / step), 0, -1) * step,
    )
    v = 200 + 150 * np.sin(2 * np.pi * t / 86400)
    return Samples(timestamps=t, values=v)


async def test_predictive_with_short_history_falls_back_to_reactive_and_says_so() -> None:
    target, prom = FakeTarget(replicas=2), FakeProm(load=100, history=daily(0.5))
    result = await sync(reconciler(target, prom), body(mode="predictive"))
    s = status_of(result)
    assert s.mode == "reactive"
    degraded = get_condition(s.conditions, "Degraded")
    assert degraded is not None
    assert degraded.reason == "HistoryTooShort"
    assert s.mode_reason is not None
    assert "HistoryTooShort" in s.mode_reason


async def test_predictive_refits_on_its_own_schedule_not_every_sync() -> None:
    prom = FakeProm(load=100, history=daily(3))
    rec = reconciler(FakeTarget(replicas=2), prom)
    b = body(mode="predictive", forecast={"minimumHistory": "24h", "maxErrorPercent": 50})
    first = await sync(rec, b)
    b["status"] = dumped(first)
    await sync(rec, b, NOW + dt.timedelta(seconds=30))
    assert prom.queries.count("query_range") == 1
    assert prom.queries.count("query") == 2
    s = status_of(first)
    assert s.model is not None
    assert s.model_error is not None
    assert s.forecast is not None
    assert 0 < len(s.forecast) <= 24
    assert all(p.lower is not None and p.upper is not None for p in s.forecast)
    assert all(p.lower <= p.value <= p.upper for p in s.forecast if p.lower and p.upper)


PREDICTIVE = {"minimumHistory": "24h", "maxErrorPercent": 50}


async def test_a_due_refit_runs_beside_the_sync_not_in_it() -> None:
    """An hour on, the model is due: the sync decides from the current model and returns
    while the refit's history read still waits; the refit then serves the next sync."""
    prom = FakeProm(load=100, history=daily(3))
    rec = reconciler(FakeTarget(replicas=2), prom)
    b = body(mode="predictive", forecast=PREDICTIVE)
    first = status_of(await sync(rec, b))
    b["status"] = first.model_dump(by_alias=True, mode="json", exclude_none=True)
    prom.hold = asyncio.Event()
    later = NOW + dt.timedelta(seconds=3600)
    # a guard against a hang, not a timing: the history read never returns before `set`
    due = status_of(await asyncio.wait_for(sync(rec, b, later), timeout=60))
    assert due.model_fitted_time == first.model_fitted_time
    assert due.mode == "predictive"
    assert (rec.models.pending, rec.models.fits) == (1, 1)
    prom.hold.set()
    await rec.models.settle()
    assert (rec.models.pending, rec.models.fits) == (0, 2)
    b["status"] = due.model_dump(by_alias=True, mode="json", exclude_none=True)
    after = status_of(await sync(rec, b, later + dt.timedelta(seconds=30)))
    assert after.model_fitted_time == later
    assert prom.queries.count("query_range") == 2


async def test_a_failed_background_refit_drops_the_model() -> None:
    """A refit whose history read fails leaves no model (as a failed first fit): the next
    sync tries in the foreground, falls back and says so; it never forecasts from a model
    it could not refresh."""
    prom = FakeProm(load=100, history=daily(3))
    rec = reconciler(FakeTarget(replicas=2), prom)
    b = body(mode="predictive", forecast=PREDICTIVE)
    first = status_of(await sync(rec, b))
    b["status"] = first.model_dump(by_alias=True, mode="json", exclude_none=True)
    prom.history = None  # Prometheus loses the history
    later = NOW + dt.timedelta(seconds=3600)
    await sync(rec, b, later)
    await rec.models.settle()
    assert rec.models.get("u1") is None
    s = status_of(await sync(rec, b, later + dt.timedelta(seconds=30)))
    assert s.mode == "reactive"
    assert get_condition(s.conditions, "Degraded") is not None
    assert prom.queries.count("query_range") == 3


async def test_background_refits_wait_in_a_bounded_queue() -> None:
    """With room for one waiting refit, a second policy due meanwhile is not queued: its
    own next sync starts its refit once the first is done."""
    prom = FakeProm(load=100, history=daily(3))
    rec = reconciler(FakeTarget(replicas=2), prom)
    rec.models.max_pending = 1
    bodies = [body(uid=f"u{i}", name=f"p{i}", mode="predictive", forecast=PREDICTIVE)
              for i in (1, 2)]  # fmt: skip
    for b in bodies:
        await sync(rec, b)
    prom.hold = asyncio.Event()
    later = NOW + dt.timedelta(seconds=3600)
    for b in bodies:
        await asyncio.wait_for(sync(rec, b, later), timeout=60)  # a hang guard
    assert rec.models.pending == 1
    prom.hold.set()
    await rec.models.settle()
    assert rec.models.fits == 3
    await sync(rec, bodies[1], later + dt.timedelta(seconds=30))
    await rec.models.settle()
    assert rec.models.fits == 4


def test_the_recent_tail_keeps_only_the_hour_it_is_read_for() -> None:
    """Four hours of 30 s syncs: the tail holds the last hour (what the burst envelope
    reads), not the 512 points its bound allows (memory at a thousand policies)."""
    key = FitKey("prometheus:", "q", ("daily",), 86400.0, 0.9, 600.0)
    fitted = Fitted(key=key, fitted_at=0.0, forecast=None, history_seconds=0.0)
    for i in range(480):
        fitted.observe(30.0 * i, float(i))
    now = 30.0 * 479
    assert fitted.recent[0][0] > now - 3600
    assert len(fitted.recent) == 120
    recent = fitted.recent_load(now)
    assert recent is not None
    assert recent[1][-1] == 479.0


def test_syncs_spread_over_the_interval_and_keep_their_slot() -> None:
    now = NOW.timestamp()
    slots = [next_slot(f"uid-{i}", 30.0, now) - now for i in range(200)]
    assert all(0 < s <= 30 for s in slots)
    assert np.std(slots) > 5  # spread, not all at once
    # a late sync keeps the grid: the slot after a 4 s overrun is the same grid point + 30
    a = next_slot("uid-1", 30.0, now)
    assert next_slot("uid-1", 30.0, a + 4) == pytest.approx(a + 30)


@dataclass
class NoisyProm:
    """Poisson request counts (20/s) seen as 15 s means, at any time since NOW - 2400 s; no
    history for a forecast (so a predictive policy falls back to reactive)."""

    counts: np.ndarray = field(
        default_factory=lambda: np.random.default_rng(7).poisson(20.0, 7200).astype(float)
    )
    ranges: list[tuple[float, float, float]] = field(default_factory=list)

    def mean(self, at: float) -> float:
        i = int(at - NOW.timestamp()) + 2400
        return float(self.counts[i - 15 : i].mean())

    async def query(self, query: str, *, at: float) -> float:
        return self.mean(at)

    async def query_range(self, query: str, *, start: float, end: float, step: float) -> Samples:
        if step > 5:
            raise MetricsUnreachableError("no history")
        self.ranges.append((start, end, step))
        t = np.arange(start, end + step / 2, step)
        return Samples(timestamps=t, values=np.array([self.mean(x) for x in t]))


HEADROOM = re.compile(r"demand ([\d.]+) \+ ([\d.]+) x sqrt\([\d.]+ x index ([\d.]+)\)")


@pytest.mark.parametrize("capacity", [None, 7.5])
async def test_the_averaging_window_adds_headroom_for_the_per_second_noise(
    capacity: float | None,
) -> None:
    """`metric.averagingWindowSeconds`: each sync reads the 5 s means since the last one and
    the decision provisions for the per-second scatter around the mean (Poisson counts at
    20/s, 5 per instance: 4 instances for the mean), its z priced against the risk the
    target's margin leaves: `metric.capacityPerInstance` (7.5, half again the target) leaves
    some, so z is larger than without one."""
    metric = {"source": "prometheus", "query": "sum(rate(x[15s]))",
              "prometheusUrl": "http://prom:9090", "targetPerInstance": 5}  # fmt: skip
    if capacity is not None:
        metric["capacityPerInstance"] = capacity
    finals, first = {}, {}
    for window in (None, 15):
        prom, target = NoisyProm(), FakeTarget(replicas=4)
        rec = reconciler(target, prom)
        m = metric if window is None else {**metric, "averagingWindowSeconds": window}
        b = body(mode="predictive", metric=m, interval="30s")
        for k in range(60):  # 30 minutes of syncs 30 s apart, off the 5 s grid
            now = NOW + dt.timedelta(seconds=30 * k + 1.3)
            b["status"] = dumped(await sync(rec, b, now))
            if window is not None:
                start, end, step = prom.ranges[-1]
                assert (step, start % 5) == (5, 0)
                assert now.timestamp() - 5 < end < now.timestamp() + 2.5  # half a step past
                if k == 0:  # a warm-up of one half-life of the estimate
                    assert start <= now.timestamp() - 1800
                else:  # then the means after the last one read, one chain
                    assert start == prom.ranges[-2][1] + 2.5
            if k == 0:
                first[window] = status_of_dict(b["status"])
        finals[window] = status_of(await sync(rec, b, NOW + dt.timedelta(seconds=1801.3)))
        assert bool(prom.ranges) == (window is not None)
    plain, noisy = finals[None], finals[15]
    assert plain.desired_instances in (4, 5)  # the mean's own scatter, held by the window
    assert noisy.last_decision is not None
    assert noisy.last_decision.reason in ("DispersionHeadroom", "WithinTolerance")  # held
    found = HEADROOM.search(noisy.last_decision.message or "")
    assert found, noisy.last_decision.message
    demand, z, index = (float(g) for g in found.groups())
    assert 0.6 < index < 1.6  # Poisson
    spare = 0.0 if capacity is None else capacity / 5 - 1
    priced = relative_sigmas(demand, index=index, spare=spare, risk_ratio=0.4, sigmas=3.0)
    assert z == pytest.approx(priced, rel=0.01)
    assert z > 2.0 if capacity is not None else z < 1.0
    limit = capacity or 5.0  # the level fits under capacity, at most 1.3 x the demand's
    level = min(demand + z * math.sqrt(demand * index), 1.3 * demand * limit / 5)
    assert noisy.desired_instances is not None
    assert noisy.desired_instances >= math.ceil(level / limit - 0.01)  # the window may hold more
    # the first sync's read reaches back far enough to estimate at once
    assert first[None].desired_instances in (4, 5)
    assert first[15].last_decision is not None
    assert "dispersion headroom" in (first[15].last_decision.message or "")


def test_the_backtest_covers_a_third_of_the_last_day_or_the_lead_when_longer() -> None:
    # 14 days at the 360 s step range_step gives: 3 origins of 8 hours
    assert backtest_steps(span=14 * 86400.0, lead_steps=6, step=360.0) == 80
    assert backtest_steps(span=14 * 86400.0, lead_steps=100, step=360.0) == 100
    assert backtest_steps(span=8 * 3600.0, lead_steps=1, step=60.0) == 40  # a quarter of it
    # a bench replaying a trace compressed 30x passes its day
    assert backtest_steps(span=40000.0, lead_steps=3, step=15.0, day=2880.0) == 64


async def test_a_minimum_below_the_targets_is_raised_to_it_and_a_second_sync_does_nothing() -> None:
    """minInstances 0 on a target whose scaling.minInstances is 1: the target clamps its
    replicas to 1, so deciding 0 would scale it (an Event, a status write) every sync."""
    target, prom = FakeTarget(replicas=1), FakeProm(load=0.0)
    rec = reconciler(target, prom)
    b = body(minInstances=0)
    first = await sync(rec, b)
    assert target.scaled == []
    s = status_of(first)
    assert (s.current_instances, s.desired_instances) == (1, 1)
    ready = get_condition(s.conditions, "Ready")
    assert ready is not None
    assert "spec.minInstances 0 below the target's scaling.minInstances 1" in ready.message
    b["status"] = dumped(first)
    second = await sync(rec, b, NOW + dt.timedelta(seconds=400))
    assert target.scaled == []
    assert list(second.events) == []
    assert second.status == status_of_dict(b["status"])  # nothing to write


NOON = [{"cron": "0 12 * * *", "duration": "2h", "minInstances": 6}]  # active at NOW


@pytest.mark.parametrize(
    ("replicas", "spec", "scaled", "why"),
    [
        (2, {"minInstances": 3, "schedules": NOON}, [6], "schedule 0 12 * * * UTC minimum 6"),
        (2, {"minInstances": 3}, [3], "minInstances 3"),
        (12, {"minInstances": 3}, [10], "maxInstances 10"),
        # a schedule floor above maxInstances brings the count to the maximum, naming it
        (2, {"schedules": [{**NOON[0], "minInstances": 12}]}, [10],
         "schedule 0 12 * * * UTC minimum 12"),
    ],
)  # fmt: skip
async def test_without_metrics_the_bounds_and_active_schedules_still_apply(
    replicas: int, spec: dict[str, Any], scaled: list[int], why: str
) -> None:
    """Schedules raise the floor in every mode, and, as HPA applies its bounds before any
    metric, a count outside [min, max] is brought inside while the metric cannot be read."""
    target, prom = FakeTarget(replicas=replicas), FakeProm(load=None)
    result = await sync(reconciler(target, prom), body(**spec))
    assert target.scaled == scaled
    s = status_of(result)
    assert (s.current_instances, s.desired_instances) == (replicas, scaled[0])
    assert s.last_scale_time == NOW
    ready = get_condition(s.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("False", "MetricsUnreachable")
    assert f"scaled {replicas} -> {scaled[0]} ({why}) without the metric" in ready.message
    assert [e.reason for e in result.events] == ["Scaled", "MetricsUnreachable"]
    b = body(**spec, status=dumped(result))
    again = await sync(reconciler(target, prom), b, NOW + dt.timedelta(seconds=15))
    assert target.scaled == scaled  # inside the bounds now: held
    assert status_of(again).desired_instances == scaled[0]


async def test_a_dry_run_without_metrics_plans_the_bound_and_changes_nothing() -> None:
    target, prom = FakeTarget(replicas=2), FakeProm(load=None)
    result = await sync(reconciler(target, prom), body(dryRun=True, schedules=NOON))
    assert target.scaled == []
    s = status_of(result)
    assert (s.current_instances, s.desired_instances) == (2, 6)
    assert s.last_scale_time is None
    degraded = get_condition(s.conditions, "Degraded")
    assert degraded is not None
    assert "would scale 2 -> 6" in degraded.message


async def test_a_stored_sub_second_interval_stalls_naming_the_field() -> None:
    """An object stored before the CRD refused `interval: 1ms` is not synced in a hot loop:
    the spec is refused naming spec.interval, and the policy backs off."""
    target, prom = FakeTarget(), FakeProm()
    result = await sync(reconciler(target, prom), body(interval="1ms"))
    stalled = get_condition(status_of(result).conditions, "Stalled")
    assert stalled is not None
    assert stalled.reason == "InvalidSpec"
    assert "spec.interval must be a duration of at least 1s" in stalled.message
    assert (target.scaled, prom.queries) == ([], [])
    assert result.requeue is Requeue.BACKOFF


def test_the_sync_grid_is_never_finer_than_a_second() -> None:
    now = NOW.timestamp()
    a = next_slot("uid-1", 0.001, now)
    assert 0 < a - now <= 1
    assert next_slot("uid-1", 0.001, a) - a == pytest.approx(1.0)


HPA = {"metadata": {"name": "crm-hpa", "namespace": NS},
       "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "crm"}}}  # fmt: skip


async def test_a_dry_run_beside_an_hpa_plans_on_and_names_it() -> None:
    """A dry run changes nothing, so the HPA it is meant to be compared with does not stall
    it; the Ready message says what would."""
    index = TargetIndex()
    mine = body(dryRun=True)
    index.observe_policy(mine, deleted=False)
    index.observe_hpa(HPA, deleted=False)
    target, prom = FakeTarget(replicas=2), FakeProm(load=300)
    result = await sync(reconciler(target, prom, index), mine)
    s = status_of(result)
    assert get_condition(s.conditions, "Stalled") is None
    ready = get_condition(s.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("True", "DryRun")
    assert "would be Stalled ConflictingHPA" in ready.message
    assert "HorizontalPodAutoscaler ns/crm-hpa" in ready.message
    assert s.desired_instances == 6
    assert target.scaled == []
    assert result.requeue is Requeue.RESYNC


@pytest.mark.parametrize("older", [{"dryRun": True}, {"paused": True}])
async def test_a_policy_that_does_not_act_claims_no_seniority(older: dict[str, Any]) -> None:
    """An older dry-run or paused policy leaves the target to the younger real one; the dry
    run is told the real one scales it."""
    index = TargetIndex()
    senior = body(uid="u0", name="older", created="2023-01-01T00:00:00Z", **older)
    index.observe_policy(senior, deleted=False)
    mine = body()
    index.observe_policy(mine, deleted=False)
    target = FakeTarget(replicas=2)
    result = await sync(reconciler(target, FakeProm(load=300), index), mine)
    assert get_condition(status_of(result).conditions, "Stalled") is None
    assert target.scaled == [6]
    if older.get("dryRun"):
        other = FakeTarget(replicas=2)
        planned = await sync(reconciler(other, FakeProm(load=300), index), senior)
        ready = get_condition(status_of(planned).conditions, "Ready")
        assert ready is not None
        assert "would be Stalled ConflictingPolicy" in ready.message
        assert "ScalingPolicy ns/crm already scales" in ready.message
        assert other.scaled == []


def test_turning_a_dry_run_real_converges_the_other_policies_on_the_target() -> None:
    index = TargetIndex()
    index.observe_policy(body(dryRun=True), deleted=False)
    assert index.observe_policy(body(dryRun=True), deleted=False) == set()  # a status write
    assert index.observe_policy(body(), deleted=False) == {(NS, "crm")}
    assert index.observe_policy(body(paused=True), deleted=False) == {(NS, "crm")}


async def test_a_paused_target_is_left_alone_and_the_policy_says_so() -> None:
    target, prom = FakeTarget(replicas=2, paused=True), FakeProm(load=300)
    rec = reconciler(target, prom)
    b = body()
    result = await sync(rec, b)
    assert (target.scaled, prom.queries) == ([], [])
    s = status_of(result)
    ready = get_condition(s.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("False", "TargetPaused")
    assert "ns/crm is paused" in ready.message
    assert s.desired_instances is None
    b["status"] = dumped(result)
    again = await sync(rec, b, NOW + dt.timedelta(seconds=15))
    assert again.status == status_of_dict(b["status"])  # unchanged: nothing written
    assert target.scaled == []
