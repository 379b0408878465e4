"""Pure: what a backend's objects say about a XynergyService, as one `BackendStatus`.

Kubernetes: the Deployment (the logic of `kubectl rollout status`), whether the Service exists,
and why the rollout's Pods do not schedule or their containers do not start. Cloud Run: the
service's terminal condition and revisions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from apis.conditions import READY, is_true
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.xynergyservice.resources.kubernetes import (
    service_url,
    template_digest,
)
from controllers.xynergyservice.resources.naming import (
    REVISION_ANNOTATION,
    TEMPLATE_ANNOTATION,
    revision_name,
    selector_string,
)

__all__ = [
    "CONTAINER_CONFIG_ERROR",
    "CONTAINER_FAILURES",
    "BackendStatus",
    "Traffic",
    "container_config_error",
    "container_failure",
    "from_deployment",
    "missing_children",
    "new_replica_set",
    "replica_failure",
    "rollout_pods",
    "unschedulable",
    "with_scheduling",
]


@dataclass(frozen=True)
class Traffic:
    """Share of traffic a revision receives."""

    revision: str
    percent: int
    tag: str | None = None


@dataclass(frozen=True)
class BackendStatus:
    """What a backend reports about one service."""

    exists: bool
    ready: bool
    reason: str
    message: str
    stalled: bool = False
    """The rollout failed (e.g. its progress deadline passed): Stalled, not Reconciling."""
    url: str | None = None
    latest_created_revision: str | None = None
    latest_ready_revision: str | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    selector: str | None = None
    traffic: tuple[Traffic, ...] = field(default_factory=tuple)
    writes: int = 0
    """How many write calls this converge made (0 when nothing differed)."""
    created: bool = False
    """The backend service did not exist before this converge."""
    changed_sources: tuple[str, ...] = ()
    """Secrets/ConfigMaps (`Secret name`) whose referenced data changed and were rolled out."""
    rescaled: bool = False
    """The only change written was the instance count (no new revision, no Updated event)."""


def _conditions(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conds}


def from_deployment(svc: XynergyService, dep: Mapping[str, Any] | None) -> BackendStatus:
    """What the Deployment says about the service (the logic of `kubectl rollout status`)."""
    url = service_url(svc)
    selector = selector_string(svc)
    if dep is None:
        return BackendStatus(
            exists=False,
            ready=False,
            reason="Creating",
            message="the Deployment does not exist yet",
            url=url,
            selector=selector,
        )
    meta = dep.get("metadata") or {}
    spec = dep.get("spec") or {}
    st = dep.get("status") or {}
    desired = int(spec.get("replicas", 1))
    replicas = int(st.get("replicas", 0))
    updated = int(st.get("updatedReplicas", 0))
    ready_n = int(st.get("readyReplicas", 0))
    available = int(st.get("availableReplicas", 0))
    revision = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
    conds = _conditions(dep)
    common: dict[str, Any] = {
        "exists": True,
        "url": url,
        "selector": selector,
        "replicas": replicas,
        "ready_replicas": ready_n,
        "latest_created_revision": revision,
    }

    def waiting(reason: str, message: str, *, stalled: bool = False) -> BackendStatus:
        return BackendStatus(ready=False, reason=reason, message=message, stalled=stalled, **common)

    runs_spec = _runs_spec(svc, meta)
    current = int(st.get("observedGeneration", 0)) >= int(meta.get("generation", 0))
    # Pods the ReplicaSet cannot create (PodSecurity admission, a ResourceQuota, a
    # LimitRange): said at once, not after the progress deadline. Only for a Deployment that
    # runs the spec and whose status is current: after a fix, the old failure is no news.
    failure = replica_failure(dep) if runs_spec and current else None
    scaling = bool(available and revision and replicas <= updated and _was_serving(svc, revision))
    if failure is not None and not scaling:
        return waiting(failure[0], failure[1], stalled=True)
    progressing = conds.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return waiting("ProgressDeadlineExceeded", progressing.get("message", ""), stalled=True)
    if not runs_spec:
        return waiting("Updating", f"applying revision {revision_name(svc)}")
    # One stable message for the whole rollout (counts are in replicas/readyReplicas): every
    # distinct message would be another status write per object.
    rolling = f"rolling out revision {revision}: waiting for updated instances to be available"
    if replicas > updated:
        return waiting("RollingOut", rolling)
    if not current or updated < desired or available < updated or failure is not None:
        # Only the count moves (no older Pods left; or the Deployment controller has not
        # yet seen the new count, its status a generation behind): a revision that was
        # serving keeps serving while instances are added, as Knative's does (also when more
        # cannot be created: the message says why); a new one is rolling out.
        if scaling:
            return _scaling(str(revision), desired, failure, common)
        return waiting("RollingOut", rolling)
    if conds.get("Available", {}).get("status") != "True":
        return waiting("Unavailable", conds.get("Available", {}).get("message", "not available"))
    return BackendStatus(
        ready=True,
        reason="Ready",
        message=f"{ready_n}/{desired} instances ready",
        latest_ready_revision=revision,
        traffic=(Traffic(revision=revision, percent=100),) if revision else (),
        **common,
    )


def _scaling(
    revision: str, desired: int, failure: tuple[str, str] | None, common: dict[str, Any]
) -> BackendStatus:
    """Ready, reason Scaling: the revision serving gets more (or fewer) instances; the
    message says why more cannot be created, when they cannot."""
    message = f"revision {revision} is serving; scaling to {desired} instances"
    if failure is not None:
        message = f"{message}: {failure[1]}"
    return BackendStatus(
        ready=True,
        reason="Scaling",
        message=message,
        latest_ready_revision=revision,
        traffic=(Traffic(revision=revision, percent=100),),
        **common,
    )


def replica_failure(dep: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of the Deployment's ReplicaFailure=True condition (the ReplicaSet
    could not create Pods), e.g. ("FailedCreate", 'the ReplicaSet cannot create Pods: pods
    "crm-5f.." is forbidden: violates PodSecurity "restricted:latest": ...'); else None."""
    cond = _conditions(dep).get("ReplicaFailure") or {}
    if cond.get("status") != "True":
        return None
    message = cond.get("message") or "no message"
    return cond.get("reason") or "ReplicaFailure", f"the ReplicaSet cannot create Pods: {message}"


