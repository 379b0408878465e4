"""The controller core: serialized converge with bounded bookkeeping, the resync scheduler,
the status writer, the retry policy. In-memory fakes for the apiserver client (no I/O)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import tenacity
from lightkube import ApiError
from lightkube.models.meta_v1 import Status

from apis.conditions import mark_ready, mark_reconciling, mark_stalled
from apis.v1alpha1.xynergyservice import XynergyServiceStatus
from controllers.core import (
    ChildEvent,
    Controller,
    Event,
    EventRecorder,
    Kind,
    ObjectKey,
    ObjectQueue,
    Requeue,
    Result,
    ResyncScheduler,
    RetryPolicy,
    StatusWriter,
)
from controllers.core.controller import DRIFT_CHECK_ANNOTATION, RESYNC_ANNOTATION
from controllers.core.events import SaidOnce
from controllers.core.peering import ActivityGate
from controllers.core.status import spec_error

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
KIND = Kind("xynergy.io", "v1alpha1", "XynergyService", "xynergyservices")


def _key(uid: str = "u1", name: str = "crm") -> ObjectKey:
    return ObjectKey("XynergyService", "ns", name, uid)


# ---- ObjectQueue --------------------------------------------------------------------------------


async def test_queue_serializes_per_object_and_leaves_nothing_behind() -> None:
    queue = ObjectQueue()
    order: list[str] = []
    gate = asyncio.Event()

    async def work(uid: str, tag: str) -> None:
        async with queue.serialized(uid):
            order.append(f"{tag} in")
            if tag == "a1":
                await gate.wait()
            order.append(f"{tag} out")

    first = asyncio.create_task(work("a", "a1"))
    await asyncio.sleep(0)
    second = asyncio.create_task(work("a", "a2"))
    other = asyncio.create_task(work("b", "b1"))
    await other  # another object never waits behind "a"
    assert queue.busy("a")
    assert len(queue) == 1
    gate.set()
    await asyncio.gather(first, second)
    assert order == ["a1 in", "b1 in", "b1 out", "a1 out", "a2 in", "a2 out"]
    assert len(queue) == 0


async def test_queue_entry_goes_when_the_body_raises() -> None:
    queue = ObjectQueue()
    with pytest.raises(RuntimeError):
        async with queue.serialized("x"):
            raise RuntimeError("boom")
    assert len(queue) == 0


# ---- ResyncScheduler ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_hung_check_does_not_delay_another_objects_check() -> None:
    clock = Clock()
    done: list[str] = []
    hang = asyncio.Event()

    async def check(key: ObjectKey) -> None:
        if key.name == "slow":
            await hang.wait()  # a Cloud Run operation that never ends
        done.append(key.name)

    scheduler = ResyncScheduler(check, concurrency=4, deadline=0.2, clock=clock)
    scheduler.schedule(_key("u-slow", "slow"), 0)
    scheduler.schedule(_key("u-fast", "fast"), 0)
    started = scheduler.start_due()
    assert {k.name for k in started} == {"slow", "fast"}
    await asyncio.sleep(0.05)
    assert done == ["fast"]  # finished while "slow" still hangs
    await scheduler.idle()  # the deadline cancels "slow"
    assert done == ["fast"]
    delay = scheduler.due_in("u-slow")
    assert delay is not None
    assert 0 < delay <= 2.0
    assert scheduler.due_in("u-fast") is None  # the check itself schedules the next one


async def test_concurrency_is_bounded() -> None:
    clock = Clock()
    running = 0
    peak = 0

    async def check(key: ObjectKey) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    scheduler = ResyncScheduler(check, concurrency=3, deadline=5, clock=clock)
    for i in range(10):
        scheduler.schedule(_key(f"u{i}", f"n{i}"), 0)
    assert len(scheduler.start_due()) == 10
    await scheduler.idle()
    assert peak == 3


async def test_failures_back_off_and_forget_drops_everything() -> None:
    clock = Clock()
    calls = 0

    async def check(key: ObjectKey) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("apiserver away")

    policy = RetryPolicy(initial=2.0, maximum=60.0)
    scheduler = ResyncScheduler(check, deadline=5, clock=clock, backoff=policy)
    key = _key()
    delays = []
    for attempt in range(5):
        scheduler.schedule(key, 0)
        scheduler.start_due()
        await scheduler.idle()
        delay = scheduler.due_in(key.uid)
        assert delay is not None
        assert policy.base(attempt) / 2 <= delay <= policy.base(attempt)
        delays.append(delay)
    assert calls == 5
    scheduler.forget(key.uid)
    assert len(scheduler) == 0
    assert scheduler.due_in(key.uid) is None
    scheduler.succeeded(key, 10)  # a fresh start: no failures remembered
    assert scheduler.failed(key) <= policy.base(0)


async def test_not_due_and_running_checks_are_not_started_twice() -> None:
    clock = Clock()
    gate = asyncio.Event()

    runs: list[str] = []

    async def check(key: ObjectKey) -> None:
        runs.append(key.uid)
        await gate.wait()

    scheduler = ResyncScheduler(check, deadline=5, clock=clock)
    scheduler.schedule(_key("a"), 10)
    assert scheduler.start_due() == []
    clock.now += 10
    assert len(scheduler.start_due()) == 1
    scheduler.schedule(_key("a"), 0)  # an event scheduled it again while it runs
    assert scheduler.start_due() == []
    gate.set()
    await scheduler.idle()  # the second run started as the first ended, not a tick later
    assert runs == ["a", "a"]
    assert scheduler.start_due() == []


async def test_the_loop_starts_each_check_when_it_is_due_not_at_the_next_tick() -> None:
    """Two checks due 0.3 s and 0.6 s from now, a 1 s tick: each starts at its own due time
    (a thousand policies on a 30 s interval are due every 30 ms)."""
    clock = Clock()
    start = clock.now
    started: list[tuple[str, float]] = []
    both = asyncio.Event()

    async def check(key: ObjectKey) -> None:
        started.append((key.name, round(clock.now - start, 3)))
        if len(started) == 2:
            both.set()

    async def sleep(seconds: float) -> None:
        for _ in range(10):  # checks started before this sleep run at the time they started
            await asyncio.sleep(0)
        clock.now += seconds

    scheduler = ResyncScheduler(check, tick=1.0, clock=clock, sleep=sleep)
    scheduler.schedule(_key("ua", "a"), 0.3)
    scheduler.schedule(_key("ub", "b"), 0.45)
    scheduler.schedule(_key("ub", "b"), 0.6)  # replaced: only the later time counts
    scheduler.start()
    await both.wait()
    await scheduler.close()
    assert started == [("a", 0.3), ("b", 0.6)]


async def test_a_paused_scheduler_does_not_spin_on_due_checks() -> None:
    """While paused, a due check waits a tick at a time (no hot loop), and starts on resume."""
    clock = Clock()
    naps: list[float] = []
    napped, ran = asyncio.Event(), asyncio.Event()

    async def check(key: ObjectKey) -> None:
        ran.set()

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        clock.now += seconds
        if len(naps) == 5:
            napped.set()
        await asyncio.sleep(0)

    gate = ActivityGate(active=False)
    scheduler = ResyncScheduler(check, tick=1.0, clock=clock, sleep=sleep, gate=gate)
    scheduler.schedule(_key("ua", "a"), 0)
    scheduler.start()
    await napped.wait()
    assert not ran.is_set()
    assert naps[:5] == [1.0] * 5
    gate.resume()
    await ran.wait()
    await scheduler.close()


# ---- status writer ------------------------------------------------------------------------------


@dataclass
class FakeClient:
    """The part of lightkube's AsyncClient the core uses, over a dict of objects."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    patches: list[dict[str, Any]] = field(default_factory=list)
    created: list[Any] = field(default_factory=list)
    gets: int = 0

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        self.gets += 1
        if name not in self.objects:
            raise ApiError(status=Status(code=404, message="not found"))
        return _Obj(self.objects[name])

    async def patch(self, resource: Any, name: str, body: dict[str, Any], **_: Any) -> None:
        if name not in self.objects:
            raise ApiError(status=Status(code=404, message="not found"))
        self.patches.append(body)
        self.objects[name].setdefault("status", {}).update(
            {k: v for k, v in body["status"].items() if v is not None}
        )

    async def create(self, obj: Any) -> Any:
        self.created.append(obj)
        return obj

    async def close(self) -> None:
        return None


