"""The operator process killed in the middle of a step (its traffic write sent, its status not
yet written) resumes from the status: no duplicate revision, no lost step. Its own module:
no other operator may run while it does. A Rollout left holding the finalizer once no
operator runs does not hold its test namespace (the teardown removes the finalizer)."""

from __future__ import annotations

import time
from pathlib import Path

from fakes.cloudrun import FakeCloudRun
from kube_support import Kube, delete_namespace, operator_running
from test_rollout_support import (
    create_rollout,
    delete_and_wait_gone,
    get_rollout,
    operator_process,
    phase_is,
    revisions,
    rollout_url,
    service_path,
    wait_rollout,
)
from test_xynergyservice import wait_ready
from test_xynergyservice_cloudrun import create_cloudrun_xs, unique

from controllers.core.controller import FINALIZER


def configured_split(fake: FakeCloudRun, name: str) -> list[int]:
    with fake.state.lock:
        return [t.percent for t in fake.state.services[service_path(name)].traffic]


def test_killed_mid_step_resumes_without_duplicate_revision_or_lost_step(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str, tmp_path: Path
) -> None:
    svc = unique("ai")
    steps = [{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 40}, {"pause": {}}]
    with FakeCloudRun(operation_delay=0.1) as fake:
        env = {"XYNERGY_CLOUDRUN_ENDPOINT": fake.endpoint}
        with operator_process(cluster, tmp_path / "first.log", **env) as first:
            create_cloudrun_xs(kube, namespace, svc)
            wait_ready(kube, namespace, svc)
            create_rollout(kube, namespace, "ro", target=svc,
                           image="us-docker.pkg.dev/xynergy-test/apps/ai:2",
                           strategy={"canary": {"steps": steps}})  # fmt: skip
            wait_rollout(kube, namespace, "ro", "at 10%", lambda s: s.get("canaryWeight") == 10)
            with fake.operations_held():
                # the 40% write reaches Cloud Run; its operation never completes meanwhile
                kube.wait_for("the 40% split to be written", lambda: configured_split(fake, svc)
                              == [60, 40], timeout=60)  # fmt: skip
                first.kill()
            status = get_rollout(kube, namespace, "ro")["status"]
            assert status["currentStepIndex"] == 2, "killed before the step's status was written"
            assert status["canaryWeight"] == 10
        fake.state.complete_operations()
        writes_before = fake.total_writes
        with operator_process(cluster, tmp_path / "second.log", **env):
            status = wait_rollout(kube, namespace, "ro", "paused at 40%", phase_is("Paused"))[
                "status"
            ]
            assert status["currentStepIndex"] == 3
            assert status["canaryWeight"] == 40
            assert revisions(fake, svc) == [f"{svc}-00001", status["canaryRevision"]]
            # the split was already there: the resumed step wrote nothing to Cloud Run
            assert fake.total_writes == writes_before
            # deleted while an operator runs: left to the namespace fixture, their finalizers
            # would wait for an operator that is gone (60 s of teardown)
            delete_and_wait_gone(kube, namespace)
        assert not fake.crashes


def test_a_rollout_holding_the_finalizer_with_no_operator_does_not_hold_its_namespace(
    kube: Kube, crds_installed: list[str], namespace: str
) -> None:
    """As a Rollout mid-rollout is left when its operator stopped (or a test failed before
    deleting it): the namespace's teardown removes its finalizer at once instead of waiting
    for an operator that is gone (60 s a test, and a namespace left Terminating)."""
    assert not operator_running()
    body = {"apiVersion": "xynergy.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "held", "finalizers": [FINALIZER]},
            "spec": {"targetRef": {"name": "crm"}, "image": "reg.example/app:2",
                     "strategy": {"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}}}}  # fmt: skip
    resp = kube.create(rollout_url(namespace), body)
    assert resp.status_code == 201, resp.text
    started = time.monotonic()
    delete_namespace(kube, namespace)
    assert kube.get(rollout_url(namespace, "held")).status_code == 404
    assert time.monotonic() - started < 30, "waited for an operator that is gone"