def _runs_spec(svc: XynergyService, meta: Mapping[str, Any]) -> bool:
    """The Deployment was applied with the spec's Pods: its Pod-spec digest is the spec's (a
    Deployment from before the digest: its revision is the generation's)."""
    annotations = meta.get("annotations") or {}
    have = annotations.get(TEMPLATE_ANNOTATION)
    if have is None:
        return annotations.get(REVISION_ANNOTATION) == revision_name(svc)
    return bool(have == template_digest(svc))


def _was_serving(svc: XynergyService, revision: str) -> bool:
    """The service's status says `revision` became Ready and is Ready now."""
    status = svc.status
    if status is None or status.latest_ready_revision != revision:
        return False
    return is_true(status.conditions, READY)


def unschedulable(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of the first Pod the scheduler could not place, e.g.
    ("Unschedulable", "pod crm-5f..: 0/2 nodes are available: 2 Insufficient memory.")."""
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        cond = _conditions(pod).get("PodScheduled") or {}
        if cond.get("status") == "False":
            name = (pod.get("metadata") or {}).get("name")
            return cond.get("reason") or "Unschedulable", f"pod {name}: {cond.get('message', '')}"
    return None


CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
"""The kubelet cannot make the container from its spec: e.g. runAsNonRoot with an image that
runs as root, or a Secret/ConfigMap key the env reads that is missing. It says so in the
container's waiting state, not in any Deployment condition."""


def container_config_error(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) of the first container the kubelet cannot create from its spec, e.g.
    ("CreateContainerConfigError", "pod crm-5f..: container app: container has runAsNonRoot
    and image will run as root ...")."""
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name"))):
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == CONTAINER_CONFIG_ERROR:
                name = (pod.get("metadata") or {}).get("name")
                where = f"pod {name}: container {cs.get('name')}"
                return CONTAINER_CONFIG_ERROR, f"{where}: {waiting.get('message', '')}"
    return None


IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
OOM_KILLED = "OOMKilled"
CONTAINER_FAILURES = frozenset({IMAGE_PULL_BACK_OFF, CRASH_LOOP_BACK_OFF, OOM_KILLED})
"""Reasons a container of the rollout's Pods does not start or keep running, in the kubelet's
words: the image cannot be pulled, or the app exits (or is killed for its memory) and is
restarted with a back-off. No Deployment condition reports them."""
_PULL_FAILURES = frozenset({IMAGE_PULL_BACK_OFF, "ErrImagePull"})


def container_failure(
    pods: Sequence[Mapping[str, Any]], *, serving: bool = False
) -> tuple[str, str] | None:
    """(reason, message) of the first container that cannot be pulled or keeps exiting, e.g.
    ("CrashLoopBackOff", "pod crm-5f..: container app: CrashLoopBackOff, last exit code 1
    (Error)"). Only the stable part of the kubelet's words: the image, and the exit code and
    reason of the last termination, never its back-off text ("back-off 40s restarting failed
    container ..."), which changes on every back-off and would be a status write each time.
    The kubelet alternates ErrImagePull and ImagePullBackOff: both are ImagePullBackOff.

    A restarted container that runs again between two back-offs still counts (else the
    condition would flap at each restart), except when `serving` (the revision serves): there
    only a container that is not ready counts, not one that restarted once and recovered."""
    for pod in _live(pods):
        name = (pod.get("metadata") or {}).get("name")
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            found = _failure(cs, serving=serving)
            if found is not None:
                reason, why = found
                return reason, f"pod {name}: container {cs.get('name')}: {reason}, {why}"
    return None


def _failure(cs: Mapping[str, Any], *, serving: bool) -> tuple[str, str] | None:
    state = cs.get("state") or {}
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in _PULL_FAILURES:
        return IMAGE_PULL_BACK_OFF, f'cannot pull image "{cs.get("image") or "?"}"'
    terminated = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
    if not terminated:
        return None
    crashing = waiting.get("reason") == CRASH_LOOP_BACK_OFF or "terminated" in state
    restarted = int(cs.get("restartCount") or 0) > 0 and not (serving and cs.get("ready"))
    if not (crashing or restarted):
        return None
    how = terminated.get("reason") or "no reason"
    reason = OOM_KILLED if how == OOM_KILLED else CRASH_LOOP_BACK_OFF
    return reason, f"last exit code {terminated.get('exitCode', '?')} ({how})"


def _live(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Pods not being deleted, by name (the first failure named is the same each time)."""
    return [
        pod
        for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name")))
        if not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]


# The deployment controller names the ReplicaSet of the Deployment's current template in the
# Progressing condition: 'Created new replica set "crm-5f7d8c9b4"', 'Found new replica set
# ...', 'ReplicaSet "crm-5f7d8c9b4" is progressing.', '... has successfully progressed.',
# '... has timed out progressing.'.
_NEW_REPLICA_SET = re.compile(r'[Rr]eplica ?[Ss]et "([^"]+)"')


def new_replica_set(dep: Mapping[str, Any] | None) -> str | None:
    """The name of the ReplicaSet that runs the Deployment's current template (its Progressing
    condition names it); None when the status is older than the spec (the condition would
    name the previous one) or names none."""
    if dep is None:
        return None
    meta, st = dep.get("metadata") or {}, dep.get("status") or {}
    if int(st.get("observedGeneration", 0)) < int(meta.get("generation", 0)):
        return None
    found = _NEW_REPLICA_SET.search(_conditions(dep).get("Progressing", {}).get("message", ""))
    return found.group(1) if found else None


def rollout_pods(
    dep: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The Pods of the revision being rolled out (owned by the new ReplicaSet), not the old
    ones still serving; all of them when the Deployment does not say which is new."""
    name = new_replica_set(dep)
    if name is None:
        return list(pods)
    return [
        pod
        for pod in pods
        if any(
            ref.get("kind") == "ReplicaSet" and ref.get("name") == name
            for ref in (pod.get("metadata") or {}).get("ownerReferences") or []
        )
    ]


def with_scheduling(observed: BackendStatus, pods: Sequence[Mapping[str, Any]]) -> BackendStatus:
    """A rollout that waits on Pods the scheduler cannot place, whose container the kubelet
    cannot create from its spec, cannot pull, or that keeps exiting, says so (the reason and
    message of the Pod's condition or the container's state); a failed one keeps its reason
    and adds why. A revision that serves while adding instances (Ready, reason Scaling) stays
    Ready and adds a container that keeps failing to its message. `pods`: the rollout's own
    (`rollout_pods`)."""
    if not observed.exists:
        return observed
    if observed.ready:
        if observed.reason != "Scaling":
            return observed
        failing = container_failure(pods, serving=True)
        if failing is None:
            return observed
        return replace(observed, message=f"{observed.message}; {failing[1]}")
    found = unschedulable(pods) or container_config_error(pods) or container_failure(pods)
    if found is None:
        return observed
    reason, message = found
    if observed.stalled:
        return replace(observed, message=f"{observed.message}; {message}")
    return replace(observed, reason=reason, message=message)


def missing_children(
    observed: BackendStatus, missing: Sequence[str], *, restored: bool
) -> BackendStatus:
    """Not Ready while a child was missing: recreated now (`restored`) or left alone (paused)."""
    if not missing or not observed.exists:
        return observed
    what = ", ".join(missing)
    if restored:
        reason, message = "ChildRecreated", f"{what} was missing and has been recreated"
    else:
        reason, message = "ChildMissing", f"{what} is missing (paused: not recreated)"
    return replace(observed, ready=False, reason=reason, message=message, stalled=False)