@dataclass
class _Obj:
    body: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.body


def _ready_status(message: str = "1/1 instances ready", replicas: int = 1) -> XynergyServiceStatus:
    return XynergyServiceStatus(
        conditions=mark_ready([], reason="Ready", message=message, generation=3, now=NOW),
        replicas=replicas,
        last_reconcile_time=NOW,
    )


def _body(uid: str = "u1", status: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"name": "crm", "namespace": "ns", "uid": uid, "generation": 3}
    head = {"apiVersion": "xynergy.io/v1alpha1", "kind": "XynergyService"}
    return {**head, "metadata": meta, "spec": {}, **({"status": status} if status else {})}


async def test_status_written_once_then_not_when_unchanged() -> None:
    client = FakeClient({"crm": _body()})
    writer = StatusWriter(client, limit=asyncio.Semaphore(1))  # type: ignore[arg-type]
    assert await writer.write(KIND.resource, client.objects["crm"], _ready_status())
    patch = client.patches[0]["status"]
    assert patch["observedGeneration"] == 3
    assert isinstance(patch["observedGeneration"], int)
    # the same status a minute later (only lastReconcileTime moved): no write
    later = _ready_status().model_copy(update={"last_reconcile_time": NOW + dt.timedelta(60)})
    assert not await writer.write(KIND.resource, client.objects["crm"], later)
    # a volatile field alone is no reason; a real change is
    more = _ready_status(replicas=2)
    assert not await writer.write(
        KIND.resource, client.objects["crm"], more, volatile=frozenset({"replicas"})
    )
    assert await writer.write(KIND.resource, client.objects["crm"], _ready_status("2/2 ready"))
    assert writer.writes == len(client.patches) == 2
    gone = client.objects.pop("crm")
    assert not await writer.write(KIND.resource, gone, _ready_status("deleted meanwhile"))


def test_spec_error_names_the_field_as_written() -> None:
    from pydantic import ValidationError

    from apis.v1alpha1 import XynergyService

    body = _body()
    body["spec"] = {"image": "reg/crm:1", "env": [{"name": "A", "value": "1"}, {"name": ""}]}
    with pytest.raises(ValidationError) as err:
        XynergyService.model_validate(body)
    assert spec_error(err.value).startswith("spec.env[1].name: ")


# ---- the converge path --------------------------------------------------------------------------


@dataclass
class FakeReconciler:
    kind: Kind = KIND
    calls: list[tuple[str, ChildEvent | None]] = field(default_factory=list)
    requeue: Requeue = Requeue.RESYNC
    raises: Exception | None = None
    after: float | None = None

    async def reconcile(
        self, body: Mapping[str, Any], *, now: dt.datetime, child: ChildEvent | None
    ) -> Result:
        self.calls.append((body["metadata"]["uid"], child))
        if self.raises:
            raise self.raises
        return Result(
            status=_ready_status(),
            requeue=self.requeue,
            requeue_after=self.after,
            events=[Event("Normal", "Ready", "ok")],
        )

    finalizer: bool = False

    def needs_finalizer(self, body: Mapping[str, Any]) -> bool:
        return self.finalizer

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, None]:
        return True, None


