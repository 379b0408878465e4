"""Rollouts on the Cloud Run backend, end to end: the operator process against a real
cluster and the fake Cloud Run Admin API (through the real google-cloud-run client).
Traffic percentages and tags move per step; abort restores 100% to the stable revision;
blue-green previews on a tag, then switches; promotion makes the target's spec the new one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes.cloudrun import FakeCloudRun
from kube_support import Kube
from test_rollout_support import (
    Operator,
    create_rollout,
    events_of,
    get_rollout,
    operator_process,
    phase_is,
    revisions,
    rollout_url,
    served,
    service_path,
    wait_rollout,
)
from test_xynergyservice import get_xs, merge_patch, wait_ready, xs_url
from test_xynergyservice_cloudrun import create_cloudrun_xs, unique

from controllers.core.controller import FINALIZER
from controllers.plugin import main

IMAGE_2 = "us-docker.pkg.dev/xynergy-test/apps/ai:2"
IMAGE_3 = "us-docker.pkg.dev/xynergy-test/apps/ai:3"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCloudRun]:
    with FakeCloudRun(operation_delay=0.1) as fake:
        yield fake
        assert not fake.crashes, fake.crashes[0]


@pytest.fixture(scope="module")
def rollout_operator(
    cluster: Path,
    crds_installed: list[str],
    fake: FakeCloudRun,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("rollout-operator") / "operator.log"
    with operator_process(cluster, log, XYNERGY_CLOUDRUN_ENDPOINT=fake.endpoint) as op:
        yield op


def stable_service(kube: Kube, ns: str) -> str:
    name = unique("ai")
    create_cloudrun_xs(kube, ns, name)
    wait_ready(kube, ns, name)
    return name


def test_canary_moves_traffic_and_tags_per_step_then_promotes(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    svc = stable_service(kube, namespace)
    stable = f"{svc}-00001"
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {"duration": "1s"}}]
    create_rollout(kube, namespace, "ro", target=svc, image=IMAGE_2,
                   strategy={"canary": {"steps": steps}})  # fmt: skip
    status = wait_rollout(kube, namespace, "ro", "paused at 20%", phase_is("Paused"))["status"]
    canary = status["canaryRevision"]
    assert status["stableRevision"] == stable
    assert status["currentStepIndex"] == 1
    assert status["canaryWeight"] == 20
    assert canary.startswith(f"{svc}-ro-")
    assert served(fake, svc) == [(stable, 80, "stable"), (canary, 20, "canary")]
    assert status["canaryUrl"].startswith("https://canary---")

    merge_patch(kube, rollout_url(namespace, "ro"),
                {"metadata": {"annotations": {"xynergy.io/rollout-action": "promote"}}})  # fmt: skip
    status = wait_rollout(kube, namespace, "ro", "promoted", phase_is("Promoted"))["status"]
    assert status["handledAction"] == "promote"
    assert served(fake, svc) in ([("LATEST", 100, "")], [(canary, 100, "")])
    assert get_xs(kube, namespace, svc)["spec"]["image"] == IMAGE_2
    wait_ready(kube, namespace, svc)
    # the promotion did not make the XynergyService deploy a revision of its own
    assert revisions(fake, svc) == [stable, canary]
    reasons = [e["reason"] for e in events_of(kube, namespace, "ro")]
    assert "TrafficShifted" in reasons
    assert "Promoted" in reasons
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"


def test_abort_restores_all_traffic_to_the_stable_revision(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    svc = stable_service(kube, namespace)
    stable = f"{svc}-00001"
    create_rollout(kube, namespace, "ro", target=svc, image=IMAGE_2,
                   strategy={"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}})  # fmt: skip
    wait_rollout(kube, namespace, "ro", "paused at 30%", phase_is("Paused"))
    merge_patch(kube, rollout_url(namespace, "ro"), {"spec": {"abort": True}})
    status = wait_rollout(kube, namespace, "ro", "aborted", phase_is("Aborted"))["status"]
    assert status["canaryWeight"] == 0
    assert served(fake, svc) == [(stable, 100, "")]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "Aborted"
    assert get_xs(kube, namespace, svc)["spec"]["image"] != IMAGE_2

    # retry through the annotation starts again from the first step (same revision)
    merge_patch(kube, rollout_url(namespace, "ro"), {"spec": {"abort": False}})
    merge_patch(kube, rollout_url(namespace, "ro"),
                {"metadata": {"annotations": {"xynergy.io/rollout-action": "retry/1"}}})  # fmt: skip
    status = wait_rollout(kube, namespace, "ro", "paused again", phase_is("Paused"))["status"]
    assert status["canaryWeight"] == 30
    assert len(revisions(fake, svc)) == 2


def test_deleting_a_rollout_mid_canary_returns_all_traffic_to_the_stable_revision(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    svc = stable_service(kube, namespace)
    stable = f"{svc}-00001"
    create_rollout(kube, namespace, "ro", target=svc, image=IMAGE_2,
                   strategy={"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}})  # fmt: skip
    body = wait_rollout(kube, namespace, "ro", "paused at 30%", phase_is("Paused"))
    assert FINALIZER in body["metadata"]["finalizers"]
    canary = body["status"]["canaryRevision"]
    assert served(fake, svc) == [(stable, 70, "stable"), (canary, 30, "canary")]
    assert kube.delete(rollout_url(namespace, "ro")).status_code == 200
    kube.wait_for(
        "the deleted Rollout gone",
        lambda: kube.get(rollout_url(namespace, "ro")).status_code == 404,
    )
    # back on the stable revision as LATEST (review O 3): no longer pinned by name, so a
    # later edit of the XynergyService serves
    assert served(fake, svc) == [("LATEST", 100, "")]
    assert latest_ready(fake, svc) == stable
    restored = [e for e in events_of(kube, namespace, "ro") if e["reason"] == "TrafficRestored"]
    assert restored, events_of(kube, namespace, "ro")
    assert "routed as LATEST 100 %" in restored[0]["message"]

    # an ended Rollout loses the finalizer, and deleting it touches nothing
    create_rollout(kube, namespace, "now", target=svc, image=IMAGE_2,
                   strategy={"immediate": {}})  # fmt: skip
    wait_rollout(kube, namespace, "now", "promoted", phase_is("Promoted"))
    kube.wait_for(
        "the finalizer removed from the ended Rollout",
        lambda: not kube.get(rollout_url(namespace, "now")).json()["metadata"].get("finalizers"),
    )
    wait_ready(kube, namespace, svc)
    kube.wait_for("the promoted revision serving", lambda: served(fake, svc) != [])
    left = served(fake, svc)
    assert kube.delete(rollout_url(namespace, "now")).status_code == 200
    kube.wait_for(
        "the ended Rollout gone", lambda: kube.get(rollout_url(namespace, "now")).status_code == 404
    )
    assert served(fake, svc) == left


def test_a_rollout_stalled_mid_canary_keeps_its_finalizer_until_the_traffic_is_back(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    """Cloud Run refuses the operator mid-canary (permission revoked): the Rollout stalls
    (Degraded) while the service still splits its traffic, and its next converges cannot move
    it back. Deleted then, it waits (DeletionBlocked) instead of going with the split left,
    and once Cloud Run answers again all traffic is back on the stable revision."""
    svc = stable_service(kube, namespace)
    stable = f"{svc}-00001"
    create_rollout(kube, namespace, "ro", target=svc, image=IMAGE_2,
                   strategy={"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}})  # fmt: skip
    canary = wait_rollout(kube, namespace, "ro", "paused at 30%", phase_is("Paused"))["status"][
        "canaryRevision"
    ]
    assert served(fake, svc) == [(stable, 70, "stable"), (canary, 30, "canary")]
    try:
        fake.deny("Permission 'run.services.get' denied on resource")
        body = wait_rollout(kube, namespace, "ro", "stalled", phase_is("Degraded"))
        assert body["status"]["canaryWeight"] == 30, "the split Cloud Run still has"
        assert kube.delete(rollout_url(namespace, "ro")).status_code == 200
        kube.wait_for(
            "the deletion held",
            lambda: "DeletionBlocked" in [e["reason"] for e in events_of(kube, namespace, "ro")],
        )
        assert kube.get(rollout_url(namespace, "ro")).status_code == 200
    finally:
        fake.deny(None)
    kube.wait_for(
        "the deleted Rollout gone",
        lambda: kube.get(rollout_url(namespace, "ro")).status_code == 404,
    )
    kube.wait_for("the traffic settled", lambda: served(fake, svc) != [])
    # given back to the stable revision, then LATEST (the stable one: no longer pinned by name)
    assert served(fake, svc) == [("LATEST", 100, "")]
    assert latest_ready(fake, svc) == stable
    assert "Released" in [e["reason"] for e in events_of(kube, namespace, "ro")]


def test_deleting_an_aborted_rollout_routes_latest_so_an_edit_of_its_target_serves(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    """An aborted Rollout pins its stable revision by name at 100 %: it keeps its finalizer,
    and its deletion routes all traffic to LATEST, so a later edit of the XynergyService
    (whose controller does not manage Cloud Run traffic) serves. Before, the finalizer went
    with the abort and the edit's revision got no traffic."""
    svc = stable_service(kube, namespace)
    stable = f"{svc}-00001"
    create_rollout(kube, namespace, "ro", target=svc, image=IMAGE_2,
                   strategy={"canary": {"steps": [{"setWeight": 30}, {"pause": {}}]}})  # fmt: skip
    wait_rollout(kube, namespace, "ro", "paused at 30%", phase_is("Paused"))
    merge_patch(kube, rollout_url(namespace, "ro"), {"spec": {"abort": True}})
    body = wait_rollout(kube, namespace, "ro", "aborted", phase_is("Aborted"))
    assert served(fake, svc) == [(stable, 100, "")], "pinned by name"
    assert FINALIZER in body["metadata"]["finalizers"], "held while the stable is pinned"
    assert kube.delete(rollout_url(namespace, "ro")).status_code == 200
    kube.wait_for(
        "the deleted Rollout gone",
        lambda: kube.get(rollout_url(namespace, "ro")).status_code == 404,
    )
    assert served(fake, svc) == [("LATEST", 100, "")]
    assert "Released" in [e["reason"] for e in events_of(kube, namespace, "ro")]

    merge_patch(kube, xs_url(namespace, svc), {"spec": {"image": IMAGE_3}})
    kube.wait_for("the edit's revision ready", lambda: latest_ready(fake, svc) not in ("", stable))
    kube.wait_for("the traffic settled", lambda: served(fake, svc) != [])
    assert served(fake, svc) == [("LATEST", 100, "")], "the edit's revision serves everything"


