"""A Secret rotated mid-canary reaches the Rollout's new revision at once (Kubernetes backend,
kwok): the operator's Secret/ConfigMap watch converges the Rollouts whose new revision reads
the object, so the canary Deployment's config hash changes without waiting for the Rollout's
next timed converge (pushed far out here: POLL_SECONDS 40 -> 10 minutes while paused, the
drift check at an hour)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_support import Kube
from test_rollout_support import (
    Operator,
    create_rollout,
    get_rollout,
    operator_process,
    wait_rollout,
)
from test_xynergyservice import create_xs, deployment, merge_patch, wait_ready
from test_xynergyservice_cloudrun import unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slow_resync_operator(
    cluster: Path, crds_installed: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("rollout-rotation-op") / "operator.log"
    env = {"XYNERGY_ROLLOUT_POLL_SECONDS": "40", "XYNERGY_DRIFT_CHECK_SECONDS": "3600"}
    with operator_process(cluster, log, **env) as op:
        yield op


def _config_hash(kube: Kube, ns: str, name: str) -> str | None:
    dep = deployment(kube, ns, name) or {}
    meta = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
    value: Any = (meta.get("annotations") or {}).get("xynergy.io/config-hash")
    return value


def test_a_secret_rotated_mid_canary_rolls_the_canary_at_once(
    kube: Kube, slow_resync_operator: Operator, namespace: str
) -> None:
    secret = {"metadata": {"name": "api"}, "stringData": {"token": "first-value-0001"}}
    assert kube.create(f"/api/v1/namespaces/{namespace}/secrets", secret).status_code == 201
    svc = unique("ai")
    env = [{"name": "API_TOKEN", "secretKeyRef": {"name": "api", "key": "token"}}]
    create_xs(kube, namespace, svc, backend="kubernetes", port=8080, env=env)
    wait_ready(kube, namespace, svc)
    create_rollout(kube, namespace, "ro", target=svc, image="reg.example/app:2",
                   strategy={"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})  # fmt: skip
    status = wait_rollout(kube, namespace, "ro", "paused at 20%",
                          lambda st: st.get("phase") == "Paused", timeout=60)["status"]  # fmt: skip
    name = status["canaryRevision"]
    before = _config_hash(kube, namespace, name)
    assert before is not None
    assert before == _config_hash(kube, namespace, svc)

    rotated = base64.b64encode(b"second-value-0002").decode()
    merge_patch(kube, f"/api/v1/namespaces/{namespace}/secrets/api", {"data": {"token": rotated}})
    # well inside the Rollout's next timed converge (10 minutes away)
    kube.wait_for("the canary's Pods rolled with the rotated Secret",
                  lambda: _config_hash(kube, namespace, name) not in (None, before),
                  timeout=30)  # fmt: skip
    kube.wait_for("the target rolled to the same hash",
                  lambda: _config_hash(kube, namespace, svc) == _config_hash(kube, namespace, name),
                  timeout=30)  # fmt: skip
    status = get_rollout(kube, namespace, "ro")["status"]
    assert status["canaryRevision"] == name, "a rotation is not a new revision"
    assert status["phase"] == "Paused"