def _controller(client: FakeClient, reconciler: FakeReconciler) -> Controller:
    async def check(key: ObjectKey) -> object:
        return await controller.converge(key)

    queue = ObjectQueue()
    controller = Controller(
        kind=reconciler.kind,
        build=lambda: reconciler,
        client=client,  # type: ignore[arg-type]
        queue=queue,
        scheduler=ResyncScheduler(check, clock=Clock()),
        writer=StatusWriter(client, limit=asyncio.Semaphore(4)),  # type: ignore[arg-type]
        recorder=EventRecorder(client, limit=asyncio.Semaphore(4)),  # type: ignore[arg-type]
        resync_seconds=600,
        rng=random.Random(1),
    )
    return controller


async def test_converge_writes_status_and_schedules_the_resync() -> None:
    client = FakeClient({"crm": _body()})
    reconciler = FakeReconciler()
    controller = _controller(client, reconciler)
    result = await controller.converge(_key())
    assert result is not None
    assert len(client.patches) == 1
    delay = controller.scheduler.due_in("u1")
    assert delay is not None
    assert 600 <= delay <= 660
    await controller.converge(_key())
    assert len(client.patches) == 1  # unchanged: no second write
    assert len(controller.queue) == 0
    event = client.created[0]  # posted with our own client, from any task (no kopf context)
    assert (event.reason, event.type, event.involvedObject.uid) == ("Ready", "Normal", "u1")
    assert event.involvedObject.kind == "XynergyService"
    assert event.source.component == "xynergy-operator"


async def test_a_kind_with_its_own_period_is_checked_again_exactly_then() -> None:
    client = FakeClient({"crm": _body()})
    controller = _controller(client, FakeReconciler(after=12.5))
    await controller.converge(_key())
    assert controller.scheduler.due_in("u1") == 12.5  # not the 600 s resync, no jitter


async def test_a_backoff_with_a_bound_comes_back_within_it() -> None:
    """Requeue.BACKOFF with requeue_after: the backoff, but never later than the bound (an
    OAuthConnection renewing its refresh claim); without one the backoff grows past it."""
    reconciler = FakeReconciler(requeue=Requeue.BACKOFF, after=20.0)
    controller = _controller(FakeClient({"crm": _body()}), reconciler)
    delays = []
    for _ in range(8):  # the operator's backoff: 2 s doubling to 300 s here
        await controller.converge(_key())
        delays.append(controller.scheduler.due_in("u1"))
    assert all(d is not None and d <= 20.0 for d in delays), delays
    assert delays[0] is not None
    assert delays[0] <= 2.0  # the early tries keep the backoff's shorter waits
    reconciler.after = None
    await controller.converge(_key())
    unbounded = controller.scheduler.due_in("u1")
    assert unbounded is not None
    assert unbounded > 20.0


@pytest.mark.parametrize(
    ("annotations", "low", "high"),
    [
        ({DRIFT_CHECK_ANNOTATION: "60"}, 60, 66),  # the object's own period, with its jitter
        ({DRIFT_CHECK_ANNOTATION: "0.001"}, 10, 11),  # floored: each check is a converge
        ({DRIFT_CHECK_ANNOTATION: "inf"}, 600, 660),
        ({DRIFT_CHECK_ANNOTATION: "soon"}, 600, 660),
        # a resync request (an epoch, as `date +%s` writes it) asks for a converge now, and
        # is not a period: the next check stays at the operator's default
        ({RESYNC_ANNOTATION: "1767225600"}, 600, 660),
    ],
)
async def test_the_drift_check_period_is_the_objects_own_annotation(
    annotations: dict[str, str], low: float, high: float
) -> None:
    body = _body()
    body["metadata"]["annotations"] = annotations
    controller = _controller(FakeClient({"crm": body}), FakeReconciler())
    await controller.converge(_key())
    delay = controller.scheduler.due_in("u1")
    assert delay is not None
    assert low <= delay <= high


async def test_a_deleted_object_without_finalizer_leaves_nothing_behind() -> None:
    client = FakeClient({"crm": _body()})
    controller = _controller(client, FakeReconciler())
    await controller.converge(_key())
    assert len(controller.scheduler) == 1
    del client.objects["crm"]  # deleted; no finalizer, so no delete handler ran
    assert await controller.converge(_key()) is None
    assert len(controller.scheduler) == 0
    assert len(controller.queue) == 0


async def test_a_recreated_object_is_not_converged_under_the_old_key() -> None:
    client = FakeClient({"crm": _body(uid="new")})
    reconciler = FakeReconciler()
    controller = _controller(client, reconciler)
    assert await controller.converge(_key(uid="old")) is None
    assert reconciler.calls == []


async def test_status_only_events_do_not_converge() -> None:
    client = FakeClient({"crm": _body()})
    reconciler = FakeReconciler()
    controller = _controller(client, reconciler)
    ours = _body(status={"observedGeneration": 3})
    await controller.on_event(ours, "MODIFIED")
    assert reconciler.calls == []
    await controller.on_event(_body(status={"observedGeneration": 2}), "MODIFIED")
    await controller.on_event(ours, None)  # the listing after a restart
    assert len(reconciler.calls) == 2
    await controller.on_event(ours, "DELETED")
    assert len(controller.scheduler) == 0


async def test_a_child_event_converges_its_owner_with_what_it_saw() -> None:
    client = FakeClient({"crm": _body()})
    reconciler = FakeReconciler()
    controller = _controller(client, reconciler)
    child = {
        "metadata": {
            "name": "crm",
            "namespace": "ns",
            "ownerReferences": [
                {"kind": "XynergyService", "name": "crm", "uid": "u1", "controller": True}
            ],
        }
    }
    await controller.on_child_event("Service", child, "DELETED")
    [(uid, seen)] = reconciler.calls
    assert uid == "u1"
    assert seen is not None
    assert (seen.kind, seen.deleted) == ("Service", True)
    await controller.on_child_event("Service", child, None)  # initial listing: skipped
    orphan = {"metadata": {"name": "x", "namespace": "ns"}}
    await controller.on_child_event("Service", orphan, "MODIFIED")
    assert len(reconciler.calls) == 1


