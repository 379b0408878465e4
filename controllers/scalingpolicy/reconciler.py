"""One sync of one ScalingPolicy: read the load, decide, act, report -> one `Result`.

Each policy syncs at its `interval` (the core scheduler brings it back at its next slot, an
offset by uid so a thousand policies spread over the interval; all policies share the
scheduler's bounded concurrency). A sync: refuse to fight (another policy or an HPA on the
target: Stalled naming it; a dry run plans on and says so), read the target (paused: Ready=False
TargetPaused, nothing done), read the load now (metrics unavailable: hold the current count
within the bounds, Degraded and Ready=False, never scale to zero or to min for missing data),
refit the forecast model when due (`models`), `intelligence.scaling.decide` with the HPA
behaviour state kept in status (so a restart cannot jump), then patch the target's scale
subresource unless `dryRun`. A dry run decides from its own last plan as if it had acted, so
it reports the plan the policy would follow. No kopf here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import httpx2
from lightkube import ApiError
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.types import PatchType
from pydantic import ValidationError

from apis.base import parse_duration
from apis.conditions import get_condition
from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.scalingpolicy import (
    MIN_INTERVAL,
    ScaledTarget,
    ScalingMode,
    ScalingPolicy,
    ScalingPolicyStatus,
)
from apis.v1alpha1.xynergyservice import Backend
from controllers.core.context import OperatorContext
from controllers.core.controller import ChildEvent, Controller, Kind, Requeue, Result
from controllers.core.errors import ProviderError, StalledError, TransientError
from controllers.core.events import Event
from controllers.core.scheduler import ObjectKey
from controllers.core.status import spec_error
from controllers.providers.kubernetes import api_error
from controllers.providers.metrics import MetricsError, MetricsProvider, Samples
from controllers.providers.prometheus import range_step
from controllers.scalingpolicy import status as st
from controllers.scalingpolicy.conflicts import Conflict, TargetIndex
from controllers.scalingpolicy.metrics import (
    DECISIONS,
    FALLBACKS,
    FORECAST_ERROR,
    SYNC_LATENESS,
    SYNC_SECONDS,
)
from controllers.scalingpolicy.models import FitKey, Fitted, ModelCache
from controllers.scalingpolicy.params import forecast_quantile, scaling_params
from controllers.scalingpolicy.sources import Metrics, metric_sources
from controllers.scalingpolicy.state import StateCache, same_for_decisions
from controllers.scalingpolicy.target import (
    TARGETS,
    NotAppliedError,
    ScaleTarget,
    Target,
    TargetCache,
    TargetClient,
)
from intelligence.scaling import (
    Decision,
    Observation,
    ScalingParams,
    ScalingState,
    bounds_at,
    decide,
)

__all__ = [
    "KIND",
    "Metrics",
    "ScalingPolicyReconciler",
    "from_context",
    "hpa_event",
    "policy_event",
    "sync_offset",
]

log = logging.getLogger(__name__)

KIND = Kind(GROUP, VERSION, "ScalingPolicy", "scalingpolicies")
XS_KIND = Kind(GROUP, VERSION, "XynergyService", "xynergyservices")
Target_ = tuple[str, str]

MIN_INTERVAL_SECONDS = parse_duration(MIN_INTERVAL)
"""The shortest sync period, whatever the stored spec says."""

MEANS_WARMUP_MAX_SECONDS = 3600.0
"""The longest warm-up read of the dispersion headroom's means (its half-life, 1800 s by
default, at most this)."""

Seed = Callable[[], Awaitable[tuple[list[dict[str, Any]], list[dict[str, Any]]]]]
"""Lists every ScalingPolicy and HPA once (to seed the conflict index)."""

Intend = Callable[[str, str, ScaledTarget | None], Awaitable[None]]
"""Writes a policy's status.scaledTarget alone (namespace, policy name, record; None removes
it) before the scale it announces, or back after a scale that did not land; ProviderError
when it cannot."""

CONFLICTS = frozenset({"ConflictingHPA", "ConflictingPolicy"})
"""The Stalled reasons of a policy that leaves its target to another autoscaler."""

REFUSED_RETRY_INTERVALS = (2, 4, 8)
"""A scale the apiserver refused (a 4xx, a 5xx) is tried again, while the count, the target
and the policy stay the same, this many intervals after its first, second, third and later
refusals; the syncs between write nothing and scale nothing."""


@dataclass(frozen=True)
class _RefusalKey:
    """What a remembered refusal holds for: another value of any field tries at once."""

    target: tuple[str, str, str | None]
    """The target's kind, name and metadata.uid (a target deleted and created again under
    its name is another object)."""
    replicas: int
    generation: int | None
    """The target's metadata.generation the scale was decided from."""
    policy_generation: int | None
    """The policy's metadata.generation: any spec change (an interval, a retarget) clears it."""


@dataclass
class _Refusal:
    """A policy's last refused scale (in memory, per policy uid)."""

    key: _RefusalKey
    error: ProviderError
    tries: int
    refused_at: float
    interval: float
    """The sync interval in force when it was refused."""

    def retry_at(self, interval: float) -> float:
        """When it is tried again: its backoff in intervals of the one in force now, never
        later than the schedule it was given (a longer interval since does not put it off)."""
        wait = REFUSED_RETRY_INTERVALS[min(self.tries, len(REFUSED_RETRY_INTERVALS)) - 1]
        return self.refused_at + wait * min(interval, self.interval)


