"""Rotation on the real apiserver: a Secret a XynergyService reads changes, the operator's watch
of the Secrets it labelled converges the service at once (the resync is 600 s away), the Pod
template's config hash changes and the Deployment rolls; an Event names the Secret, no value
appears anywhere; a change the env does not read writes nothing. A ConfigMap is labelled and
watched the same way and rolls at once too, without waiting for the service's next check."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kube_support import Kube, audit_lines, writes_by
from test_xynergyservice import create_xs, deployment, merge_patch, wait_ready, xs_url

from controllers.xynergyservice import sources

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HASH = "xynergy.io/config-hash"
OPERATOR = "xynergy-operator"
OLD, NEW = "old-password-0001", "new-password-0002"


def _template_hash(kube: Kube, ns: str, name: str) -> str | None:
    dep = deployment(kube, ns, name) or {}
    meta = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return (meta.get("annotations") or {}).get(HASH)


def _rolled(kube: Kube, ns: str, name: str, old_hash: str | None) -> bool:
    dep = deployment(kube, ns, name) or {}
    status = dep.get("status") or {}
    return (
        _template_hash(kube, ns, name) not in (None, old_hash)
        and status.get("observedGeneration") == dep["metadata"]["generation"]
        and status.get("updatedReplicas") == dep["spec"]["replicas"]
        and status.get("readyReplicas") == dep["spec"]["replicas"]
        and not status.get("unavailableReplicas")
    )


def _settled(kube: Kube, ns: str, name: str) -> bool:
    """The Deployment's controller is done with it: no more status events to converge on."""
    dep = deployment(kube, ns, name) or {}
    status = dep.get("status") or {}
    progressing = [c for c in status.get("conditions") or [] if c["type"] == "Progressing"]
    return (
        status.get("observedGeneration") == dep["metadata"]["generation"]
        and status.get("availableReplicas") == dep["spec"]["replicas"]
        and [c.get("reason") for c in progressing] == ["NewReplicaSetAvailable"]
    )


def _events(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    items = kube.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def _put_secret(kube: Kube, ns: str, data: dict[str, str]) -> None:
    path = f"/api/v1/namespaces/{ns}/secrets/db"
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    merge_patch(kube, path, {"data": encoded})


def _writes(audit_log: Path, ns: str, since: int) -> list[str]:
    return [
        f"{w['verb']} {w['objectRef'].get('resource')}"
        + (f"/{w['objectRef']['subresource']}" if w["objectRef"].get("subresource") else "")
        for w in writes_by(audit_log, OPERATOR, since_line=since)
        if w["objectRef"].get("namespace") == ns
    ]


def test_rotated_secret_rolls_the_deployment_and_says_so(
    kube: Kube, operator: KopfRunner, namespace: str, audit_log: Path
) -> None:
    secret = {"metadata": {"name": "db"}, "stringData": {"password": OLD, "unused": "a"}}
    assert kube.create(f"/api/v1/namespaces/{namespace}/secrets", secret).status_code == 201
    env = [{"name": "DB_PASSWORD", "secretKeyRef": {"name": "db", "key": "password"}}]
    create_xs(kube, namespace, "api", env=env, scaling={"minInstances": 2})
    wait_ready(kube, namespace, "api")
    first = _template_hash(kube, namespace, "api")
    assert first is not None
    labels = kube.get(f"/api/v1/namespaces/{namespace}/secrets/db").json()["metadata"]["labels"]
    assert labels["xynergy.io/env-source"] == "true"

    start = audit_lines(audit_log)
    # First a change the env does not read, then the rotation: the watch delivers them in
    # order and converges one after the other, so any write of the first shows up below.
    _put_secret(kube, namespace, {"unused": "b"})
    _put_secret(kube, namespace, {"password": NEW})
    kube.wait_for(
        "the Deployment to roll to the new config hash",
        lambda: _rolled(kube, namespace, "api", first),
        timeout=60,
    )
    wait_ready(kube, namespace, "api", timeout=60)
    kube.wait_for(
        "the ConfigChanged Event",
        lambda: any(e["reason"] == "ConfigChanged" for e in _events(kube, namespace, "api")),
        timeout=30,
    )
    changed = [e for e in _events(kube, namespace, "api") if e["reason"] == "ConfigChanged"]
    assert len(changed) == 1, changed
    assert changed[0]["message"].startswith("Secret db changed"), changed[0]["message"]
    writes = _writes(audit_log, namespace, start)
    assert writes.count("patch deployments") == 1, writes
    assert not any(w.endswith("secrets") for w in writes), writes

    xs = kube.get(xs_url(namespace, "api")).json()
    everything = json.dumps(
        [deployment(kube, namespace, "api"), _events(kube, namespace, "api"), xs]
    )
    for value in (OLD, NEW, base64.b64encode(NEW.encode()).decode()):
        assert value not in everything


def test_changed_configmap_rolls_without_waiting_for_the_next_check(
    kube: Kube, operator: KopfRunner, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    cm = {"metadata": {"name": "cfg"}, "data": {"level": "info"}}
    assert kube.create(f"/api/v1/namespaces/{namespace}/configmaps", cm).status_code == 201
    env = [{"name": "LEVEL", "configMapKeyRef": {"name": "cfg", "key": "level"}}]
    create_xs(kube, namespace, "cfgd", env=env)
    wait_ready(kube, namespace, "cfgd")
    first = _template_hash(kube, namespace, "cfgd")
    cfg = f"/api/v1/namespaces/{namespace}/configmaps/cfg"
    labels = kube.get(cfg).json()["metadata"].get("labels") or {}
    assert labels.get("xynergy.io/env-source") == "true", labels
    # The Deployment's own status events converge the service until it settles; change the
    # ConfigMap after that, with no resync-requested annotation (the resync is 600 s away).
    kube.wait_for("the Deployment to settle", lambda: _settled(kube, namespace, "cfgd"))
    caplog.set_level(logging.INFO, logger=sources.__name__)
    merge_patch(kube, cfg, {"data": {"level": "debug"}})
    kube.wait_for(
        "the Deployment to roll to the new config hash",
        lambda: _rolled(kube, namespace, "cfgd", first),
        timeout=60,
    )
    kube.wait_for(
        "the ConfigChanged Event naming the ConfigMap",
        lambda: any(
            e["reason"] == "ConfigChanged" and e["message"].startswith("ConfigMap cfg changed")
            for e in _events(kube, namespace, "cfgd")
        ),
        timeout=30,
    )
    # The roll came from the ConfigMap watch, not from a Deployment event still in flight.
    watched = f"ConfigMap {namespace}/cfg modified: converging XynergyService cfgd"
    assert watched in [r.getMessage() for r in caplog.records if r.name == sources.__name__]
