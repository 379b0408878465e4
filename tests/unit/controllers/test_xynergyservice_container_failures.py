"""Containers of a rollout that cannot start (the image cannot be pulled, the app exits or is
OOM-killed) are named in Ready/Reconciling in the kubelet's words, with only the stable part of
them (no status write per back-off), and only for the Pods of the revision being rolled out.
The Pod bodies are the kubelet's (kwok, which simulates the dev cluster's Pods, only runs them).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from apis.conditions import check_invariants, get_condition
from apis.v1alpha1 import XynergyService
from controllers.core.status import status_changed
from controllers.xynergyservice.observed import (
    BackendStatus,
    from_deployment,
    rollout_pods,
    with_scheduling,
)
from controllers.xynergyservice.resources import build_deployment
from controllers.xynergyservice.status import compute_status, volatile_fields

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 4, 3, 30, tzinfo=dt.UTC)
NEW_RS, OLD_RS = "crm-7d4f9c8b6", "crm-5b8c7d9f4"


def _svc(**status: Any) -> XynergyService:
    return XynergyService.model_validate(
        {
            "metadata": {"name": "crm", "namespace": "prod", "uid": "u", "generation": 2},
            "spec": {"image": "reg/crm:typo", "replicas": 2},
            "status": status or None,
        }
    )


def _deployment(svc: XynergyService, *, generation: int = 4, **status: Any) -> dict[str, Any]:
    dep = build_deployment(svc)
    dep["metadata"]["generation"] = generation
    dep["status"] = {"observedGeneration": 4, **status}
    return dep


def _progressing(message: str, reason: str = "ReplicaSetUpdated") -> dict[str, Any]:
    status = "False" if reason == "ProgressDeadlineExceeded" else "True"
    return {"type": "Progressing", "status": status, "reason": reason, "message": message}


# The new ReplicaSet's Pods are not available yet; its old one's Pods still serve.
ROLLING: dict[str, Any] = {
    "replicas": 3,
    "updatedReplicas": 1,
    "readyReplicas": 2,
    "availableReplicas": 2,
    "conditions": [
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
        _progressing(f'ReplicaSet "{NEW_RS}" is progressing.'),
    ],
}


def _pod(name: str, rs: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "prod",
            "labels": {"xynergy.io/service": "crm", "pod-template-hash": rs.rsplit("-", 1)[1]},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "controller": True}
            ],
        },
        "status": {
            "phase": "Running" if "running" in container.get("state", {}) else "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "image": "reg/crm:typo", "imageID": "", **container}
            ],
        },
    }


TERMINATED_1 = {
    "exitCode": 1,
    "reason": "Error",
    "startedAt": "2026-12-04T03:20:01Z",
    "finishedAt": "2026-12-04T03:20:02Z",
    "containerID": "containerd://4f1c",
}
OOM = {**TERMINATED_1, "exitCode": 137, "reason": "OOMKilled"}


def _waiting(reason: str, message: str, **more: Any) -> dict[str, Any]:
    return {"state": {"waiting": {"reason": reason, "message": message}}, "ready": False, **more}


ERR_IMAGE_PULL = _waiting(
    "ErrImagePull",
    'failed to pull and unpack image "docker.io/reg/crm:typo": failed to resolve reference '
    '"docker.io/reg/crm:typo": docker.io/reg/crm:typo: not found',
    restartCount=0,
)
IMAGE_PULL_BACK_OFF = _waiting(
    "ImagePullBackOff", 'Back-off pulling image "reg/crm:typo"', restartCount=0
)


def _crash_loop(back_off: str, terminated: dict[str, Any], restarts: int) -> dict[str, Any]:
    message = f"back-off {back_off} restarting failed container=app pod=crm-7d4f9c8b6-x2k9p"
    return _waiting(
        "CrashLoopBackOff",
        f"{message}_prod(0d5c)",
        lastState={"terminated": terminated},
        restartCount=restarts,
    )


# Between two back-offs the kubelet runs the container again (Ready without a probe).
RUNNING_AGAIN = {
    "state": {"running": {"startedAt": "2026-12-04T03:21:00Z"}},
    "lastState": {"terminated": TERMINATED_1},
    "ready": True,
    "restartCount": 4,
}
STARTING = _waiting("ContainerCreating", "", restartCount=0)

PULL = 'pod crm-7d4f9c8b6-x2k9p: container app: ImagePullBackOff, cannot pull image "reg/crm:typo"'
CRASH = "pod crm-7d4f9c8b6-x2k9p: container app: CrashLoopBackOff, last exit code 1 (Error)"
OOM_MESSAGE = "pod crm-7d4f9c8b6-x2k9p: container app: OOMKilled, last exit code 137 (OOMKilled)"


def _rolling(svc: XynergyService, **status: Any) -> tuple[BackendStatus, dict[str, Any]]:
    dep = _deployment(svc, **{**ROLLING, **status})
    return from_deployment(svc, dep), dep


@pytest.mark.parametrize(
    ("container", "reason", "message"),
    [
        (ERR_IMAGE_PULL, "ImagePullBackOff", PULL),
        (IMAGE_PULL_BACK_OFF, "ImagePullBackOff", PULL),
        (_crash_loop("10s", TERMINATED_1, 1), "CrashLoopBackOff", CRASH),
        (_crash_loop("5m0s", TERMINATED_1, 9), "CrashLoopBackOff", CRASH),
        (RUNNING_AGAIN, "CrashLoopBackOff", CRASH),
        ({"state": {"terminated": TERMINATED_1}, "restartCount": 2}, "CrashLoopBackOff", CRASH),
        (_crash_loop("20s", OOM, 2), "OOMKilled", OOM_MESSAGE),
    ],
    ids=[
        "ErrImagePull",
        "ImagePullBackOff",
        "CrashLoopBackOff-10s",
        "CrashLoopBackOff-5m",
        "running-between-back-offs",
        "terminated",
        "OOMKilled",
    ],
)
def test_a_container_that_cannot_start_is_named_in_the_kubelets_words(
    container: dict[str, Any], reason: str, message: str
) -> None:
    """The reason is the kubelet's; the message names the pod, the container and the stable
    part (the image; the last termination's exit code and reason), so every state of one
    failure gives the same condition: ErrImagePull and ImagePullBackOff alternate, and the
    back-off text and restart count change on every back-off."""
    svc = _svc()
    rolling, dep = _rolling(svc)
    assert rolling.reason == "RollingOut"
    pods = [_pod("crm-7d4f9c8b6-x2k9p", NEW_RS, container)]
    observed = with_scheduling(rolling, rollout_pods(dep, pods))
    assert (observed.ready, observed.stalled) == (False, False)
    assert (observed.reason, observed.message) == (reason, message)
    assert "back-off" not in observed.message
    status = compute_status(svc, observed=observed, error=None, now=NOW)
    ready = get_condition(status.conditions, "Ready")
    reconciling = get_condition(status.conditions, "Reconciling")
    assert ready is not None
    assert reconciling is not None
    assert (ready.reason, ready.message) == (reason, message)
    assert (reconciling.reason, reconciling.message) == (reason, message)


def test_one_crash_loop_is_one_status_however_often_it_backs_off() -> None:
    """The status after each back-off (and the runs between them) is the one already written:
    no status write per back-off."""
    svc = _svc()
    rolling, dep = _rolling(svc)
    states = [
        _crash_loop("10s", TERMINATED_1, 1),
        RUNNING_AGAIN,
        _crash_loop("20s", TERMINATED_1, 2),
        _crash_loop("5m0s", TERMINATED_1, 9),
    ]
    first = None
    for state in states:
        observed = with_scheduling(
            rolling, rollout_pods(dep, [_pod("crm-7d4f9c8b6-x2k9p", NEW_RS, state)])
        )
        status = compute_status(svc, observed=observed, error=None, now=NOW)
        if first is None:
            first = status
            continue
        assert not status_changed(first, status, volatile=volatile_fields(status))


def test_only_the_pods_of_the_revision_being_rolled_out_count() -> None:
    """An old Pod still serving that restarts is not the new revision's failure; the new
    revision's is named even when an old one sorts first."""
    svc = _svc()
    rolling, dep = _rolling(svc)
    old = _pod("crm-5b8c7d9f4-aaaaa", OLD_RS, _crash_loop("40s", OOM, 3))
    starting = _pod("crm-7d4f9c8b6-x2k9p", NEW_RS, STARTING)
    assert with_scheduling(rolling, rollout_pods(dep, [old, starting])) == rolling
    crashing = _pod("crm-7d4f9c8b6-x2k9p", NEW_RS, _crash_loop("40s", TERMINATED_1, 3))
    observed = with_scheduling(rolling, rollout_pods(dep, [old, crashing]))
    assert (observed.reason, observed.message) == ("CrashLoopBackOff", CRASH)


def test_a_deployment_status_older_than_its_spec_does_not_pick_the_old_replica_set() -> None:
    """Before the deployment controller has seen the new template, its Progressing condition
    still names the old ReplicaSet: then no Pod is ruled out (rather than only the old ones
    counting)."""
    svc = _svc()
    done = _progressing(
        f'ReplicaSet "{OLD_RS}" has successfully progressed.', "NewReplicaSetAvailable"
    )
    stale = _deployment(svc, generation=5, **{**ROLLING, "conditions": [done]})
    old = _pod("crm-5b8c7d9f4-aaaaa", OLD_RS, RUNNING_AGAIN | {"restartCount": 0})
    new = _pod("crm-7d4f9c8b6-x2k9p", NEW_RS, IMAGE_PULL_BACK_OFF)
    assert rollout_pods(stale, [old, new]) == [old, new]
    current = _deployment(svc, **ROLLING)
    assert rollout_pods(current, [old, new]) == [new]


def test_progress_deadline_stalls_with_the_container_failure_appended() -> None:
    svc = _svc()
    exceeded = [
        {"type": "Available", "status": "True"},
        _progressing(f'ReplicaSet "{NEW_RS}" has timed out progressing.', "ProgressDeadlineExceeded"),
    ]  # fmt: skip
    rolling, dep = _rolling(svc, conditions=exceeded)
    assert rolling.stalled
    pods = [_pod("crm-7d4f9c8b6-x2k9p", NEW_RS, IMAGE_PULL_BACK_OFF)]
    observed = with_scheduling(rolling, rollout_pods(dep, pods))
    assert observed.reason == "ProgressDeadlineExceeded"
    assert observed.message == f'ReplicaSet "{NEW_RS}" has timed out progressing.; {PULL}'
    status = compute_status(svc, observed=observed, error=None, now=NOW)
    stalled = get_condition(status.conditions, "Stalled")
    assert stalled is not None
    assert stalled.message == observed.message
    assert check_invariants(generation=2, observed_generation=2, conditions=status.conditions) == []


def _serving() -> XynergyService:
    """Ready on the revision the Deployment runs (so missing instances are Scaling)."""
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "2/2 instances ready",
        "lastTransitionTime": "2026-12-04T03:00:00Z",
    }
    return _svc(latestReadyRevision="crm-00002", latestCreatedRevision="crm-00002", conditions=[ready])  # fmt: skip


