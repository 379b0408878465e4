"""The blue-green fast rollback: within `scaleDownDelaySeconds` after a promotion, `undo` (or
`abort`) switches all traffic back to the kept old revision at once, on both backends, with no
new revision deployed and no analysis.

Cloud Run (the fake, through the real client): the service serves the old revision 100 %
again, its template is the old revision's (by name), the target's image is back, and its
controller deploys nothing (two revisions in all). Kubernetes (kwok): the gateway traffic is
emptied (the target's own Service, still on the old spec, serves), the new revision is scaled
to zero, the target is never patched. And on Kubernetes the window ends early for the next
release's Rollout, which then starts from the promoted revision."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import test_rollout_cloudrun
from fakes.cloudrun import FakeCloudRun
from kube_support import Kube
from test_rollout_support import (
    Operator,
    create_rollout,
    events_of,
    get_rollout,
    phase_is,
    revisions,
    rollout_url,
    served,
    wait_rollout,
)
from test_xynergyservice import create_xs, deployment, get_xs, merge_patch, wait_ready
from test_xynergyservice_cloudrun import create_cloudrun_xs, unique

from controllers.core.controller import FINALIZER

pytestmark = pytest.mark.integration

IMAGE_2 = "us-docker.pkg.dev/xynergy-test/apps/ai:2"
KEEP = {"blueGreen": {"scaleDownDelaySeconds": 600}}
# the Cloud Run tests' module fixtures: the fake, and an operator process using it
fake = test_rollout_cloudrun.fake
rollout_operator = test_rollout_cloudrun.rollout_operator


def _act(kube: Kube, ns: str, verb: str) -> None:
    merge_patch(kube, rollout_url(ns, "bg"),
                {"metadata": {"annotations": {"xynergy.io/rollout-action": verb}}})  # fmt: skip


def _promoted(kube: Kube, ns: str, target: str, image: str) -> str:
    create_rollout(kube, ns, "bg", target=target, image=image, strategy=KEEP)
    wait_rollout(kube, ns, "bg", "previewing", phase_is("Paused"))
    _act(kube, ns, "promote/1")
    status = wait_rollout(kube, ns, "bg", "promoted", phase_is("Promoted"))["status"]
    assert status["scaleDownAt"]
    name: str = status["canaryRevision"]
    return name


def _switched_back_event(kube: Kube, ns: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [e for e in events_of(kube, ns, "bg") if e["reason"] == "SwitchedBack"]
        return bool(found)

    kube.wait_for("an Event saying the traffic switched back", seen, timeout=30)
    return found[0]


@pytest.mark.parametrize(("verb", "phase"), [("undo/1", "RolledBack"), ("abort/1", "Aborted")])
def test_cloud_run_switches_back_within_the_keep_window(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun,
    verb: str, phase: str,
) -> None:  # fmt: skip
    svc = unique("ai")
    create_cloudrun_xs(kube, namespace, svc)
    wait_ready(kube, namespace, svc)
    stable = f"{svc}-00001"
    new = _promoted(kube, namespace, svc, IMAGE_2)
    assert served(fake, svc)[1:] == [(stable, 0, "previous")]
    assert get_xs(kube, namespace, svc)["spec"]["image"] == IMAGE_2

    _act(kube, namespace, verb)
    status = wait_rollout(kube, namespace, "bg", "switched back", phase_is(phase))["status"]
    assert served(fake, svc) == [(stable, 100, "")]
    assert status["stableRevision"] == stable
    assert status["canaryWeight"] == 0
    assert not status.get("scaleDownAt")
    assert get_xs(kube, namespace, svc)["spec"]["image"] != IMAGE_2
    wait_ready(kube, namespace, svc)
    assert revisions(fake, svc) == [stable, new], "no new revision deployed"
    assert served(fake, svc) == [(stable, 100, "")]
    switched = _switched_back_event(kube, namespace)
    assert stable in switched["message"]


@pytest.mark.parametrize(("verb", "phase"), [("undo/1", "RolledBack"), ("abort/1", "Aborted")])
def test_kubernetes_switches_back_within_the_keep_window(
    kube: Kube, rollout_operator: Operator, namespace: str, verb: str, phase: str
) -> None:
    svc = unique("ai")
    create_xs(kube, namespace, svc, backend="kubernetes", port=8080,
              routes=[{"prefix": f"/api/v2/{svc}"}])  # fmt: skip
    wait_ready(kube, namespace, svc)
    new = _promoted(kube, namespace, svc, "reg.example/app:2")
    status = wait_rollout(kube, namespace, "bg", "all traffic on the new revision",
                          lambda st: [t["revision"] for t in st.get("traffic") or []] == [new])  # fmt: skip
    assert status["status"]["stableRevision"] == new
    stable = status["status"]["history"][0]["revision"]

    _act(kube, namespace, verb)
    status = wait_rollout(kube, namespace, "bg", "switched back", phase_is(phase))["status"]
    assert status["traffic"] == [], "the target's own Service (the old revision) serves"
    assert status["stableRevision"] == stable
    assert not status.get("scaleDownAt")
    kube.wait_for("the new revision scaled to zero",
                  lambda: (deployment(kube, namespace, new) or {})["spec"]["replicas"] == 0)  # fmt: skip
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:1"
    assert stable in _switched_back_event(kube, namespace)["message"]


def test_kubernetes_revert_within_the_keep_window_switches_back(
    kube: Kube, rollout_operator: Operator, namespace: str
) -> None:
    """A GitOps revert of the release within the keep window (the Rollout's image set back
    to the kept revision's) is the window's fast rollback, as `undo`: RolledBack at once, the
    target never patched, no new delivery. The handover (6a57083) patched the target to the
    release being reverted and ran a canary of the old image against it."""
    svc = unique("ai")
    create_xs(kube, namespace, svc, backend="kubernetes", port=8080,
              routes=[{"prefix": f"/api/v2/{svc}"}])  # fmt: skip
    wait_ready(kube, namespace, svc)
    new = _promoted(kube, namespace, svc, "reg.example/app:2")
    status = wait_rollout(kube, namespace, "bg", "all traffic on the new revision",
                          lambda st: [t["revision"] for t in st.get("traffic") or []] == [new])  # fmt: skip
    stable = status["status"]["history"][0]["revision"]

    merge_patch(kube, rollout_url(namespace, "bg"), {"spec": {"image": "reg.example/app:1"}})
    status = wait_rollout(kube, namespace, "bg", "switched back", phase_is("RolledBack"))["status"]
    assert status["traffic"] == [], "the target's own Service (the old revision) serves"
    assert (status["stableRevision"], status["canaryRevision"]) == (stable, new)
    assert not status.get("scaleDownAt")
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:1"
    kube.wait_for("the new revision scaled to zero",
                  lambda: (deployment(kube, namespace, new) or {})["spec"]["replicas"] == 0)  # fmt: skip
    event = _switched_back_event(kube, namespace)
    assert "spec was edited back to that revision (image reg.example/app:1)" in event["message"]
    reasons = {e["reason"] for e in events_of(kube, namespace, "bg")}
    assert "KeepWindowEnded" not in reasons, "no handover"


def _quota(kube: Kube, ns: str, pods: int) -> None:
    """At most `pods` Pods in the namespace (ResourceQuota admission refuses the others)."""
    url = f"/api/v1/namespaces/{ns}/resourcequotas"
    if kube.get(f"{url}/pods").status_code == 404:
        body = {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": str(pods)}}}
        assert kube.create(url, body).status_code == 201
        kube.wait_for("the quota's usage computed",
                      lambda: "used" in (kube.get(f"{url}/pods").json().get("status") or {}))  # fmt: skip
    else:
        merge_patch(kube, f"{url}/pods", {"spec": {"hard": {"pods": str(pods)}}})


def test_kubernetes_deletion_within_the_keep_window_finishes_the_promotion(
    kube: Kube, rollout_operator: Operator, namespace: str
) -> None:
    """The target is patched only when the keep window ends: deleting the Rollout before must
    not leave it on the old revision. The deletion patches it and waits for it to be ready.
    The wait is normal, not an error: the Rollout's status says it is being deleted and what
    it waits for, one Normal Event says so, and no Error Event is posted per retry (kopf's
    "failed temporarily" was one every 10 s). A ResourceQuota holds the target's new Pods,
    so the wait lasts until the quota is lifted."""
    svc = unique("ai")
    create_xs(kube, namespace, svc, backend="kubernetes", port=8080,
              routes=[{"prefix": f"/api/v2/{svc}"}])  # fmt: skip
    wait_ready(kube, namespace, svc)
    new = _promoted(kube, namespace, svc, "reg.example/app:2")
    kube.wait_for(
        "the keep window holding the finalizer",
        lambda: FINALIZER in (kube.get(rollout_url(namespace, "bg")).json()["metadata"]
                              .get("finalizers") or []),
    )  # fmt: skip
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:1"
    _quota(kube, namespace, 0)  # the Pods running stay; the target's new ones are refused
    assert kube.delete(rollout_url(namespace, "bg")).status_code == 200

    waiting = wait_rollout(kube, namespace, "bg", "saying the deletion waits",
                           lambda st: _condition(st, "Reconciling").get("reason") == "Deleting")  # fmt: skip
    message = _condition(waiting["status"], "Reconciling")["message"]
    assert svc in message, message
    assert new in message, message
    assert _condition(waiting["status"], "Ready")["status"] == "False"
    kube.wait_for("the target patched", lambda: get_xs(kube, namespace, svc)["spec"]["image"]
                  == "reg.example/app:2")  # fmt: skip
    # held over several retries (kopf's were 10 s apart, each an Error Event): a time window,
    # as what is asserted is that nothing more is said while it waits
    kube.wait_for("25 s of waiting", lambda: _waited(kube, namespace) >= 25, timeout=60)
    events = events_of(kube, namespace, "bg")
    assert not [e for e in events if e["type"] not in ("Normal", "Warning")], events
    said = [e for e in events if e["reason"] == "DeletionWaiting"]
    assert len(said) == 1, said
    assert said[0]["type"] == "Normal", said
    assert new in said[0]["message"], said
    assert kube.get(rollout_url(namespace, "bg")).status_code == 200, "still held"

    _quota(kube, namespace, 100)
    kube.wait_for(
        "the deleted Rollout gone",
        lambda: kube.get(rollout_url(namespace, "bg")).status_code == 404,
        timeout=120,
    )
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:2"
    wait_ready(kube, namespace, svc)
    events = events_of(kube, namespace, "bg")
    reasons = [e["reason"] for e in events]
    assert "Released" in reasons, reasons
    assert reasons.count("DeletionWaiting") == 1, reasons
    assert not [e for e in events if e["type"] not in ("Normal", "Warning")], events


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c["type"] == type_), {}
    )
    return found


def _waited(kube: Kube, ns: str) -> float:
    """Seconds since the Rollout's deletion was asked for (by the apiserver's clock)."""
    meta = kube.get(rollout_url(ns, "bg")).json()["metadata"]
    asked = dt.datetime.fromisoformat(meta["deletionTimestamp"])
    return (dt.datetime.now(dt.UTC) - asked).total_seconds()


def test_kubernetes_keep_window_ends_early_for_the_next_release(
    kube: Kube, rollout_operator: Operator, namespace: str
) -> None:
    """A Rollout of the next release created within a promotion's keep window (600 s here)
    waited the whole window out (Stalled RolloutConflict): the promoted one now ends its
    window early for it (the target patched to the promoted revision, a KeepWindowEnded
    Event), and the next one starts from the promoted revision once the target runs it and
    is ready, well within the window."""
    svc = unique("ai")
    create_xs(kube, namespace, svc, backend="kubernetes", port=8080,
              routes=[{"prefix": f"/api/v2/{svc}"}])  # fmt: skip
    wait_ready(kube, namespace, svc)
    new = _promoted(kube, namespace, svc, "reg.example/app:2")
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:1"

    create_rollout(kube, namespace, "next", target=svc, image="reg.example/app:3",
                   strategy={"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})  # fmt: skip
    status = wait_rollout(kube, namespace, "next", "started from the promoted revision",
                          phase_is("Paused"), timeout=120)["status"]  # fmt: skip
    assert status["stableImage"] == "reg.example/app:2"
    assert status["canaryWeight"] == 20
    assert "waitingSince" not in status, "its wait is over"
    # the operator finds a target's Rollouts with a field selector (the CRD's selectableFields)
    url = rollout_url(namespace)
    listed = kube.get(url, fieldSelector=f"spec.targetRef.name={svc}")
    assert listed.status_code == 200, listed.text
    assert {i["metadata"]["name"] for i in listed.json()["items"]} == {"bg", "next"}
    assert kube.get(url, fieldSelector="spec.targetRef.name=elsewhere").json()["items"] == []
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:2"
    first = get_rollout(kube, namespace, "bg")["status"]
    assert first["phase"] == "Promoted"
    assert not first.get("scaleDownAt")
    assert "keep window ended early" in first["message"], first["message"]
    ended = [e for e in events_of(kube, namespace, "bg") if e["reason"] == "KeepWindowEnded"]
    assert len(ended) == 1, ended
    assert ended[0]["type"] == "Normal"
    assert "Rollout next" in ended[0]["message"]
    kube.wait_for("the promoted revision's children gone",
                  lambda: deployment(kube, namespace, new) is None)  # fmt: skip
    conflicts = [e for e in events_of(kube, namespace, "next") if e["type"] == "Warning"]
    assert conflicts == [], "waiting moments is no Warning"


def test_kubernetes_edit_within_the_keep_window_hands_over_to_the_promoted_revision(
    kube: Kube, rollout_operator: Operator, namespace: str
) -> None:
    """The promoted Rollout's own image edited within its keep window: the new delivery
    started at once from the old revision (the target, not patched yet, still ran it) and
    removed the promoted revision's Deployment, which served everything. Now the window ends
    (the target patched to the promoted revision), the Rollout stays Promoted (Reconciling
    HandingOver, the finalizer held) with its promoted revision serving until the target
    runs it and is ready (a ResourceQuota holds the target's new Pods meanwhile), and the
    new delivery then starts from it."""
    svc = unique("ai")
    create_xs(kube, namespace, svc, backend="kubernetes", port=8080,
              routes=[{"prefix": f"/api/v2/{svc}"}])  # fmt: skip
    wait_ready(kube, namespace, svc)
    new = _promoted(kube, namespace, svc, "reg.example/app:2")
    _quota(kube, namespace, 0)  # the Pods running stay; the target's new ones are refused
    merge_patch(kube, rollout_url(namespace, "bg"), {"spec": {"image": "reg.example/app:3"}})

    status = wait_rollout(kube, namespace, "bg", "handing over",
                          lambda st: _condition(st, "Reconciling").get("reason") == "HandingOver")["status"]  # fmt: skip
    assert status["phase"] == "Promoted"
    assert not status.get("scaleDownAt"), "the window ended"
    assert [t["revision"] for t in status.get("traffic") or []] == [new], "it still serves"
    assert _condition(status, "Ready")["status"] == "False"
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:2"
    promoted = deployment(kube, namespace, new) or {}
    assert promoted["spec"]["replicas"] > 0, "the promoted revision is not removed"
    container = promoted["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.example/app:2"
    meta = kube.get(rollout_url(namespace, "bg")).json()["metadata"]
    assert FINALIZER in (meta.get("finalizers") or []), "held during the handover"
    ended = [e for e in events_of(kube, namespace, "bg") if e["reason"] == "KeepWindowEnded"]
    assert len(ended) == 1, ended
    assert "own spec (image reg.example/app:3)" in ended[0]["message"]

    _quota(kube, namespace, 100)
    status = wait_rollout(kube, namespace, "bg", "the new delivery started",
                          lambda st: st.get("canaryImage") == "reg.example/app:3"
                          and st.get("phase") in ("Progressing", "Paused"), timeout=120)["status"]  # fmt: skip
    assert status["stableImage"] == "reg.example/app:2", "started from the promoted revision"
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:2"
    kube.wait_for("the promoted revision's children gone",
                  lambda: deployment(kube, namespace, new) is None)  # fmt: skip


def test_kubernetes_deletion_during_the_handover_waits_for_the_promoted_revision(
    kube: Kube, rollout_operator: Operator, namespace: str
) -> None:
    """Review O (r1). The Rollout's own image edited within its keep window hands over (the
    window ended, the target patched to the promoted revision and rolling, the promoted
    revision serving everything); deleted then, it let go at once and its promoted
    Deployment went by garbage collection while the target still could not run the promoted
    revision. The deletion waits (DeletionWaiting; a ResourceQuota holds the target's new
    Pods) with the promoted revision serving, never patches the edit in, and lets go once the
    target runs the promoted revision and is ready."""
    svc = unique("ai")
    create_xs(kube, namespace, svc, backend="kubernetes", port=8080,
              routes=[{"prefix": f"/api/v2/{svc}"}])  # fmt: skip
    wait_ready(kube, namespace, svc)
    new = _promoted(kube, namespace, svc, "reg.example/app:2")
    _quota(kube, namespace, 0)  # the Pods running stay; the target's new ones are refused
    merge_patch(kube, rollout_url(namespace, "bg"), {"spec": {"image": "reg.example/app:3"}})
    wait_rollout(kube, namespace, "bg", "handing over",
                 lambda st: _condition(st, "Reconciling").get("reason") == "HandingOver")  # fmt: skip
    assert kube.delete(rollout_url(namespace, "bg")).status_code == 200

    waiting = wait_rollout(kube, namespace, "bg", "saying the deletion waits",
                           lambda st: _condition(st, "Reconciling").get("reason") == "Deleting")  # fmt: skip
    message = _condition(waiting["status"], "Reconciling")["message"]
    assert new in message, message
    assert "(image reg.example/app:3) is not delivered" in message, message
    # the status is written before the Event is posted
    kube.wait_for("the DeletionWaiting Event", lambda: _said(kube, namespace, "DeletionWaiting"))
    said = _said(kube, namespace, "DeletionWaiting")
    assert len(said) == 1, said
    assert (deployment(kube, namespace, new) or {})["spec"]["replicas"] > 0, "it still serves"
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:2"

    _quota(kube, namespace, 100)
    kube.wait_for(
        "the deleted Rollout gone",
        lambda: kube.get(rollout_url(namespace, "bg")).status_code == 404,
        timeout=120,
    )
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:2"
    wait_ready(kube, namespace, svc)
    reasons = [e["reason"] for e in events_of(kube, namespace, "bg")]
    assert "Released" in reasons, reasons


def _said(kube: Kube, ns: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in events_of(kube, ns, "bg") if e["reason"] == reason]
