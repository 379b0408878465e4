"""The blue-green fast rollback: within `scaleDownDelaySeconds` after a promotion, `undo` (or
`abort`) switches all traffic back to the kept old revision at once, on both backends, with no
new revision deployed and no analysis.

Cloud Run (the fake, through the real client): the service serves the old revision 100 %
again, its template is the old revision's (by name), the target's image is back, and its
controller deploys nothing (two revisions in all). Kubernetes (kwok): the gateway traffic is
emptied (the target's own Service, still on the old spec, serves), the new revision is scaled
to zero, the target is never patched."""

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


# ---- replica-ratio routing (no gateway): the target's Service switches whole ---------------

REVISION = "xynergy.io/rollout-revision"


def _selector(kube: Kube, ns: str, svc: str) -> dict[str, str]:
    resp = kube.get(f"/api/v1/namespaces/{ns}/services/{svc}")
    assert resp.status_code == 200, resp.text
    found: dict[str, str] = resp.json()["spec"]["selector"]
    return found


def _endpoints(kube: Kube, ns: str, svc: str) -> set[str]:
    """The Pods the Service sends traffic to: its EndpointSlices' ready endpoints (what
    kube-proxy and every other data plane read)."""
    resp = kube.get(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                    labelSelector=f"kubernetes.io/service-name={svc}")  # fmt: skip
    assert resp.status_code == 200, resp.text
    return {
        ep["targetRef"]["name"]
        for item in resp.json()["items"]
        for ep in item.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready") and ep.get("targetRef")
    }


def _pods(kube: Kube, ns: str, selector: str) -> set[str]:
    """Running Pods (not being deleted) matching a label selector."""
    resp = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)
    assert resp.status_code == 200, resp.text
    return {
        pod["metadata"]["name"]
        for pod in resp.json()["items"]
        if not pod["metadata"].get("deletionTimestamp")
        and (pod.get("status") or {}).get("phase") == "Running"
    }


def _serving(kube: Kube, ns: str, svc: str, selector: str, count: int) -> set[str]:
    """Wait until the Service's endpoints are exactly the `count` running Pods of
    `selector`; those Pods."""
    found: set[str] = set()

    def exactly() -> bool:
        found.clear()
        found.update(_pods(kube, ns, selector))
        return len(found) == count and _endpoints(kube, ns, svc) == found

    kube.wait_for(f"Service {svc} sending traffic to exactly the Pods of {selector}", exactly,
                  timeout=90)  # fmt: skip
    return set(found)


def _replica_routed(kube: Kube, ns: str, keep: int) -> tuple[str, str, set[str]]:
    """A target without routes (replica-ratio routing) at 2 instances, and a blue-green
    Rollout promoted with a `keep` s window: (target, new revision, the target's own Pods)."""
    svc = unique("ai")
    create_xs(kube, ns, svc, backend="kubernetes", port=8080,
              scaling={"minInstances": 2, "maxInstances": 2})  # fmt: skip
    wait_ready(kube, ns, svc)
    own = _serving(kube, ns, svc, f"xynergy.io/service={svc},!{REVISION}", 2)
    create_rollout(kube, ns, "bg", target=svc, image="reg.example/app:2",
                   strategy={"blueGreen": {"scaleDownDelaySeconds": keep}})  # fmt: skip
    status = wait_rollout(kube, ns, "bg", "previewing", phase_is("Paused"))["status"]
    new: str = status["canaryRevision"]
    assert status["trafficRouting"] == "replicas"
    assert _selector(kube, ns, svc) == {"xynergy.io/service": svc}
    assert _endpoints(kube, ns, svc) == own, "the preview gets no live traffic"
    _act(kube, ns, "promote/1")
    wait_rollout(kube, ns, "bg", "promoted", phase_is("Promoted"))
    return svc, new, own


def test_replica_routing_switches_the_service_whole_and_back_on_undo(
    kube: Kube, rollout_operator: Operator, namespace: str
) -> None:
    """At promotion the target's Service selects only the new revision's Pods (before, the
    new Pods joined it beside the old ones, which kept about half the traffic for the whole
    keep window); the old Pods keep running for the fast rollback. Undo in the window puts
    the Service back on the old Pods, and only then is the new revision scaled to zero."""
    svc, new, own = _replica_routed(kube, namespace, 600)
    kube.wait_for("the Service selecting the new revision",
                  lambda: _selector(kube, namespace, svc) == {REVISION: new})  # fmt: skip
    serving = _serving(kube, namespace, svc, f"{REVISION}={new}", 2)
    assert not serving & own
    assert _pods(kube, namespace, f"xynergy.io/service={svc},!{REVISION}") == own, (
        "the old revision keeps running (no traffic) for the keep window"
    )
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:1"

    _act(kube, namespace, "undo/1")
    wait_rollout(kube, namespace, "bg", "switched back", phase_is("RolledBack"))
    kube.wait_for("the Service selecting the target's own Pods again",
                  lambda: _selector(kube, namespace, svc) == {"xynergy.io/service": svc})  # fmt: skip
    assert _serving(kube, namespace, svc, f"xynergy.io/service={svc},!{REVISION}", 2) == own
    kube.wait_for("the new revision scaled to zero",
                  lambda: (deployment(kube, namespace, new) or {})["spec"]["replicas"] == 0)  # fmt: skip
    annotations = get_xs(kube, namespace, svc)["metadata"].get("annotations") or {}
    assert "xynergy.io/serving-revision" not in annotations