SERVING_ONE_DOWN: dict[str, Any] = {
    "replicas": 2,
    "updatedReplicas": 2,
    "readyReplicas": 1,
    "availableReplicas": 1,
    "conditions": [
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
        _progressing(f'ReplicaSet "{NEW_RS}" has successfully progressed.', "NewReplicaSetAvailable"),
    ],
}  # fmt: skip


def test_a_serving_revision_whose_instance_crash_loops_stays_ready_and_says_so() -> None:
    """It serves (Ready True, reason Scaling as before), and the message names the container
    that keeps failing; one that restarted once and is ready again is no news."""
    svc = _serving()
    serving = from_deployment(svc, _deployment(svc, **SERVING_ONE_DOWN))
    assert (serving.ready, serving.reason) == (True, "Scaling")
    dep = _deployment(svc, **SERVING_ONE_DOWN)
    healthy = _pod("crm-7d4f9c8b6-aaaaa", NEW_RS, RUNNING_AGAIN)  # restarted, ready again
    crashing = _pod("crm-7d4f9c8b6-x2k9p", NEW_RS, _crash_loop("1m20s", TERMINATED_1, 5))
    assert with_scheduling(serving, rollout_pods(dep, [healthy])) == serving
    observed = with_scheduling(serving, rollout_pods(dep, [healthy, crashing]))
    assert (observed.ready, observed.reason) == (True, "Scaling")
    assert observed.message == f"{serving.message}; {CRASH}"
    status = compute_status(svc, observed=observed, error=None, now=NOW)
    ready = get_condition(status.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.message) == ("True", observed.message)


