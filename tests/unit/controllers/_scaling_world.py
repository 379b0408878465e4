"""One ScalingPolicy with its fake target and Prometheus, synced as the core Controller syncs
it, for the give-back record's tests (release, lost scales): the reconciler's intent writes
(status.scaledTarget before a scale) land in the stored status as the apiserver's merge patch
leaves them, and each sync's status is compared with the status that sync read (before any
intent write) and written only when it changed."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from _merge_patch import apply_merge_patch
from test_scalingpolicy_reconciler import NOW, FakeProm, FakeTarget, body, reconciler

from apis.v1alpha1.scalingpolicy import ScaledTarget
from controllers.core.status import merge_patch, status_changed
from controllers.scalingpolicy.conflicts import TargetIndex
from controllers.scalingpolicy.reconciler import ScalingPolicyReconciler


def written(b: dict[str, Any], status: Any) -> None:
    """The status stored as the StatusWriter's merge patch leaves it."""
    b["status"] = apply_merge_patch(b.get("status") or {}, merge_patch(status))


def recording(rec: ScalingPolicyReconciler, b: dict[str, Any]) -> list[dict[str, Any] | None]:
    """The reconciler's intent writes land in `b`'s status (as the apiserver's merge patch);
    returns the records written, in order."""
    records: list[dict[str, Any] | None] = []

    async def intend(namespace: str, name: str, record: ScaledTarget | None) -> None:
        data = record.model_dump(by_alias=True, mode="json") if record is not None else None
        records.append(data)
        b["status"] = apply_merge_patch(b.get("status") or {}, {"scaledTarget": data})

    rec.intend = intend
    return records


@dataclass
class World:
    """A policy (`b`, stored as the apiserver holds it), its reconciler and fakes."""

    target: FakeTarget
    prom: FakeProm
    rec: ScalingPolicyReconciler
    b: dict[str, Any]
    records: list[dict[str, Any] | None] = field(default_factory=list)
    """The intent writes, in order (with `record`)."""

    async def synced(self, *seconds: float) -> None:
        """Syncs at NOW + each of `seconds`, written as the core Controller writes them."""
        for s in seconds:
            read = copy.deepcopy(self.b.get("status") or {})  # before any intent write
            result = await self.rec.reconcile(self.b, now=NOW + dt.timedelta(seconds=s), child=None)
            if status_changed(read, result.status):
                written(self.b, result.status)


def world(
    target: FakeTarget | None = None,
    *,
    load: float | None = 900,
    index: TargetIndex | None = None,
    record: bool = False,
    **spec: Any,
) -> World:
    """A policy on `target` (default: spec.replicas unset) at `load`, `maxInstances: 20`
    unless `spec` says otherwise; with `record`, its intent writes land in its status."""
    target = target if target is not None else FakeTarget(replicas=None)
    prom = FakeProm(load=load)
    rec = reconciler(target, prom, index=index)
    w = World(target, prom, rec, body(**{"maxInstances": 20, **spec}))
    if record:
        w.records = recording(rec, w.b)
    return w