def latest_ready(fake: FakeCloudRun, name: str) -> str:
    """The service's latest ready revision (what LATEST serves)."""
    with fake.state.lock:
        return str(fake.state.services[service_path(name)].latest_ready_revision).rpartition("/")[2]


def test_blue_green_preview_tag_then_switch_keeping_the_old_revision_for_a_while(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    svc = stable_service(kube, namespace)
    stable = f"{svc}-00001"
    create_rollout(kube, namespace, "bg", target=svc, image=IMAGE_2,
                   strategy={"blueGreen": {"scaleDownDelaySeconds": 3}})  # fmt: skip
    status = wait_rollout(kube, namespace, "bg", "previewing", phase_is("Paused"))["status"]
    new = status["canaryRevision"]
    assert served(fake, svc) == [(stable, 100, "stable"), (new, 0, "preview")]
    assert status["canaryUrl"].startswith("https://preview---")

    merge_patch(kube, rollout_url(namespace, "bg"),
                {"metadata": {"annotations": {"xynergy.io/rollout-action": "promote"}}})  # fmt: skip
    wait_rollout(kube, namespace, "bg", "promoted", phase_is("Promoted"))
    switched = served(fake, svc)
    assert switched[0] in (("LATEST", 100, ""), (new, 100, ""))
    assert switched[1:] == [(stable, 0, "previous")]
    kube.wait_for(
        "the previous revision released after scaleDownDelaySeconds",
        lambda: len(served(fake, svc)) == 1,
        timeout=30,
    )
    assert get_rollout(kube, namespace, "bg")["status"]["history"][0]["revision"] == stable


def test_a_target_name_without_room_for_the_canary_tag_is_refused_before_anything_moves(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    """The CRD admits a Cloud Run XynergyService of 49 characters, Cloud Run no `canary` tag
    beside a name of more than 40: a Rollout of a 41-character target is Degraded (Stalled
    `InvalidTarget`) at its start, saying so, and writes nothing to Cloud Run or the target
    (it failed mid-rollout with Cloud Run's INVALID_ARGUMENT before)."""
    svc = (unique("ai") + "-" + "x" * 40)[:41]
    create_cloudrun_xs(kube, namespace, svc)
    wait_ready(kube, namespace, svc)
    stable = f"{svc}-00001"
    with fake.state.lock:
        generation = fake.state.services[service_path(svc)].generation
    before = get_xs(kube, namespace, svc)["spec"]
    create_rollout(kube, namespace, "ro", target=svc, image=IMAGE_2,
                   strategy={"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})  # fmt: skip
    status = wait_rollout(kube, namespace, "ro", "refused", phase_is("Degraded"))["status"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "InvalidTarget"
    assert status["message"].startswith(
        f"spec.targetRef: XynergyService '{svc}' (41 characters) is too long for a Rollout on "
        "Cloud Run: the Rollout sets the traffic tag 'canary' (6 characters)"
    )
    assert "at most 40 characters" in status["message"]
    assert "canaryRevision" not in status
    kube.wait_for(
        "the InvalidTarget Event",
        lambda: "InvalidTarget" in [e["reason"] for e in events_of(kube, namespace, "ro")],
    )
    with fake.state.lock:
        assert fake.state.services[service_path(svc)].generation == generation, "no write"
    assert revisions(fake, svc) == [stable]
    assert served(fake, svc) == [("LATEST", 100, "")]
    assert get_xs(kube, namespace, svc)["spec"] == before, "the target is untouched"


def plugin(cluster: Path, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env={"KUBECONFIG": str(cluster)})
    assert result.exit_code == 0, result.output
    return result.output


def test_plugin_status_abort_retry_promote_undo(
    kube: Kube, cluster: Path, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    svc = stable_service(kube, namespace)
    stable = f"{svc}-00001"
    before = get_xs(kube, namespace, svc)["spec"]
    create_rollout(kube, namespace, "ro", target=svc, image=IMAGE_2,
                   template={"env": [{"name": "MODE", "value": "new"}], "args": ["--fast"]},
                   strategy={"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}})  # fmt: skip
    wait_rollout(kube, namespace, "ro", "paused at 25%", phase_is("Paused"))
    view = plugin(cluster, "rollout", "status", "ro", "-n", namespace)
    assert "Phase:     Paused" in view
    assert "stable 75%  canary 25%" in view

    plugin(cluster, "rollout", "abort", "ro", "-n", namespace)
    wait_rollout(kube, namespace, "ro", "aborted", phase_is("Aborted"))
    assert served(fake, svc) == [(stable, 100, "")]
    plugin(cluster, "rollout", "retry", "ro", "-n", namespace)
    wait_rollout(kube, namespace, "ro", "paused again", phase_is("Paused"))
    plugin(cluster, "rollout", "promote", "ro", "-n", namespace)
    status = wait_rollout(kube, namespace, "ro", "promoted", phase_is("Promoted"))["status"]
    canary = status["canaryRevision"]
    promoted = get_xs(kube, namespace, svc)["spec"]
    assert promoted["image"] == IMAGE_2
    assert {"name": "MODE", "value": "new"} in promoted["env"]
    assert promoted["args"] == ["--fast"]

    plugin(cluster, "rollout", "undo", "ro", "-n", namespace)
    status = wait_rollout(kube, namespace, "ro", "undone", phase_is("RolledBack"))["status"]
    assert status["stableRevision"] == stable
    # known to be empty (the earlier revision set no env, args or resources): the promoted
    # env and args nulled by the status merge patch, an empty object kept by the apiserver
    assert status.get("stableTemplate") == {}, status.get("stableTemplate")
    # the target's spec goes back too, image, env and args (its controller then deploys it)
    undone = get_xs(kube, namespace, svc)["spec"]
    for key in ("image", "env", "args", "resources"):
        assert undone.get(key) == before.get(key), key
    wait_ready(kube, namespace, svc)
    kube.wait_for("all traffic on the earlier revision",
                  lambda: served(fake, svc) == [(stable, 100, "")])  # fmt: skip
    assert canary in revisions(fake, svc)


def test_canary_deploy_interrupted_half_way_is_deployed_again_then_promotes(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    """An operation that fails half-way (13 INTERNAL) is no failed canary: the same template
    is deployed again (no second revision) and the rollout goes on to promotion."""
    svc = stable_service(kube, namespace)
    stable = f"{svc}-00001"
    fake.fail_operations_half_way(1)
    steps = [{"setWeight": 40}, {"pause": {"duration": "1s"}}]
    create_rollout(kube, namespace, "ro", target=svc, image=IMAGE_2,
                   strategy={"canary": {"steps": steps}})  # fmt: skip
    status = wait_rollout(
        kube, namespace, "ro", "ended", lambda s: s.get("phase") in ("Promoted", "Degraded")
    )["status"]
    assert status["phase"] == "Promoted", status.get("message")
    canary = status["canaryRevision"]
    assert revisions(fake, svc) == [stable, canary]
    assert get_xs(kube, namespace, svc)["spec"]["image"] == IMAGE_2
    reasons = [e["reason"] for e in events_of(kube, namespace, "ro")]
    assert "RevisionInterrupted" in reasons
    assert "RevisionFailed" not in reasons


def test_a_promotion_whose_operation_fails_is_tried_again_before_it_is_promoted(
    kube: Kube, rollout_operator: Operator, namespace: str, fake: FakeCloudRun
) -> None:
    """Cloud Run accepts the promotion's write but its operation fails (nothing of it
    served): a Warning PromotionFailed says so, the service is given back and the promotion
    (the person's `promote`, still pending) is tried again after the operator's backoff,
    then Promoted with no revision of the XynergyService's own. (The state in between lasts
    one backoff; the unit tests assert it: test_rollout_cloudrun_promotion.py.)"""
    svc = stable_service(kube, namespace)
    stable = f"{svc}-00001"
    create_rollout(kube, namespace, "ro", target=svc, image=IMAGE_2,
                   strategy={"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})  # fmt: skip
    status = wait_rollout(kube, namespace, "ro", "paused at 20%", phase_is("Paused"))["status"]
    canary = status["canaryRevision"]
    fake.fail_updates(1, message="could not program the route")

    merge_patch(kube, rollout_url(namespace, "ro"),
                {"metadata": {"annotations": {"xynergy.io/rollout-action": "promote/1"}}})  # fmt: skip
    status = wait_rollout(kube, namespace, "ro", "promoted", phase_is("Promoted"))["status"]
    assert status["handledAction"] == "promote/1"
    assert "promotingSince" not in status
    assert served(fake, svc) == [("LATEST", 100, "")]
    assert get_xs(kube, namespace, svc)["spec"]["image"] == IMAGE_2
    wait_ready(kube, namespace, svc)
    assert revisions(fake, svc) == [stable, canary]
    warnings = [e for e in events_of(kube, namespace, "ro") if e["reason"] == "PromotionFailed"]
    assert warnings, "a Warning says the promotion failed"
    assert "could not program the route" in warnings[0]["message"]
