"""The converge path every kind shares: one frame, the kind fills in `reconcile`.

A kind provides a `KindReconciler` (observe, decide, act -> one `Result`); the `Controller`
runs it for every trigger the same way: serialized per object (`ObjectQueue`), on the latest
object read from the apiserver, then the status written through the one `StatusWriter`,
events posted, and the next resync scheduled (healthy: the resync period with jitter; not yet
ready: soon; failed: the retry policy's backoff). An object that is gone (or being deleted) is
forgotten: no bookkeeping stays behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from lightkube import ApiError, AsyncClient
from lightkube.core.resource import NamespacedResourceG
from lightkube.generic_resource import create_namespaced_resource
from pydantic import BaseModel

from apis.v1alpha1.common import GROUP, VERSION, Resource
from controllers.core.children import ChildCache
from controllers.core.events import Event, EventRecorder, SaidOnce
from controllers.core.queue import ObjectQueue
from controllers.core.retry import RetryPolicy, Sleep
from controllers.core.scheduler import ObjectKey, ResyncScheduler
from controllers.core.status import StatusWriter

__all__ = [
    "DELETION_BACKOFF",
    "DRIFT_CHECK_ANNOTATION",
    "FINALIZER",
    "MIN_DRIFT_CHECK_SECONDS",
    "RESYNC_ANNOTATION",
    "ChildEvent",
    "Controller",
    "Kind",
    "KindReconciler",
    "Requeue",
    "Result",
]

log = logging.getLogger(__name__)

FINALIZER = "xynergy.io/finalizer"
"""The finalizer kopf adds for kinds whose deletion needs us (`KindReconciler.needs_finalizer`)."""

DELETION_BACKOFF = RetryPolicy(initial=2.0, maximum=30.0)
"""Between two releases of an object whose deletion waits (`Controller.finalize_waiting`):
1-2 s, doubling to 15-30 s (equal jitter)."""

DELETION_STATUS = "deletion_status"
"""Optional method of a `KindReconciler`: `deletion_status(body) -> BaseModel | None`, the
status of an object whose deletion its last `release` held (what the deletion waits for and
why: `Reconciling` True with its message), written while it waits; None writes nothing. It is
also the record of what was said: a held release's Event whose status the stored one already
shows is not posted again, after a restart too (`SaidOnce`)."""

DRIFT_CHECK_ANNOTATION = "xynergy.io/drift-check-interval"
"""Per-object resync period in seconds (overrides the operator's default; at least
`MIN_DRIFT_CHECK_SECONDS`)."""

MIN_DRIFT_CHECK_SECONDS = 10.0
"""The shortest per-object period: each check is a full converge (a Cloud Run GET, say)."""


@dataclass(frozen=True)
class Kind:
    """A namespaced custom resource kind the operator reconciles."""

    group: str
    version: str
    kind: str
    plural: str

    @cached_property
    def resource(self) -> type[NamespacedResourceG]:
        """The lightkube resource class of the kind (and its /status subresource)."""
        return create_namespaced_resource(self.group, self.version, self.kind, self.plural)

    @classmethod
    def of(cls, model: type[Resource[Any, Any]]) -> Kind:
        """The Kind of an `apis` resource model (its CRD's kind and plural), so a kind's
        handlers module can name it without importing the kind's reconciler."""
        return cls(GROUP, VERSION, model.crd.kind, model.crd.plural)

    def key(self, body: Mapping[str, Any]) -> ObjectKey:
        """The object's key from its body."""
        meta = body.get("metadata") or {}
        return ObjectKey(self.kind, meta.get("namespace"), str(meta["name"]), str(meta["uid"]))


@dataclass(frozen=True)
class ChildEvent:
    """What a watched child reported: its body (the latest we know) or that it was deleted."""

    kind: str
    body: Mapping[str, Any]
    deleted: bool = False


class Requeue(enum.Enum):
    """When to check the object again."""

    RESYNC = "resync"
    """Converged: at the resync period (with jitter)."""
    SOON = "soon"
    """Progressing (rolling out): in about `soon_seconds`."""
    BACKOFF = "backoff"
    """Failed or stalled: after the retry policy's backoff."""


@dataclass(frozen=True)
class Result:
    """What one converge decided: the status to write, events to post, when to come back."""

    status: BaseModel
    events: Sequence[Event] = ()
    requeue: Requeue = Requeue.RESYNC
    volatile: frozenset[str] = field(default_factory=frozenset)
    """Status fields that changing alone is no reason to write (e.g. counts mid-rollout)."""
    requeue_after: float | None = None
    """With `Requeue.RESYNC`: check again in exactly this many seconds (no jitter), for kinds
    that sync on their own period (a ScalingPolicy's `interval`) and spread their objects.
    With `Requeue.BACKOFF`: at most this many seconds (the backoff capped), for a retry that
    must come before something lapses (an OAuthConnection's refresh claim)."""


class KindReconciler(Protocol):
    """What a kind provides: its Kind and one level-based converge of one object."""

    kind: Kind

    async def reconcile(
        self, body: Mapping[str, Any], *, now: dt.datetime, child: ChildEvent | None
    ) -> Result:
        """Observe, decide, act; never raise for what status can report."""
        ...

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:
        """Deletion of an object that carries our finalizer: release or delete what it made;
        (True once it is all gone, an event to post)."""
        ...


TRIGGER_ANNOTATIONS = "trigger_annotations"
"""Optional attribute of a `KindReconciler`: annotation keys whose change converges the object
(annotations do not move the generation; e.g. a Rollout's `xynergy.io/rollout-action`)."""

CACHED_CHILDREN = "cached_children"
"""Optional attribute of a `KindReconciler`: the child kinds (`on_child_event`'s `kind`) whose
watched bodies the controller keeps in its `ChildCache`, for a converge prompted by a child
event to read instead of the apiserver."""

RESYNC_ANNOTATION = "xynergy.io/resync-requested"
"""Every kind converges when this changes (as Flux's `reconcile.fluxcd.io/requestedAt`): what
Argo CD's `resync` action and `kubectl annotate` write to ask for a reconcile now."""


@dataclass
class Controller:
    """Runs one kind's reconciler for every trigger, the same way.

    The reconciler is built by `build` on first use: a kind with no objects never builds it,
    so its libraries (numpy, scipy, scikit-learn, cloud clients) are never imported."""

    kind: Kind
    build: Callable[[], KindReconciler]
    client: AsyncClient
    queue: ObjectQueue
    scheduler: ResyncScheduler
    writer: StatusWriter
    recorder: EventRecorder
    resync_seconds: float = 600.0
    soon_seconds: float = 20.0
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    rng: random.Random = field(default_factory=random.Random)
    children: ChildCache = field(default_factory=ChildCache)
    """The newest watched bodies of the children of the kinds the reconciler names in its
    `cached_children` (shared by every kind's controller)."""
    _annotations: dict[str, tuple[str | None, ...]] = field(default_factory=dict, repr=False)
    """Per object: the values of the kind's trigger annotations last seen."""
    _reconciler: KindReconciler | None = field(default=None, repr=False)
    _said: SaidOnce = field(default_factory=SaidOnce, repr=False)
    """Per object whose deletion waits: what its held releases said (each reason once)."""
    _again: dict[str, ChildEvent | None] = field(default_factory=dict, repr=False)
    """Objects triggered while a converge of theirs ran, with the newest child event among
    those triggers: converged once more after it (its own requeue must not replace that), as
    an event's converge (the delivered body, that child event)."""
    _unfinalized: set[str] = field(default_factory=set, repr=False)
    """Objects an event found without the finalizer they need (nothing was converged): the
    event that shows it in place converges them, whatever their generation says (an object
    with a status from before its kind needed a finalizer, e.g. after an upgrade)."""
    _seen: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    """Per object: its body as its own watch last delivered it (without managedFields), read
    by an event's converge instead of a GET, as controller-runtime reads its informer's
    cache. The scheduler's checks still read the object (a deletion the watch missed while it
    was re-listing is found at the resync). Dropped after each status write of ours (a
    converge then reads the object until the write's own event arrives) and when the object
    goes."""

    @property
    def reconciler(self) -> KindReconciler:
        """The kind's reconciler, built on first use."""
        if self._reconciler is None:
            self._reconciler = self.build()
        return self._reconciler

    @property
    def built(self) -> bool:
        """Whether the reconciler exists yet (an object of the kind has been seen)."""
        return self._reconciler is not None

    async def converge(
        self, key: ObjectKey, *, child: ChildEvent | None = None, seen: bool = False
    ) -> Result | None:
        """The one path: read the latest object (with `seen`, as its watch last delivered it
        when it did), reconcile, write status, post events, schedule the next check. None when
        the object is gone or being deleted, and when this replica is paused by peering: then
        nothing is read or written, and the object stays due so that its check runs as soon as
        this replica acts."""
        if not self.scheduler.gate.active:
            self.scheduler.schedule(key, 0)
            return None
        async with self.queue.serialized(key.uid):
            if key.uid in self._again:  # events came while a converge ran: this is theirs
                queued = self._again.pop(key.uid)
                child, seen = child or queued, True
            body = (self._seen.get(key.uid) if seen else None) or await self._read(key)
            if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                self.forget(key.uid, gone=body is None)
                return None
            result = await self.reconciler.reconcile(body, now=self.clock(), child=child)
            if await self.writer.write(
                self.kind.resource, body, result.status, volatile=result.volatile
            ):
                self._seen.pop(key.uid, None)
            await self.recorder.post(body, result.events)
            self._requeue(key, body, result.requeue, result.requeue_after)
            if key.uid in self._again:  # triggered while this ran: once more, now
                self.scheduler.schedule(key, 0)
                self.scheduler.start_due()
            return result

    async def trigger(self, key: ObjectKey, *, child: ChildEvent | None = None) -> None:
        """Converge on an event; a failure is retried by the scheduler with backoff (kopf
        does not retry event handlers), so no event is lost to a passing error.

        Triggers of one object coalesce as in a client-go work queue. While a converge of it
        waits to start, another trigger adds nothing (that converge reads the newest object).
        While one runs, the trigger makes the object due again at once and returns: the
        scheduler converges it once more after the running one, however many events arrive
        meanwhile, as an event's converge (the body the watch delivered, the newest child
        event: a Deployment's events while it becomes Ready are not a slow rollout's check,
        which reads the object and lists its Pods), and kopf's worker for the triggering
        object is not held (kopf hands every event of an object to its handler in turn, so a
        held worker replays its backlog one converge per stale event). When the apiserver
        goes away each object fails once or twice, not once per queued event, before the
        scheduler's backoff takes over."""
        if self.queue.waiting(key.uid):
            if key.uid in self._again and child is not None:
                self._again[key.uid] = child  # the queued converge is this event's too
            return
        if self.queue.busy(key.uid):
            self._again[key.uid] = child or self._again.get(key.uid)
            self.scheduler.schedule(key, 0)
            self.scheduler.start_due()
            return
        try:
            await self.converge(key, child=child, seen=True)
        except Exception as exc:
            delay = self.scheduler.failed(key)
            log.warning(
                "%s %s/%s: converge failed (%s: %s); retrying in %.1fs",
                key.kind, key.namespace, key.name, type(exc).__name__, exc, delay,
            )  # fmt: skip

    async def on_event(self, body: Mapping[str, Any], event: str | None) -> None:
        """An event of the object itself. Converges on the initial listing (a restart resumes
        every object), on creation and on spec changes (generation ahead of
        observedGeneration) or a change of one of the kind's trigger annotations; forgets the
        object when it is deleted. Our own status writes (generation == observedGeneration,
        annotations as they were) cause nothing."""
        key = self.kind.key(body)
        if event == "DELETED":
            self.forget(key.uid)
            return
        self._remember(key.uid, body)
        meta = body.get("metadata") or {}
        if self._needs_finalizer(body) and FINALIZER not in (meta.get("finalizers") or []):
            self._unfinalized.add(key.uid)
            return  # nothing is made before kopf's finalizer is in place; its event converges
        finalized = key.uid in self._unfinalized
        self._unfinalized.discard(key.uid)
        annotated = self._annotations_changed(key.uid, meta)
        if event == "MODIFIED" and not annotated and not finalized:
            generation = meta.get("generation")
            if generation == (body.get("status") or {}).get("observedGeneration"):
                return
        await self.trigger(key)

    def _annotations_changed(self, uid: str, meta: Mapping[str, Any]) -> bool:
        """Whether a trigger annotation's value differs from the one last seen (recorded)."""
        declared = getattr(self.reconciler, TRIGGER_ANNOTATIONS, ()) or ()
        keys: Sequence[str] = sorted({RESYNC_ANNOTATION, *declared})
        annotations = meta.get("annotations") or {}
        values = tuple(annotations.get(k) for k in keys)
        before = self._annotations.get(uid)
        self._annotations[uid] = values
        return before is not None and before != values

    async def on_child_event(self, kind: str, body: Mapping[str, Any], event: str | None) -> None:
        """An event of a child we own (its controller owner reference names us): converge
        the owner with what the child reported, so drift or deletion is corrected at once.
        The initial listing converges nothing (the owners' own listing converges them); every
        event, the listing's too, updates the child cache when the kind caches that child."""
        meta = body.get("metadata") or {}
        owner = next(
            (
                o
                for o in meta.get("ownerReferences") or []
                if o.get("kind") == self.kind.kind and o.get("controller")
            ),
            None,
        )
        if owner is None:
            return
        if kind in (getattr(self.reconciler, CACHED_CHILDREN, None) or ()):
            if event == "DELETED":
                self.children.drop(kind, body)
            else:
                self.children.put(kind, body)
        if event is None:
            return
        key = ObjectKey(self.kind.kind, meta.get("namespace"), owner["name"], owner["uid"])
        await self.trigger(key, child=ChildEvent(kind, body, deleted=event == "DELETED"))

    async def finalize(self, body: Mapping[str, Any]) -> bool:
        """Run the kind's release for an object being deleted (serialized with its other
        triggers); True once the finalizer may go, and then the object is forgotten. While
        it is held, the kind's `deletion_status` (if any) is written: the status says what
        the deletion waits for. A held release may return its Event on every try: it is
        posted once per distinct key during the wait (what this try's status says, else
        `Event.news_key`; `SaidOnce`), also when two keys alternate, and not at all when the
        stored status already says what this try's status says (it was posted before, by
        this process or before a restart)."""
        key = self.kind.key(body)
        async with self.queue.serialized(key.uid):
            gone, event = await self.reconciler.release(body)
            if gone:
                self._said.forget(key.uid)
            else:
                held = getattr(self.reconciler, DELETION_STATUS, None)
                status = held(body) if callable(held) else None
                written = (
                    status.model_dump(by_alias=True, mode="json", exclude_none=True)
                    if status is not None
                    else None
                )
                record = _record(written)
                stored = _record(body.get("status")) if record is not None else None
                if event is not None and not self._said.news(
                    key.uid, event, record=record, stored=stored
                ):
                    event = None
                if status is not None:
                    await self.writer.write(self.kind.resource, body, status)
        await self.recorder.post(body, [event] if event else [])
        if gone:
            self.forget(key.uid)
        return gone

    async def finalize_waiting(
        self,
        body: Mapping[str, Any],
        *,
        backoff: RetryPolicy = DELETION_BACKOFF,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`finalize` until the release lets the object go, waiting `backoff` between tries:
        for a kopf delete handler whose release may wait a while for something normal (a
        target rolling out). kopf's own retry (raising `kopf.TemporaryError`) logs every try
        at ERROR, which its log-to-event posting (on at ERROR, runtime.py) turns into an
        Error Event per try, and writes two annotations per try; neither its posting level
        nor a handler's `backoff` (arbitrary exceptions only, also logged at ERROR) changes
        that. Here the wait says nothing but what the reconciler says (an Event per reason,
        the status). Returns when the release is done, or when the object is gone or its
        finalizer was removed by hand (nothing left to hold). Each try reads the object
        first; none acts while this replica is paused by peering."""
        key, attempt = self.kind.key(body), 0
        while True:
            if self.scheduler.gate.active and await self.finalize(body):
                return
            await sleep(backoff.delay(attempt, self.rng))
            attempt += 1
            latest = await self._read(key)
            if latest is None or FINALIZER not in (
                (latest.get("metadata") or {}).get("finalizers") or []
            ):
                self.forget(key.uid)
                return
            body = latest

    def _needs_finalizer(self, body: Mapping[str, Any]) -> bool:
        """A kind whose deletion needs its `release` says so with an optional
        `needs_finalizer(body)` (kopf then adds FINALIZER before anything is made)."""
        check = getattr(self.reconciler, "needs_finalizer", None)
        return bool(check(body)) if callable(check) else False

    def forget(self, uid: str, *, gone: bool = True) -> None:
        """Drop the object's schedule and what was seen of it (its lock goes by itself);
        `gone=False` for an object being deleted that is still there: what its held deletion
        said is kept for the next try."""
        if gone:
            self._said.forget(uid)
        self.scheduler.forget(uid)
        self._annotations.pop(uid, None)
        self._seen.pop(uid, None)
        self._again.pop(uid, None)
        self._unfinalized.discard(uid)
        self.children.forget(uid)

    def _remember(self, uid: str, body: Mapping[str, Any]) -> None:
        """Keep the body an event of the object delivered (a plain dict; managedFields, often
        the larger part of an object, are never read by a reconciler)."""
        meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
        self._seen[uid] = {**body, "metadata": meta}

    async def _read(self, key: ObjectKey) -> dict[str, Any] | None:
        try:
            obj: Any = await self.client.get(self.kind.resource, key.name, namespace=key.namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        body: dict[str, Any] = obj.to_dict()
        if str((body.get("metadata") or {}).get("uid")) != key.uid:
            return None  # deleted and recreated: the new object has its own key and events
        return body

    def _requeue(
        self,
        key: ObjectKey,
        body: Mapping[str, Any],
        requeue: Requeue,
        after: float | None = None,
    ) -> None:
        if requeue is Requeue.BACKOFF:
            self.scheduler.failed(key, at_most=after)
        elif requeue is Requeue.SOON:
            self.scheduler.succeeded(key, self.soon_seconds + self.rng.uniform(0, 5))
        elif after is not None:
            self.scheduler.succeeded(key, max(0.0, after))
        else:
            interval = self._interval(body)
            self.scheduler.succeeded(key, interval + self.rng.uniform(0, 0.1 * interval))

    def _interval(self, body: Mapping[str, Any]) -> float:
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        try:
            value = float(annotations.get(DRIFT_CHECK_ANNOTATION, self.resync_seconds))
        except ValueError:
            return self.resync_seconds
        if not math.isfinite(value) or value <= 0:
            return self.resync_seconds
        return max(value, MIN_DRIFT_CHECK_SECONDS)


def _record(status: Any) -> str | None:
    """What a status (a body's `status`, or one dumped) says of a held deletion, as the key
    `SaidOnce` compares: its `Reconciling` True condition's reason and message (a deletion
    that waits for something normal), else its `Stalled` True one's (one that waits for the
    user: an OAuthConnection's with bad operator settings); None without either."""
    said = _true(status, "Reconciling") or _true(status, "Stalled")
    return None if said is None else f"{said[0]}: {said[1]}"


def _true(status: Any, type_: str) -> tuple[str | None, str | None] | None:
    conditions = (status or {}).get("conditions") if isinstance(status, Mapping) else None
    for cond in conditions or ():
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            if cond.get("status") != "True":
                return None
            return cond.get("reason"), cond.get("message")
    return None