def test_a_ready_service_with_all_its_instances_is_not_changed_by_its_pods() -> None:
    svc = _serving()
    full: dict[str, Any] = {**SERVING_ONE_DOWN, "readyReplicas": 2, "availableReplicas": 2}
    full["conditions"] = [{"type": "Available", "status": "True"}, *full["conditions"][1:]]
    ready = from_deployment(svc, _deployment(svc, **full))
    assert ready.reason == "Ready"
    crashing = _pod("crm-7d4f9c8b6-x2k9p", NEW_RS, _crash_loop("10s", TERMINATED_1, 1))
    assert with_scheduling(ready, [copy.deepcopy(crashing)]) == ready


def test_a_serving_revision_with_no_instance_left_is_not_ready_and_names_the_failure() -> None:
    svc = _serving()
    none_left = {**SERVING_ONE_DOWN, "readyReplicas": 0, "availableReplicas": 0}
    dep = _deployment(svc, **none_left)
    down = from_deployment(svc, dep)
    assert (down.ready, down.reason) == (False, "RollingOut")
    crashing = _pod("crm-7d4f9c8b6-x2k9p", NEW_RS, _crash_loop("40s", OOM, 3))
    observed = with_scheduling(down, rollout_pods(dep, [crashing]))
    assert (observed.ready, observed.reason, observed.message) == (False, "OOMKilled", OOM_MESSAGE)
