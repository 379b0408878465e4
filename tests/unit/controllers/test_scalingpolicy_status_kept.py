"""What a sync writes when it knows less than before, or only its note changed: the Ready
message's note is written when it changes, a failed target read keeps the last counts, a dry
run holds its plan through a metrics outage, and the per-policy sMAPE gauge goes with the
policy."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prometheus_client import REGISTRY
from test_scalingpolicy_reconciler import (
    NOW,
    FakeProm,
    FakeTarget,
    body,
    daily,
    dumped,
    reconciler,
    status_of,
)

from apis.conditions import get_condition
from controllers.core.errors import TransientError
from controllers.scalingpolicy.conflicts import TargetIndex
from controllers.scalingpolicy.target import Target


def _ready(status: dict[str, Any]) -> str:
    return next(c["message"] for c in status["conditions"] if c["type"] == "Ready")


async def test_a_new_conflict_note_of_a_dry_run_is_written_at_once() -> None:
    index = TargetIndex()
    b = body(dryRun=True)
    index.observe_policy(b, deleted=False)
    rec = reconciler(FakeTarget(replicas=6), FakeProm(load=300), index)
    b["status"] = dumped(await rec.reconcile(b, now=NOW, child=None))
    hpa = {"metadata": {"namespace": "ns", "name": "crm-hpa"},
           "spec": {"scaleTargetRef": {"kind": "XynergyService", "name": "crm"}}}  # fmt: skip
    index.observe_hpa(hpa, deleted=False)
    later = NOW + dt.timedelta(seconds=15)
    b["status"] = dumped(await rec.reconcile(b, now=later, child=None))
    assert "would be Stalled ConflictingHPA" in _ready(b["status"])
    index.observe_hpa(hpa, deleted=True)  # and its removal too
    b["status"] = dumped(await rec.reconcile(b, now=later + dt.timedelta(seconds=15), child=None))
    assert "ConflictingHPA" not in _ready(b["status"])


class _Flaky(FakeTarget):
    async def read(self, namespace: str, name: str) -> Target:
        raise TransientError("reading XynergyService crm: ConnectError", reason="ApiUnreachable")


async def test_a_failed_target_read_keeps_the_last_counts() -> None:
    target = FakeTarget(replicas=2)
    rec = reconciler(target, FakeProm(load=300))
    b = body()
    b["status"] = dumped(await rec.reconcile(b, now=NOW, child=None))
    assert (b["status"]["currentInstances"], b["status"]["desiredInstances"]) == (2, 6)
    rec.target = _Flaky()
    held = status_of(await rec.reconcile(b, now=NOW + dt.timedelta(seconds=15), child=None))
    assert (held.current_instances, held.desired_instances) == (2, 6)
    degraded = get_condition(held.conditions, "Degraded")
    assert degraded is not None
    assert degraded.reason == "ApiUnreachable"
    assert "holding" not in degraded.message  # nothing known is claimed to be held


async def test_a_dry_run_holds_its_plan_through_a_metrics_outage() -> None:
    target, prom = FakeTarget(replicas=2), FakeProm(load=300)
    rec = reconciler(target, prom)
    b = body(dryRun=True)
    b["status"] = dumped(await rec.reconcile(b, now=NOW, child=None))
    assert b["status"]["desiredInstances"] == 6  # the plan; the target stays at 2
    prom.load = None
    held = status_of(await rec.reconcile(b, now=NOW + dt.timedelta(seconds=15), child=None))
    assert (held.current_instances, held.desired_instances) == (2, 6)
    assert target.scaled == []
    degraded = get_condition(held.conditions, "Degraded")
    assert degraded is not None
    assert "holding 6 instances" in degraded.message


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(
        "xynergy_scalingpolicy_forecast_smape_percent", {"namespace": "ns", "name": name}
    )


async def test_the_forecast_error_gauge_goes_with_the_policy_and_its_forecast() -> None:
    rec = reconciler(FakeTarget(replicas=2), FakeProm(load=100, history=daily(3)))
    predictive: Any = {
        "mode": "predictive",
        "forecast": {"minimumHistory": "24h", "maxErrorPercent": 50},
    }
    b = body(uid="g1", name="gone", **predictive)
    await rec.reconcile(b, now=NOW, child=None)
    assert _gauge("gone") is not None
    rec.forget("g1")  # what the policy's deletion does
    assert _gauge("gone") is None
    b = body(uid="g2", name="switched", **predictive)
    await rec.reconcile(b, now=NOW, child=None)
    assert _gauge("switched") is not None
    b = body(uid="g2", name="switched", mode="reactive")  # no forecast any more
    await rec.reconcile(b, now=NOW + dt.timedelta(seconds=15), child=None)
    assert _gauge("switched") is None


async def test_a_failing_history_read_waits_a_refit_period_and_says_why() -> None:
    prom = FakeProm(load=100, history=None)  # query_range fails: "no history"
    rec = reconciler(FakeTarget(replicas=2), prom)  # refit period 3600 s
    b = body(mode="predictive")
    b["status"] = dumped(await rec.reconcile(b, now=NOW, child=None))
    assert prom.queries.count("query_range") == 1
    assert "no history for the forecast: no history" in _ready(b["status"])
    for seconds in (15, 30, 3585):
        at = NOW + dt.timedelta(seconds=seconds)
        b["status"] = dumped(await rec.reconcile(b, now=at, child=None))
        assert prom.queries.count("query_range") == 1  # not retried in the foreground
        assert "no history for the forecast: no history" in _ready(b["status"])
    await rec.reconcile(b, now=NOW + dt.timedelta(seconds=3600), child=None)
    assert prom.queries.count("query_range") == 2  # a refit period later: read again


async def test_the_forecast_error_gauge_goes_when_the_policy_stops_deciding() -> None:
    """Paused, Stalled by another autoscaler, or its target paused: no forecast error to show."""
    from controllers.scalingpolicy.conflicts import TargetIndex

    predictive: Any = {
        "mode": "predictive",
        "forecast": {"minimumHistory": "24h", "maxErrorPercent": 50},
    }
    target = FakeTarget(replicas=2)
    index = TargetIndex()
    index.seeded = True
    rec = reconciler(target, FakeProm(load=100, history=daily(3)), index=index)
    later = NOW + dt.timedelta(seconds=15)
    b = body(uid="p1", name="paused", **predictive)
    await rec.reconcile(b, now=NOW, child=None)
    assert _gauge("paused") is not None
    b["spec"]["paused"] = True
    await rec.reconcile(b, now=later, child=None)
    assert _gauge("paused") is None
    b = body(uid="p2", name="stalled", **predictive)
    index.observe_policy(b, deleted=False)
    await rec.reconcile(b, now=NOW, child=None)
    assert _gauge("stalled") is not None
    index.observe_hpa({"metadata": {"name": "h", "namespace": "ns"},
                       "spec": {"scaleTargetRef": {"kind": "XynergyService", "name": "crm"}}},
                      deleted=False)  # fmt: skip
    await rec.reconcile(b, now=later, child=None)
    assert _gauge("stalled") is None
    index.observe_hpa({"metadata": {"name": "h", "namespace": "ns"}}, deleted=True)
    b = body(uid="p3", name="target-paused", **predictive)
    await rec.reconcile(b, now=NOW, child=None)
    assert _gauge("target-paused") is not None
    target.paused = True
    await rec.reconcile(b, now=later, child=None)
    assert _gauge("target-paused") is None
