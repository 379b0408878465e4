"""Status bookkeeping and events, table-driven, checked against the kstatus invariants."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from apis.conditions import check_invariants, get_condition
from apis.v1alpha1 import XynergyService
from apis.v1alpha1.xynergyservice import XynergyServiceStatus
from controllers.core.errors import StalledError, TransientError
from controllers.xynergyservice.observed import BackendStatus
from controllers.xynergyservice.observed import from_deployment as status_from_deployment
from controllers.xynergyservice.resources import build_deployment
from controllers.xynergyservice.status import (
    compute_status,
    events_for,
    status_changed,
    volatile_fields,
)

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def _svc(generation: int = 2, **spec: Any) -> XynergyService:
    return XynergyService.model_validate(
        {
            "metadata": {"name": "crm", "namespace": "prod", "uid": "u", "generation": generation},
            "spec": {"image": "reg/crm:1", **spec},
        }
    )


def _deployment(svc: XynergyService, **status: Any) -> dict[str, Any]:
    dep = build_deployment(svc)
    dep["metadata"]["generation"] = 4
    dep["status"] = {"observedGeneration": 4, **status}
    return dep


READY = {
    "replicas": 1,
    "updatedReplicas": 1,
    "readyReplicas": 1,
    "availableReplicas": 1,
    "conditions": [{"type": "Available", "status": "True"}],
}


@pytest.mark.parametrize(
    ("status", "ready", "reason"),
    [
        (READY, True, "Ready"),
        ({**READY, "observedGeneration": 3}, False, "RollingOut"),
        ({**READY, "updatedReplicas": 0}, False, "RollingOut"),
        ({**READY, "replicas": 2}, False, "RollingOut"),
        ({**READY, "availableReplicas": 0}, False, "RollingOut"),
        ({**READY, "conditions": [{"type": "Available", "status": "False"}]}, False, "Unavailable"),
        (
            {
                **READY,
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                ],
            },
            False,
            "ProgressDeadlineExceeded",
        ),
    ],
)
def test_deployment_readiness(status: dict[str, Any], ready: bool, reason: str) -> None:
    svc = _svc()
    observed = status_from_deployment(svc, _deployment(svc, **status))
    assert (observed.ready, observed.reason) == (ready, reason)


def test_a_deployment_running_other_pods_is_not_ready() -> None:
    svc = _svc()
    dep = _deployment(svc, **READY)
    assert status_from_deployment(_svc(generation=3, image="reg/crm:2"), dep).reason == "Updating"
    rescaled = status_from_deployment(_svc(generation=3, replicas=1), dep)
    assert (rescaled.ready, rescaled.latest_created_revision) == (True, "crm-00002"), (
        "a generation that changed only the count runs the same revision"
    )
    del dep["metadata"]["annotations"]["xynergy.io/template"]
    assert status_from_deployment(_svc(generation=3), dep).reason == "Updating", (
        "a Deployment from before the Pod-spec digest is current only at its generation"
    )
    assert status_from_deployment(svc, dep).ready


def _serving(svc: XynergyService, revision: str = "crm-00002") -> XynergyService:
    status = {
        "latestReadyRevision": revision,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Ready",
                "message": "1/1 instances ready",
                "lastTransitionTime": "2026-11-27T11:00:00Z",
            }
        ],
    }
    return svc.model_copy(update={"status": XynergyServiceStatus.model_validate(status)})


SCALING_UP = {**READY, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1,
              "conditions": [{"type": "Available", "status": "False"}]}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "serving", "ready", "reason"),
    [
        (SCALING_UP, True, True, "Scaling"),
        ({**SCALING_UP, "updatedReplicas": 1, "replicas": 1}, True, True, "Scaling"),
        ({**SCALING_UP, "availableReplicas": 0}, True, False, "RollingOut"),
        ({**SCALING_UP, "replicas": 4}, True, False, "RollingOut"),
        (SCALING_UP, False, False, "RollingOut"),
        # the Deployment controller has not seen the new count yet (status a generation
        # behind): the revision still serves, Ready does not flap False on every scale
        ({**READY, "observedGeneration": 3}, True, True, "Scaling"),
        ({**READY, "observedGeneration": 3}, False, False, "RollingOut"),
    ],
)
def test_a_serving_revision_stays_ready_while_it_scales(
    status: dict[str, Any], serving: bool, ready: bool, reason: str
) -> None:
    """More instances asked of the revision that is serving (no older Pods left, at least one
    available) is not a rollout: Ready stays True, reason Scaling, and the counts are not worth
    a write each; a revision that never became Ready is still rolling out."""
    svc = _svc(replicas=3)
    dep = _deployment(svc, **status)
    observed = status_from_deployment(_serving(svc) if serving else svc, dep)
    assert (observed.ready, observed.reason) == (ready, reason)
    if ready:
        assert observed.message == "revision crm-00002 is serving; scaling to 3 instances"
        new = compute_status(_serving(svc), observed=observed, error=None, now=NOW)
        ready_now = get_condition(new.conditions, "Ready")
        assert ready_now is not None
        assert ready_now.last_transition_time == dt.datetime(2026, 11, 27, 11, tzinfo=dt.UTC)
        assert volatile_fields(new) == {"replicas", "readyReplicas"}
        settled = {**READY, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
        done = compute_status(
            svc.model_copy(update={"status": new}),
            observed=status_from_deployment(svc, _deployment(svc, **settled)),
            error=None,
            now=NOW,
        )
        assert volatile_fields(done) == frozenset()


def test_missing_deployment() -> None:
    observed = status_from_deployment(_svc(), None)
    assert (observed.exists, observed.ready, observed.reason) == (False, False, "Creating")


OBSERVED_READY = BackendStatus(
    exists=True,
    ready=True,
    reason="Ready",
    message="1/1 instances ready",
    url="http://crm.prod.svc.cluster.local",
    latest_created_revision="crm-00002",
    latest_ready_revision="crm-00002",
    replicas=1,
    ready_replicas=1,
)


@pytest.mark.parametrize(
    ("observed", "error", "ready_status", "extra"),
    [
        (OBSERVED_READY, None, "True", None),
        (
            BackendStatus(exists=False, ready=False, reason="Creating", message="m"),
            None,
            "Unknown",
            "Reconciling",
        ),
        (None, StalledError("Secret 'db' not found", reason="SecretNotFound"), "False", "Stalled"),
        (
            None,
            TransientError("503 from Cloud Run", reason="ApiUnavailable"),
            "Unknown",
            "Reconciling",
        ),
    ],
)
def test_compute_status_keeps_invariants(
    observed: BackendStatus | None, error: Exception | None, ready_status: str, extra: str | None
) -> None:
    svc = _svc()
    status = compute_status(svc, observed=observed, error=error, now=NOW)  # type: ignore[arg-type]
    assert status.observed_generation == 2
    ready = get_condition(status.conditions, "Ready")
    assert ready is not None
    assert ready.status == ready_status
    types = {c.type for c in status.conditions}
    assert types == {"Ready"} | ({extra} if extra else set())
    assert check_invariants(generation=2, observed_generation=2, conditions=status.conditions) == []


def test_stalled_message_names_the_secret_and_recovers() -> None:
    svc = _svc()
    stalled = compute_status(
        svc,
        observed=None,
        error=StalledError("Secret 'db' not found", reason="SecretNotFound"),
        now=NOW,
    )
    ready = get_condition(stalled.conditions, "Ready")
    assert ready is not None
    assert "Secret 'db'" in ready.message
    svc.status = stalled
    recovered = compute_status(svc, observed=OBSERVED_READY, error=None, now=NOW)
    assert [c.type for c in recovered.conditions] == ["Ready"]
    events = events_for(stalled, recovered, writes=1, created=True)
    assert [e.reason for e in events] == ["Created", "Ready"]


def test_ready_event_only_when_it_is_news() -> None:
    """Create -> progressing -> Ready posts Created only (two Event writes were one); an
    update that rolls out (Ready False) and comes back posts Updated, then Ready."""
    svc = _svc()
    rolling = BackendStatus(exists=True, ready=False, reason="RollingOut", message="0/1")
    progressing = compute_status(svc, observed=rolling, error=None, now=NOW)
    created = events_for(None, progressing, writes=2, created=True)
    assert [e.reason for e in created] == ["Created"]
    svc.status = progressing
    ready = compute_status(svc, observed=OBSERVED_READY, error=None, now=NOW)
    assert events_for(progressing, ready, writes=0, created=False) == []
    svc.status = ready
    updating = compute_status(svc, observed=rolling, error=None, now=NOW)
    assert get_condition(updating.conditions, "Ready").status == "False"  # type: ignore[union-attr]
    assert [e.reason for e in events_for(ready, updating, writes=1, created=False)] == ["Updated"]
    svc.status = updating
    back = compute_status(svc, observed=OBSERVED_READY, error=None, now=NOW)
    assert [e.reason for e in events_for(updating, back, writes=0, created=False)] == ["Ready"]


def test_unchanged_observation_is_not_a_change() -> None:
    svc = _svc()
    first = compute_status(svc, observed=OBSERVED_READY, error=None, now=NOW)
    svc.status = first
    again = compute_status(
        svc, observed=OBSERVED_READY, error=None, now=NOW + dt.timedelta(hours=1)
    )
    assert not status_changed(first, again)
    assert events_for(first, again, writes=0, created=False) == []


def test_failed_event_only_when_the_stall_is_new() -> None:
    svc = _svc()
    err = StalledError("Secret 'db' not found", reason="SecretNotFound")
    first = compute_status(svc, observed=None, error=err, now=NOW)
    assert [e.reason for e in events_for(None, first, writes=0, created=False)] == ["Failed"]
    svc.status = first
    again = compute_status(svc, observed=None, error=err, now=NOW)
    assert events_for(first, again, writes=0, created=False) == []


def test_invalid_spec_message_names_the_field_once() -> None:
    """Issue 20 item 3: the Stalled message said `spec.spec.port`."""
    from pydantic import ValidationError

    from controllers.xynergyservice.status import invalid_status

    body = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": "crm", "namespace": "prod", "uid": "u", "generation": 5},
        "spec": {"image": "reg/crm:1", "port": 0, "env": [{"name": "A", "value": "1"}]},
    }
    try:
        XynergyService.model_validate(body)
    except ValidationError as exc:
        status = invalid_status(body, exc, now=NOW)
    else:
        pytest.fail("port 0 must be refused by the model")
    stalled = get_condition(status.conditions, "Stalled")
    assert stalled is not None
    assert stalled.reason == "InvalidSpec"
    assert stalled.message.startswith("spec.port: ")
    assert "spec.spec" not in stalled.message
    assert status.observed_generation == 5
    assert check_invariants(generation=5, observed_generation=5, conditions=status.conditions) == []


PENDING_POD = {
    "metadata": {"name": "crm-7d4-abc"},
    "status": {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient memory.",
            }
        ],
    },
}


def test_unschedulable_pods_surface_in_the_conditions() -> None:
    """Issue 20 item 2: a rollout waiting on Pods the scheduler cannot place says why."""
    from controllers.xynergyservice.observed import with_scheduling

    svc = _svc()
    rolling = status_from_deployment(svc, _deployment(svc, **{**READY, "availableReplicas": 0}))
    observed = with_scheduling(rolling, [PENDING_POD])
    status = compute_status(svc, observed=observed, error=None, now=NOW)
    ready = get_condition(status.conditions, "Ready")
    assert ready is not None
    assert ready.status != "True"  # Unknown: never decided before
    assert ready.reason == "Unschedulable"
    assert "Insufficient memory" in ready.message
    assert "crm-7d4-abc" in ready.message
    assert get_condition(status.conditions, "Reconciling") is not None


def test_progress_deadline_stalls_with_the_scheduling_failure() -> None:
    from controllers.xynergyservice.observed import with_scheduling

    svc = _svc()
    exceeded = {
        **READY,
        "availableReplicas": 0,
        "conditions": [
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "crm-7d4" has timed out progressing.',
            }
        ],
    }
    observed = with_scheduling(
        status_from_deployment(svc, _deployment(svc, **exceeded)), [PENDING_POD]
    )
    status = compute_status(svc, observed=observed, error=None, now=NOW)
    stalled = get_condition(status.conditions, "Stalled")
    assert stalled is not None
    assert stalled.reason == "ProgressDeadlineExceeded"
    assert "timed out progressing" in stalled.message
    assert "Insufficient memory" in stalled.message
    assert check_invariants(generation=2, observed_generation=2, conditions=status.conditions) == []


@pytest.mark.parametrize(
    ("restored", "reason"), [(True, "ChildRecreated"), (False, "ChildMissing")]
)
def test_a_missing_child_makes_ready_false(restored: bool, reason: str) -> None:
    """Issue 20 item 1: Ready must not stay True while a child is missing."""
    from controllers.xynergyservice.observed import missing_children

    svc = _svc()
    ready = status_from_deployment(svc, _deployment(svc, **READY))
    assert ready.ready
    observed = missing_children(ready, ["Service crm"], restored=restored)
    status = compute_status(svc, observed=observed, error=None, now=NOW)
    cond = get_condition(status.conditions, "Ready")
    assert cond is not None
    assert cond.status != "True"
    assert cond.reason == reason
    assert "Service crm" in cond.message
    assert missing_children(ready, [], restored=restored) == ready


def test_a_progressing_service_never_ready_stays_unknown_without_a_write() -> None:
    """Ready=Unknown (never decided) must not turn into False on the next progressing
    converge: that was a status write per object for nothing."""
    svc = _svc()
    rolling = BackendStatus(exists=True, ready=False, reason="RollingOut", message="m")
    first = compute_status(svc, observed=rolling, error=None, now=NOW)
    svc.status = first
    again = compute_status(svc, observed=rolling, error=None, now=NOW + dt.timedelta(seconds=5))
    ready = get_condition(again.conditions, "Ready")
    assert ready is not None
    assert ready.status == "Unknown"
    assert not status_changed(first, again)
    svc.status = compute_status(svc, observed=OBSERVED_READY, error=None, now=NOW)
    after = compute_status(svc, observed=rolling, error=None, now=NOW)
    ready = get_condition(after.conditions, "Ready")
    assert ready is not None
    assert ready.status == "False"  # decided once: now it is False


FORBIDDEN = (
    'pods "crm-7d4-x2k9p" is forbidden: violates PodSecurity "restricted:latest": '
    'runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true)'
)
REPLICA_FAILURE = {
    "type": "ReplicaFailure",
    "status": "True",
    "reason": "FailedCreate",
    "message": FORBIDDEN,
}
CANNOT_CREATE = {
    **READY,
    "replicas": 0,
    "updatedReplicas": 0,
    "readyReplicas": 0,
    "availableReplicas": 0,
    "conditions": [
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
        {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
        REPLICA_FAILURE,
    ],
}


def test_pods_the_replicaset_cannot_create_stall_at_once_naming_why() -> None:
    """PodSecurity admission, a ResourceQuota or a LimitRange refusing the Pods: the
    Deployment's ReplicaFailure says so at once; waiting 10 minutes for the progress deadline
    said nothing useful."""
    svc = _svc()
    observed = status_from_deployment(svc, _deployment(svc, **CANNOT_CREATE))
    assert (observed.ready, observed.stalled, observed.reason) == (False, True, "FailedCreate")
    assert observed.message == f"the ReplicaSet cannot create Pods: {FORBIDDEN}"
    status = compute_status(svc, observed=observed, error=None, now=NOW)
    stalled = get_condition(status.conditions, "Stalled")
    ready = get_condition(status.conditions, "Ready")
    assert stalled is not None
    assert ready is not None
    assert (stalled.reason, ready.status, ready.reason) == ("FailedCreate", "False", "FailedCreate")
    assert 'violates PodSecurity "restricted:latest"' in ready.message
    assert check_invariants(generation=2, observed_generation=2, conditions=status.conditions) == []
    # the cause wins over the symptom once the progress deadline passes too
    deadline = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    past = {**CANNOT_CREATE, "conditions": [deadline, REPLICA_FAILURE]}
    assert status_from_deployment(svc, _deployment(svc, **past)).reason == "FailedCreate"

    # the Pods get created: the ReplicaSet drops the condition, and the stall clears
    stuck = svc.model_copy(update={"status": status})
    created = status_from_deployment(stuck, _deployment(svc, **READY))
    healed = compute_status(stuck, observed=created, error=None, now=NOW)
    assert get_condition(healed.conditions, "Stalled") is None
    healed_ready = get_condition(healed.conditions, "Ready")
    assert healed_ready is not None
    assert healed_ready.status == "True"


def test_a_replica_failure_of_an_older_spec_is_no_news() -> None:
    """After the user's fix (a new spec applied, or the Deployment controller not yet caught
    up with it) the old failure is not reported as the new revision's."""
    svc = _svc()
    dep = _deployment(svc, **CANNOT_CREATE)
    fixed = status_from_deployment(_svc(generation=3, image="reg/crm:2"), dep)
    assert (fixed.stalled, fixed.reason) == (False, "Updating")
    dep["metadata"]["generation"] = 5  # status.observedGeneration 4: not caught up
    behind = status_from_deployment(svc, dep)
    assert (behind.stalled, behind.reason) == (False, "RollingOut")


def test_a_serving_revision_that_cannot_add_instances_stays_ready_and_says_why() -> None:
    """A quota that refuses more instances of the revision that is serving: it still serves
    (Ready stays True, reason Scaling), and the message names the refusal."""
    quota = (
        'pods "crm-7d4-q8w2e" is forbidden: exceeded quota: pods, requested: pods=1, '
        "used: pods=1, limited: pods=1"
    )
    failure = {**REPLICA_FAILURE, "message": quota}
    svc = _svc(replicas=3)
    stuck = {**SCALING_UP, "replicas": 1, "updatedReplicas": 1,
             "conditions": [{"type": "Available", "status": "True"}, failure]}  # fmt: skip
    observed = status_from_deployment(_serving(svc), _deployment(svc, **stuck))
    assert (observed.ready, observed.stalled, observed.reason) == (True, False, "Scaling")
    assert observed.message == (
        "revision crm-00002 is serving; scaling to 3 instances: "
        f"the ReplicaSet cannot create Pods: {quota}"
    )
    never_served = status_from_deployment(svc, _deployment(svc, **stuck))
    assert (never_served.ready, never_served.stalled) == (False, True)
