"""XynergyService on the Cloud Run backend, end to end: the operator (KopfRunner) against the
fake Cloud Run Admin API v2, through the real google-cloud-run client."""

from __future__ import annotations

import uuid
from typing import Any

from fakes.cloudrun import FakeCloudRun
from kopf.testing import KopfRunner
from kube_support import Kube
from test_xynergyservice import get_xs, merge_patch, ready_condition, wait_ready, xs_url

PROJECT = "xynergy-test"
REGION = "us-central1"


def create_cloudrun_xs(kube: Kube, ns: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": name},
        "spec": {
            "image": "us-docker.pkg.dev/xynergy-test/apps/ai:1",
            "backend": "cloudRun",
            "cloudRun": {"project": PROJECT, "region": REGION},
            "profile": "ai-intensive",
            **spec,
        },
    }
    resp = kube.create(xs_url(ns), body)
    assert resp.status_code == 201, resp.text


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def service_exists(fake: FakeCloudRun, name: str) -> bool:
    path = f"projects/{PROJECT}/locations/{REGION}/services/{name}"
    with fake.state.lock:
        return path in fake.state.services


def test_create_then_write_only_on_change(
    kube: Kube, operator: KopfRunner, namespace: str, cloudrun_session: FakeCloudRun
) -> None:
    name = unique("ai")
    before = cloudrun_session.total_writes
    create_cloudrun_xs(kube, namespace, name)
    obj = wait_ready(kube, namespace, name)
    assert obj["status"]["url"].startswith("https://")
    assert obj["status"]["latestReadyRevision"] == f"{name}-00001"
    assert obj["status"]["traffic"] == [{"revision": f"{name}-00001", "percent": 100}]
    assert cloudrun_session.total_writes - before == 1

    # routes are the gateway's business: new generation, but nothing for Cloud Run to change
    merge_patch(kube, xs_url(namespace, name), {"spec": {"routes": [{"prefix": "/api/v1/ai"}]}})
    wait_ready(kube, namespace, name)
    assert cloudrun_session.total_writes - before == 1, (
        "no write when Cloud Run's part is unchanged"
    )

    merge_patch(
        kube,
        xs_url(namespace, name),
        {"spec": {"image": "us-docker.pkg.dev/xynergy-test/apps/ai:2"}},
    )
    obj = wait_ready(kube, namespace, name)
    generation = obj["metadata"]["generation"]
    assert obj["status"]["latestReadyRevision"] == f"{name}-{generation:05d}"
    assert cloudrun_session.total_writes - before == 2
    assert cloudrun_session.revisions_of(PROJECT, REGION, name) == [
        f"{name}-00001",
        f"{name}-{generation:05d}",
    ]


def test_delete_and_orphan(
    kube: Kube, operator: KopfRunner, namespace: str, cloudrun_session: FakeCloudRun
) -> None:
    deleted, kept = unique("gone"), unique("kept")
    create_cloudrun_xs(kube, namespace, deleted)
    create_cloudrun_xs(kube, namespace, kept, deletionPolicy="Orphan")
    wait_ready(kube, namespace, deleted)
    wait_ready(kube, namespace, kept)
    for name in (deleted, kept):
        assert kube.delete(xs_url(namespace, name)).status_code == 200
    for name in (deleted, kept):
        kube.wait_for(
            f"{name} to be finalized",
            lambda name=name: kube.get(xs_url(namespace, name)).status_code == 404,
        )
    assert not service_exists(cloudrun_session, deleted)
    assert service_exists(cloudrun_session, kept)


def test_503_storm_converges_without_a_tight_loop(
    kube: Kube, operator: KopfRunner, namespace: str, cloudrun_session: FakeCloudRun
) -> None:
    name = unique("storm")
    calls_before = sum(cloudrun_session.calls.values())
    cloudrun_session.inject(503, count=6, message="backend overloaded")
    create_cloudrun_xs(kube, namespace, name)
    wait_ready(kube, namespace, name, timeout=180)
    calls = sum(cloudrun_session.calls.values()) - calls_before
    assert calls < 40, f"{calls} calls for one service: a tight retry loop"
    assert cloudrun_session.revisions_of(PROJECT, REGION, name) == [f"{name}-00001"]


def test_403_stalls_with_the_api_message_then_recovers(
    kube: Kube, operator: KopfRunner, namespace: str, cloudrun_session: FakeCloudRun
) -> None:
    name = unique("denied")
    message = f"Permission 'run.services.get' denied on resource 'projects/{PROJECT}'"
    cloudrun_session.deny(message)
    try:
        create_cloudrun_xs(kube, namespace, name)

        def stalled() -> bool:
            conds = {
                c["type"]: c
                for c in (get_xs(kube, namespace, name).get("status") or {}).get("conditions") or []
            }
            return conds.get("Stalled", {}).get("status") == "True"

        kube.wait_for("Stalled on 403", stalled, timeout=60)
        ready = ready_condition(get_xs(kube, namespace, name))
        assert ready["status"] == "False"
        assert message in ready["message"]
    finally:
        cloudrun_session.deny(None)
    wait_ready(kube, namespace, name, timeout=120)


def test_invoker_iam_check_is_the_specs(
    kube: Kube, operator: KopfRunner, namespace: str, cloudrun_session: FakeCloudRun
) -> None:
    """`invokerIamCheck: false` makes the service public (invokerIamDisabled) without a new
    revision; back to the default, Cloud Run checks IAM again."""
    name = unique("pub")
    path = f"projects/{PROJECT}/locations/{REGION}/services/{name}"
    cloud_run = {"project": PROJECT, "region": REGION}
    create_cloudrun_xs(kube, namespace, name, cloudRun={**cloud_run, "invokerIamCheck": False})
    wait_ready(kube, namespace, name)
    with cloudrun_session.state.lock:
        assert cloudrun_session.state.services[path].invoker_iam_disabled
    merge_patch(kube, xs_url(namespace, name), {"spec": {"cloudRun": {"invokerIamCheck": True}}})

    def checked() -> bool:
        with cloudrun_session.state.lock:
            return not cloudrun_session.state.services[path].invoker_iam_disabled

    kube.wait_for("Cloud Run to check IAM again", checked, timeout=60)
    assert cloudrun_session.revisions_of(PROJECT, REGION, name) == [f"{name}-00001"]