class _ScaleFailedError(Exception):
    """A scale that did not land (or is not known to have): its error, the
    status.scaledTarget the held status keeps (the record as read, or the intent whose
    pending count may still land), and whether the error is the remembered refusal (then
    the status says when it is tried again)."""

    def __init__(
        self, error: ProviderError, record: ScaledTarget | None, *, remembered: bool = False
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.record = record
        self.remembered = remembered


def sync_offset(uid: str, interval: float) -> float:
    """A stable offset in [0, interval) per policy, so syncs spread over the interval."""
    return (zlib.crc32(uid.encode()) % 10_000) / 10_000 * interval


def next_slot(uid: str, interval: float, now: float) -> float:
    """The policy's next sync time after `now` on its own grid (no drift with sync length);
    an interval below `spec.interval`'s minimum (an object stored before the CRD refused it)
    syncs at the minimum, never in a hot loop."""
    interval = max(interval, MIN_INTERVAL_SECONDS)
    offset = sync_offset(uid, interval)
    return offset + (math.floor((now - offset) / interval) + 1) * interval


@dataclass
class ScalingPolicyReconciler:
    """The kind's `KindReconciler`."""

    target: ScaleTarget
    metrics: Metrics
    models: ModelCache
    index: TargetIndex
    seed: Seed | None = None
    intend: Intend | None = None
    """Records the scale about to be written (status.scaledTarget.pending) before it is
    written; None: not recorded first (unit tests without an apiserver)."""
    history_points: int = 4000
    status_refresh_seconds: float = 600.0
    """An unchanged decision writes no status; the moving fields (current load, forecast
    window, calibration) are refreshed at most this often."""
    release_seconds: float = 300.0
    """How long a deletion retries giving the target back while the apiserver fails."""
    kind: Kind = KIND

    def __post_init__(self) -> None:
        self._due: dict[str, float] = {}
        self._gauged: dict[str, tuple[Any, Any]] = {}
        """The FORECAST_ERROR labels set per policy uid (removed when it is gone)."""
        self.states = StateCache()
        self._seed_task: asyncio.Future[None] | None = None
        """The conflict index's seed in flight, shared by every sync that waits for it."""
        self._refused: dict[str, _Refusal] = {}
        """The last refused scale per policy uid (not tried again at every sync)."""

    async def reconcile(
        self, body: Mapping[str, Any], *, now: dt.datetime, child: ChildEvent | None
    ) -> Result:
        started = time.perf_counter()
        uid = str((body.get("metadata") or {}).get("uid"))
        due = self._due.pop(uid, None)
        if due is not None:
            SYNC_LATENESS.observe(max(0.0, now.timestamp() - due))
        try:
            policy = ScalingPolicy.model_validate(dict(body))
        except ValidationError as exc:
            return self._stalled(None, body, "InvalidSpec", spec_error(exc), now)
        try:
            result = _let_go(policy, await self._sync(policy, body, now))
        finally:
            SYNC_SECONDS.observe(time.perf_counter() - started)
        if result.requeue is Requeue.RESYNC and not policy.spec.paused:
            interval = parse_duration(policy.spec.interval)
            at = next_slot(uid, interval, now.timestamp())
            self._due[uid] = at
            return Result(
                status=result.status,
                events=result.events,
                requeue=Requeue.RESYNC,
                requeue_after=at - now.timestamp(),
            )
        return result

    def needs_finalizer(self, body: Mapping[str, Any]) -> bool:
        """Once the policy has scaled its target (status.scaledTarget): its deletion gives the
        target back its spec.replicas of before (`release`)."""
        return bool((body.get("status") or {}).get("scaledTarget"))

    async def release(self, body: Mapping[str, Any]) -> tuple[bool, Event | None]:
        """Deletion of a policy that scaled its target: the target gets back the spec.replicas
        it had before the policy's first scale (unset when it was unset: on Cloud Run the
        last count would otherwise stay the service's paid minimum for good), only while it
        still holds the policy's last write (atomically: a JSON patch's `test`); a later edit
        by anyone else is left as is. A target gone or invalid lets go at once; an apiserver
        that cannot be reached is retried until `release_seconds` after the deletion, then
        the policy goes, leaving the target as is. Each outcome says so in an Event."""
        meta = body.get("metadata") or {}
        self.forget(str(meta.get("uid")))
        try:
            record = ScalingPolicyStatus.model_validate(body.get("status") or {}).scaled_target
        except ValidationError:
            record = None
        if record is None:
            return True, None
        namespace, name = str(meta.get("namespace")), record.name
        what = f"target XynergyService {namespace}/{name}"
        before = "unset" if record.original_replicas is None else str(record.original_replicas)
        other = await self._conflict(namespace, name, str(meta.get("uid")), acting=False)
        if other is not None:  # an HPA or another policy scales it now: it is theirs
            return True, Event(
                "Normal",
                "TargetLeft",
                f"{what} left as is (spec.replicas not given back to {before}): "
                f"{other.other} scales it now",
            )
        written = [w for w in (record.last_written, record.pending) if w is not None]
        current: int | None = None
        try:
            target = await self.target.read(namespace, name)
            current = target.service.spec.replicas
            if current is not None and (
                current == record.last_written
                or (current == record.pending and await self._ours(namespace, name, current))
            ):
                restored = await self.target.restore(
                    namespace, name, expected=current, replicas=record.original_replicas
                )
            else:
                restored = False
        except StalledError as exc:
            if exc.reason == "TargetNotFound":
                return True, None
            return True, Event("Warning", "TargetLeft", f"{what} left as is: {exc.message}")
        except TransientError as exc:
            if self._release_expired(meta):
                return True, Event(
                    "Warning",
                    "TargetLeft",
                    f"{what} left as is (spec.replicas not given back to {before}): {exc.message}",
                )
            return False, Event(
                "Warning", "RestoreWaiting", f"giving {what} its spec.replicas back: {exc.message}"
            )
        if restored:
            return True, Event(
                "Normal",
                "TargetRestored",
                f"{what}: spec.replicas {current} -> {before} (as before the policy scaled it)",
            )
        wrote = " or ".join(str(w) for w in written) or "nothing yet"
        return True, Event(
            "Normal",
            "TargetLeft",
            f"{what} left as is: its spec.replicas was changed since this policy last "
            f"wrote {wrote} (before the policy: {before})",
        )

    async def _ours(self, namespace: str, name: str, replicas: int) -> bool:
        """Whether the target, read from the apiserver, holds `replicas` by this operator's
        write (its field manager owns spec.replicas), not a person's."""
        return (await self.target.reread(namespace, name)).ours(replicas)

    def _release_expired(self, meta: Mapping[str, Any]) -> bool:
        """Whether the deletion was asked for more than `release_seconds` ago."""
        stamp = meta.get("deletionTimestamp")
        if not stamp:
            return False
        try:
            asked = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            return True
        return time.time() - asked.timestamp() > self.release_seconds

    def forget(self, uid: str) -> None:
        """The policy is gone: drop its model and schedule bookkeeping."""
        self.models.forget(uid)
        self.states.forget(uid)
        self._due.pop(uid, None)
        self._refused.pop(uid, None)
        self._drop_gauge(uid)

    async def _sync(
        self, policy: ScalingPolicy, body: Mapping[str, Any], now: dt.datetime
    ) -> Result:
        if policy.spec.paused:
            self._drop_gauge(str(policy.metadata.uid))
            return Result(status=st.paused_status(policy, now=now))
        namespace = str(policy.metadata.namespace)
        target_name = policy.spec.target_ref.name
        dry_run = policy.spec.dry_run
        conflict = await self._conflict(
            namespace, target_name, str(policy.metadata.uid), acting=not dry_run
        )
        if conflict is not None and not dry_run:
            self._drop_gauge(str(policy.metadata.uid))
            return self._stalled(policy, body, conflict.reason, conflict.message, now)
        try:
            target = await self.target.read(namespace, target_name)
            policy = await self._settled(policy, target)
            named = f"{namespace}/{target_name}"
            if target.service.spec.paused:
                return self._idle(policy, st.target_paused_status(policy, name=named, now=now), now)
            if _scaled_to_zero(policy, target):
                return self._idle(policy, st.disabled_status(policy, name=named, now=now), now)
            params, floor_note = _kubernetes_floor(scaling_params(policy, target.sizing), target)
            provider, query = self.metrics(policy, target)
        except StalledError as exc:
            return self._stalled(policy, body, exc.reason, exc.message, now)
        except TransientError as exc:
            return self._held(policy, None, exc, now)
        except ValueError as exc:
            return self._stalled(policy, body, "InvalidSpec", str(exc), now)
        try:
            load = await provider.query(query, at=now.timestamp())
        except MetricsError as exc:
            return await self._without_metrics(policy, target, params, exc, now)
        ts = now.timestamp()
        fitted, history_note = await self._model(policy, provider, query, ts, params)
        stored = policy.status.scaling_state if policy.status is not None else None
        state = self.states.state(str(policy.metadata.uid), stored, now=ts)
        last = state.dispersion.last if state is not None else None
        means = await self._means(policy, provider, query, ts, params, last=last)
        note = _bounds_note(policy, target) + floor_note + history_note
        if conflict is not None:  # a dry run beside another autoscaler plans on, and says so
            note += f"; would be Stalled {conflict.reason} if it acted: {conflict.message}"
        return await self._decide(
            policy, target, params, load, fitted, now, state, means, note=note
        )

    async def _settled(self, policy: ScalingPolicy, target: Target) -> ScalingPolicy:
        """The policy with its stored pending count settled (a scale whose outcome was not
        known when its sync ended): the last write once the target holds it by this
        operator's write (its field manager owns spec.replicas, read past the watch's cache,
        which keeps no managedFields), dropped when the target holds that count by another
        manager's write (a person's), kept while the target holds another count (it may
        still land) or cannot be re-read."""
        record = policy.status.scaled_target if policy.status is not None else None
        if (
            policy.status is None
            or record is None
            or record.pending is None
            or record.name != policy.spec.target_ref.name
            or target.service.spec.replicas != record.pending
        ):
            return policy
        try:
            seen = target
            if seen.replicas_managers is None:
                seen = await self.target.reread(str(policy.metadata.namespace), record.name)
        except ProviderError as exc:
            log.info("%s: cannot tell whose count %d is: %s", record.name, record.pending,
                     exc.message)  # fmt: skip
            return policy
        if seen.service.spec.replicas != record.pending:
            return policy
        if seen.ours(record.pending):
            settled = record.model_copy(update={"last_written": record.pending, "pending": None})
        else:
            settled = record.model_copy(update={"pending": None})
        status = policy.status.model_copy(update={"scaled_target": settled})
        return policy.model_copy(update={"status": status})

    def _idle(self, policy: ScalingPolicy, status: ScalingPolicyStatus, now: dt.datetime) -> Result:
        """The target is paused, or a person scaled it to 0: no metrics read, nothing decided
        or scaled (a policy must not move what its owner froze or switched off). The status is
        written when it changes, then at the refresh period."""
        self._drop_gauge(str(policy.metadata.uid))
        old = policy.status
        written = old.last_reconcile_time if old is not None else None
        if (
            old is not None
            and written is not None
            and now.timestamp() - written.timestamp() < self.status_refresh_seconds
            and st.decision_view(old) == st.decision_view(status)
        ):
            return Result(status=old)
        return Result(status=status, events=st.events_for(old, status, None))

    async def _without_metrics(
        self,
        policy: ScalingPolicy,
        target: Target,
        params: ScalingParams,
        error: MetricsError,
        now: dt.datetime,
    ) -> Result:
        """The load cannot be read: hold the current count, but within the policy's bounds
        (its minimum raised by the active schedules, its maximum), as HPA applies its bounds
        before any metric. Never towards zero or the minimum for missing data."""
        current = target.replicas
        base = current  # what is held: the count, or a dry run's plan
        old = policy.status
        if policy.spec.dry_run and old is not None and old.desired_instances is not None:
            base = old.desired_instances
        floor, ceiling, active = bounds_at(params, now.timestamp())
        desired = min(max(base, floor), ceiling)
        if desired == base:
            return self._held(policy, current, error, now)
        if desired > base:
            top = max(active, key=lambda s: s.min_instances, default=None)
            why = (
                f"schedule {top.name or top.cron} minimum {top.min_instances}"
                if top is not None and top.min_instances > params.min_instances
                else f"minInstances {params.min_instances}"
            )
        else:
            why = f"maxInstances {desired}"
        applied = False
        if not policy.spec.dry_run:
            try:
                await self._scale(policy, target, desired, now.timestamp())
            except _ScaleFailedError as failed:
                return self._failed(policy, current, failed, now)
            applied = True
        bounded = st.Bounded(desired=desired, why=why, applied=applied)
        FALLBACKS.labels(error.reason).inc()
        status = st.held_status(
            policy,
            current=current,
            reason=error.reason,
            message=error.message,
            now=now,
            bounded=bounded,
        )
        if applied:
            status.scaled_target = _record(policy, target, desired)
        events = st.events_for(policy.status, status, None)
        if applied:
            events.insert(0, Event("Normal", "Scaled", f"{current} -> {desired} ({why}) "
                                   f"without the metric: {error.message}"))  # fmt: skip
        return Result(status=status, events=events)

    async def _decide(
        self,
        policy: ScalingPolicy,
        target: Target,
        params: ScalingParams,
        load: float,
        fitted: Fitted | None,
        now: dt.datetime,
        state: ScalingState | None,
        means: tuple[tuple[float, float], ...],
        *,
        note: str = "",
    ) -> Result:
        """Decide from `state` (the policy's behaviour state, None for HPA's fresh start) and
        the recent `means`, act unless a dry run, and report."""
        ts = now.timestamp()
        status = policy.status
        dry_run = policy.spec.dry_run
        current = target.replicas
        if dry_run and status is not None and status.desired_instances is not None:
            current = status.desired_instances  # the plan goes on as if it had been applied
        if fitted is not None:
            fitted.observe(ts, load)
        predictive = policy.spec.mode is ScalingMode.PREDICTIVE and fitted is not None
        observed = Observation(
            now=ts,
            current_instances=current,
            current_load=load,
            forecast=fitted.forecast if predictive and fitted else None,
            forecast_smape=fitted.smape if fitted else None,
            history_seconds=fitted.history_seconds if fitted else None,
            recent_load=fitted.recent_load(ts) if fitted else None,
            recent_means=means,
        )
        uid, stored = str(policy.metadata.uid), status.scaling_state if status else None
        decision = decide(observed, params=params, state=state)
        applied = False
        if not dry_run and decision.desired != target.replicas:
            try:
                await self._scale(policy, target, decision.desired, ts)
            except _ScaleFailedError as failed:
                return self._failed(policy, target.replicas, failed, now)
            applied = True
        self._count(policy, decision, fitted)
        outcome = st.Outcome(
            current=target.replicas,
            load=load,
            decision=decision,
            fitted=fitted,
            applied=applied,
            dry_run=dry_run,
            note=note,
        )
        new = st.synced_status(policy, outcome, now=now)
        if applied:
            new.scaled_target = _record(policy, target, decision.desired)
        events = st.events_for(status, new, outcome)
        if status is not None and self._unchanged(status, new, decision, params, ts, note):
            self.states.keep(uid, text=stored, state=decision.state)
            return Result(status=status, events=events)
        self.states.keep(uid, text=new.scaling_state, state=decision.state)
        return Result(status=new, events=events)

    async def _scale(
        self, policy: ScalingPolicy, target: Target, replicas: int, now: float
    ) -> None:
        """Scale the target, its record written first: status.scaledTarget names the count
        about to be written (`pending`), so a status write lost after the scale (a conflict,
        an apiserver error, a restart) still leaves a record deletion can give back; a record
        that cannot be written leaves the target as it is. A failure raises `_ScaleFailedError` with
        the record the held status keeps.

        A scale that fails after its record was written is settled by ownership, not by the
        count alone (a person may set that very count by hand meanwhile): refused
        (StalledError, or NotAppliedError for a 409), nothing applied, the record is put back
        as the sync read it (`_withdraw`). A timeout or 5xx is followed by a read of the
        target past the watch's cache: landed (returns: the caller records it as the last
        write) when the target holds the count by this operator's write (its field manager
        owns spec.replicas in managedFields, whatever other spec changes came since); that
        count by another manager (a person's) withdraws the record; any other count, or a
        re-read that fails, keeps the pending count (the write may still land: `_settled`
        decides at a later sync).

        A scale the apiserver answered with a refusal (a 4xx, a 5xx; not a 409 or an
        unreachable apiserver) is remembered: while the target (kind, name, uid), the count,
        the target's generation and the policy's generation stay the same it is not tried
        again (no intent write, no scale) until `REFUSED_RETRY_INTERVALS` later (in the
        interval in force now, never later than first scheduled). Anything else forgets it."""
        uid = str(policy.metadata.uid)
        namespace, name = str(policy.metadata.namespace), policy.spec.target_ref.name
        old = policy.status.scaled_target if policy.status is not None else None
        key = _RefusalKey(
            target=(policy.spec.target_ref.kind, name, target.service.metadata.uid),
            replicas=replicas,
            generation=target.service.metadata.generation,
            policy_generation=policy.metadata.generation,
        )
        refused = self._refused.get(uid)
        if refused is not None and refused.key != key:
            del self._refused[uid]  # another scale, target or policy spec: tried at once
            refused = None
        interval = max(parse_duration(policy.spec.interval), MIN_INTERVAL_SECONDS)
        if refused is not None and now + interval / 2 < refused.retry_at(interval):
            raise _ScaleFailedError(refused.error, old, remembered=True)
        intent = _record(policy, target, replicas, pending=True)
        if self.intend is not None and intent != old:  # an error: nothing written, record stays
            try:
                await self.intend(namespace, str(policy.metadata.name), intent)
            except ProviderError as exc:
                raise _ScaleFailedError(exc, old) from exc
        try:
            await self.target.scale(namespace, name, replicas)
        except ProviderError as exc:
            kept = await self._unsettled(policy, namespace, name, replicas, exc, old, intent)
            if kept is not None:
                remembered = not isinstance(exc, NotAppliedError) and exc.reason != "ApiUnreachable"
                if remembered:
                    tries = refused.tries + 1 if refused is not None else 1
                    self._refused[uid] = _Refusal(key, exc, tries, now, interval)
                raise _ScaleFailedError(exc, kept[0], remembered=remembered) from exc
        self._refused.pop(uid, None)

    async def _unsettled(
        self,
        policy: ScalingPolicy,
        namespace: str,
        name: str,
        replicas: int,
        error: ProviderError,
        old: ScaledTarget | None,
        intent: ScaledTarget,
    ) -> tuple[ScaledTarget | None] | None:
        """A failed scale's record to keep (in a 1-tuple), or None when it landed."""
        if not isinstance(error, TransientError) or isinstance(error, NotAppliedError):
            await self._withdraw(policy)  # refused: nothing applied
            return (old,)
        try:
            seen = await self.target.reread(namespace, name)
        except ProviderError as exc:
            log.info("%s: cannot tell whether a failed scale landed: %s", name, exc.message)
            return (intent,)
        if seen.ours(replicas):
            log.info("%s: scale to %d landed, its response lost: %s", name, replicas, error)
            return None
        if seen.service.spec.replicas == replicas:  # that count, by another's write
            await self._withdraw(policy)
            return (old,)
        return (intent,)  # not landed (yet): it may still

    async def _withdraw(self, policy: ScalingPolicy) -> None:
        """Put back the record as the sync read it, over the intent of a scale that did not
        land: the status written after the sync is compared with the one read before the
        intent, so a held status that reads the same would write nothing and leave the
        pending count stored. Best effort: a withdrawal that fails leaves the pending count,
        which a later sync takes as the last write only when the target holds it by this
        operator's write (`_settled`)."""
        if self.intend is None:
            return
        old = policy.status.scaled_target if policy.status is not None else None
        try:
            await self.intend(str(policy.metadata.namespace), str(policy.metadata.name), old)
        except ProviderError as exc:
            log.info("%s: the intent of a failed scale stays: %s", policy.metadata.name, exc)

    def _unchanged(
        self,
        old: ScalingPolicyStatus,
        new: ScalingPolicyStatus,
        decision: Decision,
        params: ScalingParams,
        now: float,
        note: str,
    ) -> bool:
        """Whether the stored status still tells the decision: the same decision view, the
        same note in the Ready message (a bound moved by the target, a dry run beside another
        autoscaler), a behaviour state a restarted operator would decide the same from, and a
        refresh not yet due. Then nothing is written."""
        written = old.last_reconcile_time
        return (
            written is not None
            and now - written.timestamp() < self.status_refresh_seconds
            and st.decision_view(old) == st.decision_view(new)
            and st.ready_note(old) == note
            and same_for_decisions(old.scaling_state, decision.state, now=now, params=params)
        )

    async def _model(
        self,
        policy: ScalingPolicy,
        provider: MetricsProvider,
        query: str,
        now: float,
        params: ScalingParams,
    ) -> tuple[Fitted | None, str]:
        """The policy's forecast model (predictive mode only): fitted now when it has none
        for `key`, else the current one, with a due refit started in the background. A
        failed history read leaves no model: the decision falls back, and the Ready note
        (second) says why; it is read again only a refit period later (not in every sync)."""
        if policy.spec.mode is not ScalingMode.PREDICTIVE:
            return None, ""
        forecast = policy.spec.forecast
        key = FitKey(
            source=f"{policy.spec.metric.source}:{policy.spec.metric.prometheus_url or ''}",
            query=query,
            seasonalities=tuple(forecast.seasonalities),
            history_seconds=parse_duration(forecast.history_window),
            quantile=forecast_quantile(policy),
            # the model reaches the decision's lead and status.forecast's window
            lead_seconds=params.startup_seconds
            + max(params.horizon_seconds, parse_duration(forecast.horizon)),
        )
        uid, name = str(policy.metadata.uid), str(policy.metadata.name)

        async def history(k: FitKey) -> tuple[Samples, float]:
            step = range_step(k.history_seconds, points=self.history_points)
            samples = await provider.query_range(
                query, start=now - k.history_seconds, end=now, step=step
            )
            return samples, step

        current = self.models.usable(uid, key)
        if current is not None:  # decide from it; a due refit runs beside, not in, the sync
            if self.models.due(uid, key, now):
                self.models.refresh(uid, key, now, history, name=name)
            return current, ""
        failed = self.models.backoff(uid, key, now)
        if failed is not None:  # read again a refit period after it failed, not every sync
            return None, f"; no history for the forecast: {failed}"
        try:
            return await self.models.refit(uid, key, now, history), ""
        except MetricsError as exc:
            log.info("%s: no history for the forecast: %s", name, exc)
            self.models.failed(uid, key, now, exc.message)
            return None, f"; no history for the forecast: {exc.message}"

    async def _means(
        self,
        policy: ScalingPolicy,
        provider: MetricsProvider,
        query: str,
        now: float,
        params: ScalingParams,
        *,
        last: float | None,
    ) -> tuple[tuple[float, float], ...]:
        """The metric at `dispersion_sample_seconds` steps before `now`, when the dispersion
        headroom is on (`metric.averagingWindowSeconds` in predictive mode): the means after
        `last`, the last one the estimate has seen, or, when it has seen none lately (a new
        policy, a restarted operator, a gap), a warm-up of one half-life of the estimate (1800
        s, about 360 means at 5 s: a few dozen differences leave the sign of their mean to
        chance).
        On a grid of whole steps since the epoch, so successive syncs read one evenly spaced
        chain whatever their lateness. A failed read decides without them (the estimate keeps
        what it has and restarts its chain of differences)."""
        step = params.dispersion_sample_seconds
        if params.dispersion_window_seconds is None or step is None or not params.predictive:
            return ()
        end = (math.ceil(now / step) - 1) * step  # the last whole step before now
        interval = parse_duration(policy.spec.interval)
        if last is not None and end - last <= interval + 2 * step:  # the chain goes on
            start = math.floor(last / step) * step + step
        else:
            warmup = min(params.dispersion_half_life_seconds, MEANS_WARMUP_MAX_SECONDS)
            start = end - math.ceil(warmup / step) * step
        if start > end:
            return ()  # no whole step since the last one seen
        try:
            # half a step past the last one: a range of one step is still a range (end > start)
            samples = await provider.query_range(query, start=start, end=end + step / 2, step=step)
        except MetricsError as exc:
            name = policy.metadata.name
            log.info("%s: no recent means for the dispersion headroom: %s", name, exc)
            return ()
        return tuple(
            (float(t), float(v))
            for t, v in zip(samples.timestamps, samples.values, strict=True)
            if t < now
        )

    async def _conflict(
        self, namespace: str, target: str, uid: str, *, acting: bool
    ) -> Conflict | None:
        if not self.index.seeded and self.seed is not None:
            await self._seeded(self.seed)
        return self.index.conflict((namespace, target), uid, acting=acting)

    async def _seeded(self, seed: Seed) -> None:
        """Seed the conflict index once: the first sync sends the lists, the syncs that come
        while they are in flight wait for the same answer (not for lists of their own, one
        after another); a failed seed fails all of them together, and a later sync seeds
        again."""
        task = self._seed_task
        if task is None:
            task = self._seed_task = asyncio.ensure_future(self._seed_once(seed))
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._seed_task is task:
                self._seed_task = None

    async def _seed_once(self, seed: Seed) -> None:
        self.index.begin_seed()
        try:
            policies, hpas = await seed()
        except BaseException:
            self.index.abort_seed()
            raise
        self.index.seed(policies, hpas)

    def _count(self, policy: ScalingPolicy, decision: Decision, fitted: Fitted | None) -> None:
        DECISIONS.labels(str(decision.mode), str(decision.reason)).inc()
        if decision.fallback is not None:
            FALLBACKS.labels(str(decision.fallback)).inc()
        uid, labels = str(policy.metadata.uid), (policy.metadata.namespace, policy.metadata.name)
        if fitted is not None and fitted.smape is not None:
            FORECAST_ERROR.labels(*labels).set(fitted.smape)
            self._gauged[uid] = labels
        else:  # not predictive (or no backtest): no error to show
            self._drop_gauge(uid)

    def _drop_gauge(self, uid: str) -> None:
        labels = self._gauged.pop(uid, None)
        if labels is not None:
            with contextlib.suppress(KeyError):
                FORECAST_ERROR.remove(*labels)

    def _stalled(
        self,
        policy: ScalingPolicy | None,
        body: Mapping[str, Any],
        reason: str,
        message: str,
        now: dt.datetime,
    ) -> Result:
        status = st.stalled_status(policy, body, reason=reason, message=message, now=now)
        old = policy.status if policy is not None else None
        return Result(
            status=status, events=st.events_for(old, status, None), requeue=Requeue.BACKOFF
        )

    def _held(
        self,
        policy: ScalingPolicy,
        current: int | None,
        error: ProviderError,
        now: dt.datetime,
    ) -> Result:
        """Hold the count; the stored status.scaledTarget stays as it is (a pending count
        announced for a scale that did not land is nulled: the record is written whole)."""
        FALLBACKS.labels(error.reason).inc()
        status = st.held_status(
            policy, current=current, reason=error.reason, message=error.message, now=now
        )
        return Result(status=status, events=st.events_for(policy.status, status, None))

    def _failed(
        self,
        policy: ScalingPolicy,
        current: int | None,
        failed: _ScaleFailedError,
        now: dt.datetime,
    ) -> Result:
        """Hold the count after a failed scale, status.scaledTarget as `failed` leaves it; the
        remembered refusal (not another failure beside it) says when it is tried again."""
        error = failed.error
        if failed.remembered:
            first, *_, last = REFUSED_RETRY_INTERVALS
            error = ProviderError(
                f"{error.message} (while the count and the target stay the same, tried again "
                f"after {first} intervals, doubling up to every {last})",
                reason=error.reason,
            )
        result = self._held(policy, current, error, now)
        status = result.status
        assert isinstance(status, ScalingPolicyStatus)
        status.scaled_target = failed.record
        return dataclasses.replace(result, events=st.events_for(policy.status, status, None))


def _record(
    policy: ScalingPolicy, target: Target, written: int, *, pending: bool = False
) -> ScaledTarget:
    """status.scaledTarget after the policy wrote `written` to its target (with `pending`:
    before it writes it): the target's spec.replicas before the policy's first scale of it
    (kept from the record, else read now, before this first write lands), and the last
    write (or the one about to be made, `pending`, beside the last one)."""
    old = policy.status.scaled_target if policy.status is not None else None
    name = policy.spec.target_ref.name
    if old is None or old.name != name:  # a new record, whole (no field of the old one)
        old = ScaledTarget(name=name, original_replicas=target.service.spec.replicas)
    if pending:
        return old.model_copy(update={"pending": written})
    return old.model_copy(update={"last_written": written, "pending": None})


def _let_go(policy: ScalingPolicy, result: Result) -> Result:
    """The sync's result without status.scaledTarget (and so without the finalizer) once
    another autoscaler scales the target it scaled (Stalled for an HPA or an older policy),
    or once it points at another target: it owns nothing there, so its deletion must not give
    the target back over whoever scales it now. A paused policy or a dry run keeps its
    record (and finalizer): unpaused, its next scale still knows the target's count from
    before the policy (not the policy's own earlier write); deleted, it gives that back only
    while the target still holds the policy's write and no other autoscaler scales it."""
    status = result.status
    if not isinstance(status, ScalingPolicyStatus) or status.scaled_target is None:
        return result
    stalled = get_condition(status.conditions, "Stalled")
    acts = not (
        (stalled is not None and stalled.status == "True" and stalled.reason in CONFLICTS)
        or status.scaled_target.name != policy.spec.target_ref.name
    )
    if acts:
        return result
    return dataclasses.replace(result, status=status.model_copy(update={"scaled_target": None}))


def _scaled_to_zero(policy: ScalingPolicy, target: Target) -> bool:
    """A Kubernetes target whose spec.replicas is 0 and not by this policy's write: a person
    switched it off (`kubectl scale --replicas=0`), and the policy leaves it so, as HPA does
    (ScalingActive False ScalingDisabled). A 0 the policy wrote itself (before it floored
    Kubernetes targets at 1) is raised to the floor."""
    if target.backend != Backend.KUBERNETES or target.service.spec.replicas != 0:
        return False
    record = policy.status.scaled_target if policy.status is not None else None
    return not (
        record is not None
        and record.name == policy.spec.target_ref.name
        and 0 in (record.last_written, record.pending)
    )


def _bounds_note(policy: ScalingPolicy, target: Target) -> str:
    """The Ready message's note when a policy bound is moved by the target's own: a
    minInstances (or maxInstances) below the target's scaling.minInstances is raised to it (the
    target clamps its replicas to it), a maxInstances above the target's scaling.maxInstances
    is lowered to it; else ''."""
    floor, ceiling = target.sizing.min_instances, target.sizing.max_instances
    notes = []
    below = [
        f"spec.{name} {value}"
        for name, value in (
            ("minInstances", policy.spec.min_instances),
            ("maxInstances", policy.spec.max_instances),
        )
        if value is not None and value < floor
    ]
    if below:
        notes.append(
            f"{' and '.join(below)} below the target's scaling.minInstances {floor}, "
            f"so the floor is {floor}"
        )
    high = policy.spec.max_instances
    if high is not None and high > ceiling:
        notes.append(
            f"spec.maxInstances {high} above the target's scaling.maxInstances {ceiling}, "
            f"so the ceiling is {ceiling}"
        )
    return "".join(f"; {n}" for n in notes)


def _kubernetes_floor(params: ScalingParams, target: Target) -> tuple[ScalingParams, str]:
    """On a Kubernetes target a minimum of 0 is raised to 1, as HPA's minReplicas is at
    least 1: at 0 Pods the load series is gone (no Pod reports it), so nothing would ever scale
    the target up again. Cloud Run keeps 0 (its requests are counted without instances).
    Returns the parameters and the Ready message's note."""
    if target.backend != Backend.KUBERNETES or params.min_instances > 0:
        return params, ""
    raised = dataclasses.replace(
        params, min_instances=1, max_instances=max(params.max_instances, 1)
    )
    note = (
        "; minInstances 0 raised to 1 on a Kubernetes target (with no Pods there is no load "
        "to scale up from)"
    )
    return raised, note


def _reconciler(ctx: OperatorContext) -> tuple[Controller, ScalingPolicyReconciler]:
    controller = ctx.controllers[KIND]
    return controller, cast(ScalingPolicyReconciler, controller.reconciler)


async def _trigger_claims(ctx: OperatorContext, targets: set[Target_], *, but: str) -> None:
    """Converge the other policies on `targets` (their owner or their HPAs changed)."""
    controller, rec = _reconciler(ctx)
    for namespace, name in targets:
        for claim in rec.index.claims((namespace, name)):
            if claim.uid != but:
                await controller.trigger(ObjectKey(KIND.kind, namespace, claim.name, claim.uid))


async def policy_event(ctx: OperatorContext, body: Mapping[str, Any], event: str | None) -> None:
    """A ScalingPolicy's event: index it, converge it, and converge the policies whose claim
    on a target it changed (a deleted owner hands its target to the next oldest)."""
    controller, rec = _reconciler(ctx)
    uid = str((body.get("metadata") or {}).get("uid"))
    touched = rec.index.observe_policy(body, deleted=event == "DELETED")
    if event == "DELETED":
        rec.forget(uid)
    await controller.on_event(body, event)
    await _trigger_claims(ctx, touched, but=uid)


async def hpa_event(ctx: OperatorContext, body: Mapping[str, Any], event: str | None) -> None:
    """An HPA's event: index it; the policies on a target it joined or left converge."""
    _, rec = _reconciler(ctx)
    touched = rec.index.observe_hpa(body, deleted=event == "DELETED")
    await _trigger_claims(ctx, touched, but="")


def from_context(ctx: OperatorContext) -> ScalingPolicyReconciler:
    """The reconciler on the operator's clients; metric providers built on first use."""
    settings = ctx.settings
    namespace = ctx.settings.namespace

    async def seed() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        resource: Any = KIND.resource
        async with ctx.api_limit:
            policies = [
                o.to_dict() async for o in ctx.client.list(resource, namespace=namespace or "*")
            ]
            hpas = [
                o.to_dict()
                async for o in ctx.client.list(HorizontalPodAutoscaler, namespace=namespace or "*")
            ]
        return policies, hpas

    async def intend(namespace: str, name: str, record: ScaledTarget | None) -> None:
        data = record.model_dump(by_alias=True, mode="json") if record is not None else None
        patch = {"status": {"scaledTarget": data}}
        resource: Any = KIND.resource
        try:
            async with ctx.api_limit:
                await ctx.client.patch(
                    resource.Status, name, patch, namespace=namespace, patch_type=PatchType.MERGE
                )
        except ApiError as exc:
            raise api_error(exc, what=f"recording the scale in {name}'s status") from exc
        except httpx2.TransportError as exc:
            raise TransientError(
                f"recording the scale in {name}'s status: {type(exc).__name__}",
                reason="ApiUnreachable",
            ) from exc

    return ScalingPolicyReconciler(
        target=TargetClient(
            ctx.client, XS_KIND, limit=ctx.api_limit, cache=ctx.provider(TARGETS, TargetCache)
        ),
        metrics=metric_sources(ctx, settings),
        models=ModelCache(
            refit_seconds=settings.scaling_refit_seconds,
            concurrency=settings.scaling_refit_concurrency,
        ),
        index=TargetIndex(),
        seed=seed,
        intend=intend,
        history_points=settings.scaling_history_points,
        status_refresh_seconds=settings.scaling_status_refresh_seconds,
    )