async def test_an_events_converge_reads_the_delivered_body_not_the_apiserver() -> None:
    client = FakeClient({"crm": _body()})
    reconciler = FakeReconciler()
    controller = _controller(client, reconciler)
    delivered = _body(status={"observedGeneration": 2})
    delivered["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {}}]
    await controller.on_event(delivered, "MODIFIED")
    assert client.gets == 0  # the watch's body was used
    assert len(client.patches) == 1  # and it was compared with the delivered status
    # our status write drops it: until the write's own event arrives, converges read
    await controller.trigger(_key())
    assert client.gets == 1
    mine = _body(status=client.objects["crm"]["status"])
    await controller.on_event(mine, "MODIFIED")  # our write's event: no converge of its own
    await controller.trigger(_key())  # a child's event, say
    assert client.gets == 1
    assert "managedFields" not in controller._seen["u1"]["metadata"]
    # the scheduler's check always reads (a deletion the watch missed is found there)
    await controller.converge(_key())
    assert client.gets == 2
    await controller.on_event(mine, "DELETED")
    assert controller._seen == {}


async def test_a_failed_event_converge_is_retried_with_backoff() -> None:
    client = FakeClient({"crm": _body()})
    controller = _controller(client, FakeReconciler(raises=RuntimeError("boom")))
    await controller.trigger(_key())  # never raises into kopf
    delay = controller.scheduler.due_in("u1")
    assert delay is not None
    assert delay <= 2.0
    assert len(controller.queue) == 0


def _hold_first_converge(reconciler: FakeReconciler, tag: str) -> asyncio.Event:
    """The reconciler's first converge records `tag` and waits until the event is set."""
    release = asyncio.Event()
    plain = reconciler.reconcile

    async def slow(
        body: Mapping[str, Any], *, now: dt.datetime, child: ChildEvent | None
    ) -> Result:
        if not reconciler.calls:
            reconciler.calls.append((tag, child))
            await release.wait()
        return await plain(body, now=now, child=child)

    reconciler.reconcile = slow  # type: ignore[method-assign]
    return release


async def test_triggers_behind_a_running_converge_coalesce_into_one() -> None:
    client = FakeClient({"crm": _body()})
    reconciler = FakeReconciler()
    controller = _controller(client, reconciler)
    release = _hold_first_converge(reconciler, "holding")
    first = asyncio.create_task(controller.trigger(_key()))
    await asyncio.sleep(0.01)
    assert controller.queue.busy("u1")
    assert not controller.queue.waiting("u1")  # running, nobody behind it
    burst = [asyncio.create_task(controller.trigger(_key())) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert all(t.done() for t in burst)  # none of them held its caller (kopf's worker)
    assert controller.queue.waiting("u1")  # the one converge after the running one
    release.set()
    await asyncio.gather(first, *burst)
    await controller.scheduler.idle()
    # the running converge, then one more for the whole burst (it read the newest object)
    assert [uid for uid, _ in reconciler.calls] == ["holding", "u1", "u1"]
    assert not controller.queue.waiting("u1")
    assert len(controller.queue) == 0


async def test_a_trigger_during_a_scheduled_check_is_not_replaced_by_its_requeue() -> None:
    """A child event while the scheduler's check of the object runs: converged once more after
    it, now, not at the check's own requeue (~20 s while progressing: CI saw a Deployment's
    last events lost that way and a service Ready 20 s late)."""
    client = FakeClient({"crm": _body()})
    reconciler = FakeReconciler(requeue=Requeue.SOON)
    controller = _controller(client, reconciler)
    release = _hold_first_converge(reconciler, "check")
    controller.scheduler.schedule(_key(), 0)
    controller.scheduler.start_due()  # the resync check runs
    await asyncio.sleep(0.01)
    await controller.trigger(_key())  # the child event meanwhile
    release.set()
    await controller.scheduler.idle()
    assert [uid for uid, _ in reconciler.calls] == ["check", "u1", "u1"]
    delay = controller.scheduler.due_in("u1")
    assert delay is not None
    assert delay > 5  # the last converge's own requeue, nothing left due now


def _owned(kind: str, version: str) -> dict[str, Any]:
    """A child's body owned by the object `_body()`."""
    owner = {"kind": "XynergyService", "name": "crm", "uid": "u1", "controller": True}
    meta = {"name": "crm", "namespace": "ns", "resourceVersion": version}
    return {"kind": kind, "metadata": {**meta, "ownerReferences": [owner]}}


async def test_child_events_behind_a_running_converge_are_converged_as_events() -> None:
    """A Deployment changes several times while it becomes Ready; the events that arrive
    while a converge runs coalesce into one more converge, and that one is still an event's
    converge: it sees the newest child event (so the kind does not take it for a slow
    rollout's check and list the Pods) and reads the object as its watch delivered it (no
    GET), as the converge of an event that did not wait would."""
    stored = _ready_status().model_dump(by_alias=True, mode="json", exclude_none=True)
    body = _body(status={**stored, "observedGeneration": 3})  # as converged: nothing to write
    client = FakeClient({"crm": body})
    reconciler = FakeReconciler(requeue=Requeue.SOON)
    controller = _controller(client, reconciler)
    await controller.on_event(body, "MODIFIED")  # remembered, no converge of its own
    release = _hold_first_converge(reconciler, "running")
    first = asyncio.create_task(controller.on_child_event("Deployment", _owned("D", "1"), "ADDED"))
    await asyncio.sleep(0.01)
    for version in ("2", "3"):
        await controller.on_child_event("Deployment", _owned("D", version), "MODIFIED")
    release.set()
    await first
    await controller.scheduler.idle()
    assert len(reconciler.calls) == 3  # held, its converge, one more for both events
    followup = reconciler.calls[-1][1]
    assert followup is not None  # an event's converge, not a resync check
    assert (followup.kind, followup.body["metadata"]["resourceVersion"]) == ("Deployment", "3")
    assert client.gets == 0  # the delivered body, as for an event that did not wait
    assert client.patches == []


async def test_child_events_keep_the_child_cache_of_the_kinds_the_reconciler_names() -> None:
    client = FakeClient({"crm": _body()})
    reconciler = FakeReconciler()
    reconciler.cached_children = frozenset({"Deployment"})  # type: ignore[attr-defined]
    controller = _controller(client, reconciler)
    await controller.on_child_event("Deployment", _owned("Deployment", "4"), None)  # listing
    await controller.on_child_event("Service", _owned("Service", "5"), "ADDED")
    held = controller.children.get("Deployment", "ns", "crm")
    assert held is not None
    assert held["metadata"]["resourceVersion"] == "4"
    assert controller.children.get("Service", "ns", "crm") is None  # not named: not kept
    await controller.on_child_event("Deployment", _owned("Deployment", "6"), "DELETED")
    assert len(controller.children) == 0
    await controller.on_child_event("Deployment", _owned("Deployment", "7"), "MODIFIED")
    controller.forget("u1")  # the owner is gone
    assert len(controller.children) == 0


async def test_a_burst_of_triggers_meets_an_unreachable_apiserver_once_per_object() -> None:
    client = FakeClient({"crm": _body()})
    controller = _controller(client, FakeReconciler())
    entered, release = asyncio.Event(), asyncio.Event()
    read = client.get

    async def get(resource: Any, name: str, *, namespace: str | None = None) -> Any:
        if client.gets == 0:
            entered.set()
            await release.wait()  # the apiserver goes away while this read is in flight
        if release.is_set():
            client.gets += 1
            raise ConnectionError("connection refused")
        return await read(resource, name, namespace=namespace)

    client.get = get  # type: ignore[method-assign]
    tasks = [asyncio.create_task(controller.trigger(_key())) for _ in range(8)]
    await entered.wait()
    release.set()
    await asyncio.gather(*tasks)
    await controller.scheduler.idle()
    assert client.gets == 2  # the read in flight and the one queued converge: not eight
    delay = controller.scheduler.due_in("u1")
    assert delay is not None  # the backoff retry is scheduled
    assert len(controller.queue) == 0


# ---- retry policy -------------------------------------------------------------------------------


def test_delay_grows_with_equal_jitter_and_caps() -> None:
    policy = RetryPolicy(initial=1.0, maximum=8.0)
    rng = random.Random(1)
    for n in range(8):
        base = min(8.0, 2.0**n)
        assert base / 2 <= policy.delay(n, rng) <= base


async def test_tenacity_retrying_waits_with_the_injected_sleep() -> None:
    policy = RetryPolicy(initial=1.0, maximum=4.0, max_attempts=4)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    attempts = 0

    async def failing() -> None:
        nonlocal attempts
        async for attempt in policy.retrying(
            retry_if=lambda e: isinstance(e, ConnectionError), sleep=sleep
        ):
            with attempt:
                attempts += 1
                raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await failing()
    assert attempts == 4
    assert len(waits) == 3
    for n, wait in enumerate(waits):
        assert policy.base(n) / 2 <= wait <= policy.base(n)


async def test_tenacity_retrying_does_not_retry_other_errors() -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("no wait expected")

    async def refused() -> None:
        async for attempt in RetryPolicy().retrying(
            retry_if=lambda e: isinstance(e, ConnectionError), sleep=sleep
        ):
            with attempt:
                raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await refused()
    assert isinstance(RetryPolicy().wait(), tenacity.wait.wait_base)


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="initial"):
        RetryPolicy(initial=0)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


async def test_nothing_is_made_before_the_finalizer_is_in_place() -> None:
    """A kind whose deletion needs us converges only once kopf's finalizer is on the object,
    so a deletion right after creation cannot skip the release."""
    from controllers.core.controller import FINALIZER

    client = FakeClient({"crm": _body()})
    reconciler = FakeReconciler(finalizer=True)
    controller = _controller(client, reconciler)
    await controller.on_event(_body(), "ADDED")
    assert reconciler.calls == []
    with_finalizer = _body()
    with_finalizer["metadata"]["finalizers"] = [FINALIZER]
    await controller.on_event(with_finalizer, "MODIFIED")
    assert len(reconciler.calls) == 1


async def test_an_object_with_status_that_newly_needs_a_finalizer_converges_once_it_has_it() -> (
    None
):
    """After an upgrade that makes a kind hold a finalizer (Rollouts mid-delivery), an object
    with a status for its generation gets the finalizer by kopf's patch, whose MODIFIED event
    has generation == observedGeneration: it must still converge, or nothing ever would."""
    from controllers.core.controller import FINALIZER

    status = {"observedGeneration": 3}
    client = FakeClient({"crm": _body(status=status)})
    reconciler = FakeReconciler(finalizer=True)
    controller = _controller(client, reconciler)
    await controller.on_event(_body(status=status), None)  # the initial listing
    assert reconciler.calls == []
    with_finalizer = _body(status=status)
    with_finalizer["metadata"]["finalizers"] = [FINALIZER]
    await controller.on_event(with_finalizer, "MODIFIED")
    assert len(reconciler.calls) == 1
    await controller.on_event(with_finalizer, "MODIFIED")  # our status write's own event
    assert len(reconciler.calls) == 1, "only the finalizer's arrival converges"


# ---- reconcilers built on first use (no heavy imports for kinds without objects) ---------------

HEAVY = ("numpy", "scipy", "sklearn", "authlib", "intelligence", "google.cloud.run_v2")

LOAD_AND_TOUCH = """
import asyncio, json, sys
from types import SimpleNamespace
import controllers.runtime as runtime
from controllers.core.context import OperatorContext, registered
from controllers.settings import OperatorSettings

runtime.load_handlers()
import controllers.scalingpolicy.handlers as sp

async def main():
    ctx = OperatorContext.create(OperatorSettings(), client=object(), kinds=registered())
    hpa = {"metadata": {"name": "h", "namespace": "ns", "uid": "h1"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "crm"}}}
    await sp.on_hpa(body=hpa, type="ADDED", memo=SimpleNamespace(ctx=ctx))
    idle = sorted(m for m in HEAVY if m in sys.modules)
    built = sorted(k.kind for k, c in ctx.controllers.items() if c.built)
    ctx.controllers[sp.KIND].reconciler  # a policy appeared: now it is imported
    touched = sorted(m for m in HEAVY if m in sys.modules)
    print(json.dumps({"idle": idle, "built": built, "touched": touched}))

HEAVY = %r
asyncio.run(main())
"""


def test_an_operator_without_policies_or_rollouts_never_imports_numpy_scipy_sklearn() -> None:
    """All four kinds' handlers loaded and the context made (as at startup), an HPA event
    seen: none of the heavy libraries is imported; the ScalingPolicy reconciler, once asked
    for (its first policy), imports them (so the check sees what it claims to)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run(
        [sys.executable, "-c", LOAD_AND_TOUCH % (HEAVY,)],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["idle"] == []
    assert seen["built"] == []
    assert {"numpy", "scipy", "intelligence"} <= set(seen["touched"])


def test_the_scalingpolicy_reconciler_loads_no_scipy_stats_or_sklearn() -> None:
    """Memory at 1,000 policies (docs/scalingpolicy.md): scipy.stats alone (and the
    scipy.optimize / linalg / spatial it pulls in) is ~46 MB of RSS, for one normal quantile
    that scipy.special gives; scikit-learn is more. The forecasting models need neither."""
    import json
    import subprocess
    import sys

    script = (
        "import json, sys; import controllers.scalingpolicy.reconciler; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] == 'sklearn' or m.startswith('scipy.stats'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


async def test_the_reconciler_is_built_on_the_first_converge_only() -> None:
    client = FakeClient({"crm": _body()})
    built: list[FakeReconciler] = []

    def build() -> FakeReconciler:
        built.append(FakeReconciler())
        return built[-1]

    controller = _controller(client, FakeReconciler())
    controller.build = build
    controller._reconciler = None
    child = {"metadata": {"name": "c", "namespace": "ns", "ownerReferences": []}}
    await controller.on_child_event("Deployment", child, "ADDED")  # not ours: nothing built
    assert built == []
    assert not controller.built
    await controller.converge(_key())
    await controller.converge(_key())
    assert len(built) == 1
    assert len(built[0].calls) == 2


def test_handlers_name_the_same_kind_as_their_reconcilers() -> None:
    """Each handlers module names its kind from the `apis` model (so it need not import the
    reconciler); it must be the kind the reconciler converges."""
    import importlib

    for kind in ("xynergyservice", "scalingpolicy", "rollout", "oauthconnection"):
        handlers = importlib.import_module(f"controllers.{kind}.handlers")
        reconciler = importlib.import_module(f"controllers.{kind}.reconciler")
        assert handlers.KIND == reconciler.KIND, kind


# ---- a deletion that waits (Controller.finalize_waiting) ----------------------------------------


@dataclass
class HeldRelease(FakeReconciler):
    """A release held `held` times (an Event each time, and a status saying why), then done."""

    held: int = 0
    releases: int = 0

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:  # type: ignore[override]
        self.releases += 1
        if self.releases <= self.held:
            return False, Event("Normal", "DeletionWaiting", "waits for the target")
        return True, None

    def deletion_status(self, body: Mapping[str, Any]) -> XynergyServiceStatus:
        return _ready_status("being deleted: waits for the target")


def _deleting(client: FakeClient) -> dict[str, Any]:
    from controllers.core.controller import FINALIZER

    body = _body()
    body["metadata"].update(finalizers=[FINALIZER], deletionTimestamp="2026-11-27T00:00:00Z")
    client.objects["crm"] = body
    return body


async def test_a_held_deletion_is_retried_with_a_bounded_backoff_until_released() -> None:
    """kopf's TemporaryError logged each try at ERROR (an Error Event each): the wait is now
    the core's, each try reading the object first, the waits growing to a bound, the status
    saying why written once, and only the release's own Events posted, each reason once."""
    from controllers.core.controller import DELETION_BACKOFF

    client = FakeClient()
    body = _deleting(client)
    reconciler = HeldRelease(held=7)
    controller = _controller(client, reconciler)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    gets = client.gets
    await controller.finalize_waiting(body, sleep=sleep)
    assert reconciler.releases == 8
    assert len(slept) == 7
    assert client.gets - gets == 7, "one read of the object per retry"
    for attempt, seconds in enumerate(slept):
        base = DELETION_BACKOFF.base(attempt)
        assert base / 2 <= seconds <= base <= DELETION_BACKOFF.maximum
    assert slept[-1] >= DELETION_BACKOFF.maximum / 2 > slept[0]
    statuses = [p["status"]["conditions"] for p in client.patches]
    assert len(statuses) == 1, "the same waiting status is written once, not per try"
    assert "being deleted" in statuses[0][0]["message"]
    assert [e.reason for e in client.created] == ["DeletionWaiting"], (
        "the release says the same reason on each held try: the core posts it once"
    )


async def test_a_held_deletion_stops_when_its_finalizer_is_removed_by_hand() -> None:
    client = FakeClient()
    body = _deleting(client)
    reconciler = HeldRelease(held=100)
    controller = _controller(client, reconciler)

    async def sleep(seconds: float) -> None:
        if reconciler.releases == 2:
            client.objects["crm"]["metadata"]["finalizers"] = []  # kubectl patch

    await controller.finalize_waiting(body, sleep=sleep)
    assert reconciler.releases == 2


async def test_a_held_deletion_does_not_act_while_this_replica_is_paused() -> None:
    client = FakeClient()
    body = _deleting(client)
    reconciler = HeldRelease(held=0)
    controller = _controller(client, reconciler)
    controller.scheduler.gate.pause()
    tries: list[int] = []

    async def sleep(seconds: float) -> None:
        tries.append(reconciler.releases)
        if len(tries) == 3:
            controller.scheduler.gate.resume()

    await controller.finalize_waiting(body, sleep=sleep)
    assert tries == [0, 0, 0]
    assert reconciler.releases == 1


@dataclass
class Reasons(FakeReconciler):
    """A release held with the reason `reason` names (its Event on every try, the status
    saying it), as the kinds' releases do."""

    reason: str = "waits for the target"

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:  # type: ignore[override]
        return False, Event("Normal", "DeletionWaiting", self.reason)

    def deletion_status(self, body: Mapping[str, Any]) -> XynergyServiceStatus:
        status = XynergyServiceStatus.model_validate(body.get("status") or {})
        status.conditions = mark_reconciling(
            status.conditions, reason="Deleting", message=f"being deleted: {self.reason}",
            generation=3, now=NOW,
        )  # fmt: skip
        return status


async def test_a_held_deletion_says_each_reason_once_and_a_restart_does_not_say_it_again() -> None:
    """Each kind kept its own "said once" dict, per process: a restarted operator posted the
    Event of a deletion that was already waiting again. The core says each reason once, and a
    new process reads what was said from the status the wait wrote (Reconciling `Deleting`)."""
    client = FakeClient()
    body = _deleting(client)
    body["status"] = _ready_status().model_dump(by_alias=True, mode="json", exclude_none=True)
    reconciler = Reasons()
    first = _controller(client, reconciler)
    for _ in range(3):
        assert not await first.finalize(client.objects["crm"])
    assert [e.message for e in client.created] == ["waits for the target"]
    reconciler.reason = "the target is rolling"
    assert not await first.finalize(client.objects["crm"])
    assert not await first.finalize(client.objects["crm"])
    said = [e.message for e in client.created]
    assert said == ["waits for the target", "the target is rolling"], "a new reason is said"

    restarted = _controller(client, Reasons(reason="the target is rolling"))
    assert not await restarted.finalize(client.objects["crm"])
    assert [e.message for e in client.created] == said, "the status says it already"
    assert len(client.patches) == 2, "the status was written once per reason"

    # what the stored status does not say yet is news to a restarted operator too
    moved = _controller(client, Reasons(reason="the target is gone"))
    assert not await moved.finalize(client.objects["crm"])
    assert [e.message for e in client.created][-1] == "the target is gone"
    assert body["metadata"]["uid"] == client.objects["crm"]["metadata"]["uid"]


@dataclass
class ErrorText(FakeReconciler):
    """A release held by an error whose text changes between tries, its reason not (as the
    Rollout's `DeletionBlocked`: `Event.key` the error's reason), the status naming the text."""

    text: str = "503 service unavailable"

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:  # type: ignore[override]
        return False, Event(
            "Warning", "DeletionBlocked", f"blocked: {self.text}", key="Unavailable"
        )

    def deletion_status(self, body: Mapping[str, Any]) -> XynergyServiceStatus:
        status = XynergyServiceStatus.model_validate(body.get("status") or {})
        status.conditions = mark_reconciling(
            status.conditions, reason="Deleting", message=f"being deleted: {self.text}",
            generation=3, now=NOW,
        )  # fmt: skip
        return status


async def test_a_new_error_text_is_said_once_in_process_and_after_a_restart_alike() -> None:
    """In-process a held deletion's Event was keyed by its error's reason, while a restarted
    operator compared the stored status's message: a new error text of the same reason was not
    said in-process, yet said once more after a restart. Both now key by what the status says:
    each new text once (the status changes with it), nothing again for a text already said,
    whether the process restarted in between or not."""
    texts = ["503 service unavailable", "503 service unavailable", "503 upstream connect error"]
    texts += ["503 upstream connect error"]

    async def said(restart_before: set[int]) -> list[str]:
        client = FakeClient()
        body = _deleting(client)
        body["status"] = _ready_status().model_dump(by_alias=True, mode="json", exclude_none=True)
        controller = _controller(client, ErrorText())
        for i, text in enumerate(texts):
            if i in restart_before:
                controller = _controller(client, ErrorText())
            controller.reconciler.text = text  # type: ignore[attr-defined]
            assert not await controller.finalize(client.objects["crm"])
        return [e.message for e in client.created]

    expected = ["blocked: 503 service unavailable", "blocked: 503 upstream connect error"]
    assert await said(set()) == expected, "in-process: each new text once"
    assert await said({1}) == expected, "a restart at the same text says nothing again"
    assert await said({2}) == expected, "a restart at a new text says it once, as in-process"
    assert await said({1, 2, 3}) == expected


def test_said_once_keys_by_the_status_record_in_process_and_from_the_stored_status() -> None:
    """`SaidOnce.news`: the key is the record (what the status says) when given, else the
    Event's `news_key`; with nothing said in this process, the stored record is what was said."""
    event = Event("Warning", "DeletionBlocked", "blocked: a", key="Unavailable")
    other_text = Event("Warning", "DeletionBlocked", "blocked: b", key="Unavailable")
    once = SaidOnce()
    assert once.news("u", event, record="Deleting: a")
    assert not once.news("u", event, record="Deleting: a")
    assert once.news("u", other_text, record="Deleting: b"), "the status says something new"
    assert not once.news("u", other_text, record="Deleting: b")

    restarted = SaidOnce()
    assert not restarted.news("u", other_text, record="Deleting: b", stored="Deleting: b")
    assert not restarted.news("u", other_text, record="Deleting: b", stored="Deleting: b")
    moved = SaidOnce()
    assert moved.news("u", other_text, record="Deleting: b", stored="Deleting: a")
    assert not moved.news("u", other_text, record="Deleting: b", stored="Deleting: a")

    statusless = SaidOnce()  # no status written with it: the Event's own key
    assert statusless.news("u", event)
    assert not statusless.news("u", other_text), "the same reason (Event.key)"
    assert statusless.news("u", Event("Normal", "DeletionWaiting", "waits"))


async def test_a_held_deletion_is_said_again_once_its_wait_ended_and_a_new_one_began() -> None:
    client = FakeClient()
    _deleting(client)
    reconciler = HeldRelease(held=1)
    controller = _controller(client, reconciler)
    assert not await controller.finalize(client.objects["crm"])
    assert await controller.finalize(client.objects["crm"])
    reconciler.releases = 0  # the same uid held again (a test of the record's end only)
    assert not await controller.finalize(client.objects["crm"])
    assert [e.reason for e in client.created] == ["DeletionWaiting", "DeletionWaiting"]


def test_a_retry_wait_stays_at_its_maximum_however_many_attempts_failed() -> None:
    """A deletion may wait for hours (`finalize_waiting` counts its tries): the wait grows
    as initial * multiplier**n up to `maximum` and stays there; the power used to be taken
    before the cap, and past ~1,000 doublings it overflowed (OverflowError into kopf)."""
    policy = RetryPolicy(initial=2.0, maximum=30.0)
    assert [policy.base(n) for n in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    for attempt in (1_100, 10**6):
        assert policy.base(attempt) == 30.0
        assert 15.0 <= policy.delay(attempt, random.Random(1)) <= 30.0
    assert RetryPolicy(initial=1.5, maximum=1.5).base(5000) == 1.5
    assert RetryPolicy(initial=1.0, maximum=9.0, multiplier=3.0).base(2) == 9.0
    assert RetryPolicy(initial=1.0, maximum=10.0, multiplier=1.0).base(10**9) == 1.0


async def test_two_error_texts_that_alternate_are_said_once_each_per_wait() -> None:
    """A held deletion whose error text alternates between two of the same reason (a
    ReadTimeout, a ConnectTimeout) says each once during the wait; only the last key was kept
    before, so every try posted an Event (A/B/A/B). A new wait says them again."""
    client = FakeClient()
    body = _deleting(client)
    body["status"] = _ready_status().model_dump(by_alias=True, mode="json", exclude_none=True)
    controller = _controller(client, ErrorText())
    texts = ["ApiUnreachable: ReadTimeout", "ApiUnreachable: ConnectTimeout"] * 5
    for text in texts:
        controller.reconciler.text = text  # type: ignore[attr-defined]
        assert not await controller.finalize(client.objects["crm"])

    expected = ["blocked: ApiUnreachable: ReadTimeout", "blocked: ApiUnreachable: ConnectTimeout"]
    assert [e.message for e in client.created] == expected

    controller.forget(body["metadata"]["uid"])  # the wait ended (the object gone)
    controller.reconciler.text = texts[0]  # type: ignore[attr-defined]
    assert not await controller.finalize(client.objects["crm"])
    assert [e.message for e in client.created] == [*expected, expected[0]]


def test_said_once_remembers_a_bounded_set_of_keys_per_wait() -> None:
    """Each distinct key once per wait, whatever the order; the set is bounded (the oldest
    key goes first) and cleared by `forget`; seeded by the stored record."""
    a = Event("Warning", "Blocked", "a", key="K")
    once = SaidOnce(limit=3)
    assert [once.news("u", a, record=r) for r in ("A", "B", "A", "B")] == [True, True, False, False]
    assert once.news("u", a, record="C")
    assert once.news("u", a, record="D")  # A, the oldest, goes: 3 kept
    assert not once.news("u", a, record="B")
    assert once.news("u", a, record="A")
    once.forget("u")
    assert once.news("u", a, record="B"), "a new wait"

    restarted = SaidOnce()
    assert not restarted.news("u", a, record="B", stored="B")
    assert restarted.news("u", a, record="A", stored="B")
    assert not restarted.news("u", a, record="B", stored="B")


@dataclass
class StalledHold(FakeReconciler):
    """A release held until the user acts, its status saying so with Stalled (not
    Reconciling), as an OAuthConnection's with bad operator settings."""

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:  # type: ignore[override]
        return False, Event("Warning", "InvalidSettings", "bad settings", key="InvalidSettings")

    def deletion_status(self, body: Mapping[str, Any]) -> XynergyServiceStatus:
        status = XynergyServiceStatus.model_validate(body.get("status") or {})
        status.conditions = mark_stalled(
            status.conditions, reason="InvalidSettings",
            message="bad settings; the deletion waits", generation=3, now=NOW,
        )  # fmt: skip
        return status


async def test_a_deletion_held_with_a_stalled_status_is_not_said_again_after_a_restart() -> None:
    """The key of a held deletion whose status says Stalled (no Reconciling) is read back
    from the stored status too: a restarted operator does not post its Warning again. Before,
    only a Reconciling condition seeded it, so every restart posted it once more."""
    client = FakeClient()
    body = _deleting(client)
    body["status"] = _ready_status().model_dump(by_alias=True, mode="json", exclude_none=True)
    first = _controller(client, StalledHold())
    for _ in range(3):
        assert not await first.finalize(client.objects["crm"])
    assert [e.reason for e in client.created] == ["InvalidSettings"]

    for _ in range(2):
        restarted = _controller(client, StalledHold())
        assert not await restarted.finalize(client.objects["crm"])
    assert [e.reason for e in client.created] == ["InvalidSettings"], "said again on restart"
