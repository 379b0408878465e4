"""The reconciler, table-driven against an in-memory Backend (Knative's table tests, in small)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from apis.conditions import check_invariants, get_condition
from apis.v1alpha1 import XynergyService
from apis.v1alpha1.xynergyservice import Backend as BackendKind
from apis.v1alpha1.xynergyservice import XynergyServiceStatus
from controllers.core import ChildEvent, Requeue
from controllers.core.errors import ProviderError, StalledError, TransientError
from controllers.core.events import SaidOnce
from controllers.metrics import RECONCILE_TOTAL
from controllers.xynergyservice.observed import BackendStatus
from controllers.xynergyservice.reconciler import XynergyServiceReconciler, reconcile, release

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
READY = BackendStatus(exists=True, ready=True, reason="Ready", message="ok", url="http://x")


@dataclass
class MemoryBackend:
    """Records calls; answers or raises what the test says."""

    answer: BackendStatus = READY
    error: Exception | None = None
    calls: list[str] = field(default_factory=list)

    async def apply(self, svc: XynergyService, *, child: ChildEvent | None = None) -> BackendStatus:
        self.calls.append("apply" if child is None else f"apply({child.kind})")
        if self.error:
            raise self.error
        return BackendStatus(**{**self.answer.__dict__, "writes": 1, "created": True})

    async def observe(
        self, svc: XynergyService, *, child: ChildEvent | None = None
    ) -> BackendStatus:
        self.calls.append("observe")
        return self.answer

    async def delete(self, svc: XynergyService, *, orphan: bool) -> bool:
        self.calls.append(f"delete(orphan={orphan})")
        return True


def _svc(**spec: Any) -> XynergyService:
    return XynergyService.model_validate(
        {
            "metadata": {"name": "crm", "namespace": "ns", "uid": "u", "generation": 4},
            "spec": {"image": "reg/crm:1", **spec},
        }
    )


def _count(result: str) -> float:
    return RECONCILE_TOTAL.labels("XynergyService", result)._value.get()


@pytest.mark.parametrize(
    ("spec", "backend", "calls", "ready", "extra", "events", "requeue", "result"),
    [
        # a first Ready is in the condition, not an Event (Created says what was made)
        ({}, MemoryBackend(), ["apply"], "True", None, ["Created"], "resync", "ok"),
        ({"paused": True}, MemoryBackend(), ["observe"], "True", None, [], "resync", "ok"),
        (
            {},
            MemoryBackend(answer=BackendStatus(exists=True, ready=False, reason="R", message="m")),
            ["apply"],
            "Unknown",
            "Reconciling",
            ["Created"],
            "soon",
            "ok",
        ),
        (
            {},
            MemoryBackend(error=StalledError("Secret 'db' not found", reason="SecretNotFound")),
            ["apply"],
            "False",
            "Stalled",
            ["Failed"],
            "backoff",
            "stalled",
        ),
        (
            {},
            MemoryBackend(error=TransientError("503", reason="ApiUnavailable")),
            ["apply"],
            "Unknown",
            "Reconciling",
            ["ApiUnavailable"],
            "backoff",
            "retry",
        ),
    ],
)
async def test_reconcile_table(
    spec: dict[str, Any],
    backend: MemoryBackend,
    calls: list[str],
    ready: str,
    extra: str | None,
    events: list[str],
    requeue: str,
    result: str,
) -> None:
    before = _count(result)
    outcome = await reconcile(_svc(**spec), backends={BackendKind.KUBERNETES: backend}, now=NOW)
    status = cast(XynergyServiceStatus, outcome.status)  # Result types it as any BaseModel
    assert backend.calls == calls
    cond = get_condition(status.conditions, "Ready")
    assert cond is not None
    assert cond.status == ready
    assert {c.type for c in status.conditions} == {"Ready"} | ({extra} if extra else set())
    assert [e.reason for e in outcome.events] == events
    assert outcome.requeue is Requeue(requeue)
    assert status.observed_generation == 4
    assert status.last_reconcile_time == NOW
    assert check_invariants(generation=4, observed_generation=4, conditions=status.conditions) == []
    assert _count(result) == before + 1


async def test_unconfigured_backend_stalls() -> None:
    outcome = await reconcile(
        _svc(backend="cloudRun", cloudRun={"project": "proj-123", "region": "us-central1"}),
        backends={},
        now=NOW,
    )
    status = cast(XynergyServiceStatus, outcome.status)  # Result types it as any BaseModel
    cond = get_condition(status.conditions, "Stalled")
    assert cond is not None
    assert cond.reason == "BackendUnavailable"


@pytest.mark.parametrize(("policy", "orphan"), [("Delete", False), ("Orphan", True)])
async def test_release_honours_deletion_policy(policy: str, orphan: bool) -> None:
    backend = MemoryBackend()
    gone, event = await release(
        _svc(deletionPolicy=policy), backends={BackendKind.KUBERNETES: backend}
    )
    assert gone
    assert backend.calls == [f"delete(orphan={orphan})"]
    assert event.reason == ("Orphaned" if orphan else "Deleted")


async def test_a_child_event_reaches_the_backend() -> None:
    backend = MemoryBackend()
    child = ChildEvent("Service", {"metadata": {"name": "crm"}}, deleted=True)
    await reconcile(_svc(), backends={BackendKind.KUBERNETES: backend}, now=NOW, child=child)
    assert backend.calls == ["apply(Service)"]


async def test_an_invalid_object_stalls_without_touching_the_backend() -> None:
    backend = MemoryBackend()
    reconciler = XynergyServiceReconciler({BackendKind.KUBERNETES: backend})
    body = {
        "metadata": {"name": "crm", "namespace": "ns", "uid": "u", "generation": 2},
        "spec": {"image": "reg/crm:1", "port": 70000},
    }
    result = await reconciler.reconcile(body, now=NOW, child=None)
    assert backend.calls == []
    cond = get_condition(result.status.conditions, "Stalled")  # type: ignore[attr-defined]
    assert cond is not None
    assert cond.reason == "InvalidSpec"
    assert cond.message.startswith("spec.port: ")
    assert [e.reason for e in result.events] == ["Failed"]
    assert result.requeue is Requeue.RESYNC  # retrying cannot help until the spec changes


class SlowDelete(MemoryBackend):
    """A backend whose service goes only after `polls` deletions, failing `errors` first."""

    def __init__(self, *, polls: int, errors: list[ProviderError]) -> None:
        super().__init__()
        self.polls, self.errors = polls, errors

    async def delete(self, svc: XynergyService, *, orphan: bool) -> bool:
        if self.errors:
            raise self.errors.pop(0)
        self.polls -= 1
        return self.polls <= 0


async def test_a_deletion_that_waits_says_each_reason_once_and_deleted_only_when_gone() -> None:
    """finalize_waiting calls release again and again while a Cloud Run delete runs: it used
    to post "backend service deleted" on every try, and a refused delete escaped to kopf (an
    ERROR log line and an Error Event per try)."""
    refused = StalledError(
        "the caller does not have permission run.services.delete", reason="PermissionDenied"
    )
    backend = SlowDelete(polls=3, errors=[refused, refused])
    reconciler = XynergyServiceReconciler({BackendKind.KUBERNETES: backend})
    body = _svc().model_dump(by_alias=True, mode="json")
    said, once = [], SaidOnce()  # the core's record of what a held release said
    for _ in range(5):
        gone, event = await reconciler.release(body)
        said.append((gone, event if gone or event is None or once.news("u", event) else None))
    assert [gone for gone, _ in said] == [False, False, False, False, True]
    events = [(e.type, e.reason) for _, e in said if e is not None]
    assert events == [
        ("Warning", "DeletionBlocked"),
        ("Normal", "DeletionWaiting"),
        ("Normal", "Deleted"),
    ]
    blocked = said[0][1]
    assert blocked is not None
    assert "run.services.delete" in blocked.message


async def test_a_deletion_that_waits_says_so_in_the_status_while_it_waits() -> None:
    """The status is the record of a waiting deletion (and of what was said about it, read
    back after a restart): Reconciling `Deleting` naming the reason, Ready not True; nothing to
    write once the service is gone."""
    refused = StalledError("permission run.services.delete denied", reason="PermissionDenied")
    backend = SlowDelete(polls=2, errors=[refused])
    reconciler = XynergyServiceReconciler({BackendKind.KUBERNETES: backend})
    body = _svc().model_dump(by_alias=True, mode="json")
    messages = []
    for _ in range(2):
        assert not (await reconciler.release(body))[0]
        status = reconciler.deletion_status(body)
        assert status is not None
        reconciling = get_condition(status.conditions, "Reconciling")
        ready = get_condition(status.conditions, "Ready")
        assert reconciling is not None
        assert ready is not None
        assert (reconciling.status, reconciling.reason) == ("True", "Deleting")
        assert ready.status != "True"
        messages.append(reconciling.message)
        assert reconciler.deletion_status(body) is None, "once per held release"
    assert messages == [
        "being deleted: deleting the backend service failed (PermissionDenied): permission "
        "run.services.delete denied; retried",
        "being deleted: waiting for the backend service to go",
    ]
    assert (await reconciler.release(body))[0]
    assert reconciler.deletion_status(body) is None


@pytest.mark.parametrize("paused", [False, True])
async def test_a_stored_name_its_children_cannot_have_stalls_before_the_backend(
    paused: bool,
) -> None:
    """Stored before the CRD refused it at creation: Stalled InvalidName naming metadata.name
    and the limit; no child is applied (nor observed) under a name it cannot have."""
    svc = _svc(paused=paused)
    svc.metadata.name = "n" * 64
    backend = MemoryBackend()
    outcome = await reconcile(svc, backends={BackendKind.KUBERNETES: backend}, now=NOW)
    status = cast(XynergyServiceStatus, outcome.status)
    assert not check_invariants(
        generation=4, observed_generation=status.observed_generation, conditions=status.conditions
    )
    cond = get_condition(status.conditions, "Stalled")
    assert cond is not None
    assert cond.reason == "InvalidName"
    assert (cond.message or "").startswith("metadata.name: must be at most 63 characters")
    assert backend.calls == []
    assert outcome.requeue is Requeue.BACKOFF