def test_replica_routing_after_the_keep_window_the_target_serves_the_new_spec(
    kube: Kube, rollout_operator: Operator, namespace: str
) -> None:
    """Within the window only the new revision's Pods serve; when it ends the target is
    patched, and once its own Pods run the new spec the Service selects them again and the
    new revision's children go."""
    svc, new, own = _replica_routed(kube, namespace, 45)
    kube.wait_for("the Service selecting the new revision",
                  lambda: _selector(kube, namespace, svc) == {REVISION: new})  # fmt: skip
    _serving(kube, namespace, svc, f"{REVISION}={new}", 2)
    kube.wait_for("the keep window over and the new revision's children gone",
                  lambda: deployment(kube, namespace, new) is None, timeout=240)  # fmt: skip
    assert _selector(kube, namespace, svc) == {"xynergy.io/service": svc}
    serving = _serving(kube, namespace, svc, f"xynergy.io/service={svc}", 2)
    assert not serving & own, "the target's own Pods, rolled to the new spec"
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:2"
    annotations = get_xs(kube, namespace, svc)["metadata"].get("annotations") or {}
    assert "xynergy.io/serving-revision" not in annotations


def _xs_serving(kube: Kube, ns: str, svc: str) -> tuple[str | None, list[dict[str, Any]]]:
    """What the XynergyService's status says it serves: (status.selector, status.traffic)."""
    status = get_xs(kube, ns, svc).get("status") or {}
    return status.get("selector"), status.get("traffic") or []


def test_replica_routing_a_second_rollout_waits_while_the_switch_is_set(
    kube: Kube, rollout_operator: Operator, namespace: str
) -> None:
    """While a promotion's revision holds the target's Service, a second Rollout of the
    target does not start its canary (it would join a Service that selects only the first's
    Pods: no traffic, an analysis of nothing): it is Degraded RolloutConflict naming the
    first, and starts once the first has handed the Service back. The target's status says
    truthfully what its Service selects meanwhile."""
    svc, new, own = _replica_routed(kube, namespace, 600)
    kube.wait_for("the Service selecting the new revision",
                  lambda: _selector(kube, namespace, svc) == {REVISION: new})  # fmt: skip
    kube.wait_for("the target's status naming the revision it serves",
                  lambda: _xs_serving(kube, namespace, svc)
                  == (f"{REVISION}={new}", [{"revision": new, "percent": 100}]))  # fmt: skip
    assert not _serving(kube, namespace, svc, f"{REVISION}={new}", 2) & own

    create_rollout(kube, namespace, "second", target=svc, image="reg.example/app:3",
                   strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})  # fmt: skip
    waiting = wait_rollout(kube, namespace, "second", "refused while the switch is set",
                           lambda st: _condition(st, "Stalled").get("reason")
                           == "RolloutConflict")["status"]  # fmt: skip
    assert "Rollout bg is Promoted" in waiting["message"], waiting["message"]
    assert new in waiting["message"], waiting["message"]
    said = [e for e in events_of(kube, namespace, "second") if e["reason"] == "RolloutConflict"]
    assert said, "a Warning Event names the first Rollout"
    assert "Rollout bg" in said[0]["message"]
    children = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments",
                        labelSelector="xynergy.io/rollout=second").json()["items"]  # fmt: skip
    assert children == [], "no canary deployed beside the switch"
    assert _selector(kube, namespace, svc) == {REVISION: new}

    _act(kube, namespace, "undo/1")  # the first hands the Service back
    kube.wait_for("the Service selecting the target's own Pods again",
                  lambda: _selector(kube, namespace, svc) == {"xynergy.io/service": svc})  # fmt: skip
    kube.wait_for("the target's status naming its own revision again",
                  lambda: _xs_serving(kube, namespace, svc)[1] == [
                      {"revision": get_xs(kube, namespace, svc)["status"]["latestReadyRevision"],
                       "percent": 100}])  # fmt: skip
    assert _xs_serving(kube, namespace, svc)[0] == f"xynergy.io/service={svc}"
    started = wait_rollout(kube, namespace, "second", "started once handed back",
                           lambda st: st.get("phase") in ("Progressing", "Paused")
                           and bool(st.get("canaryRevision")), timeout=150)["status"]  # fmt: skip
    assert started["stableRevision"] != new
