"""Pure builders of the Kubernetes children of a XynergyService: a Deployment and a Service.

Children are plain dicts (what server-side apply sends), owned by the XynergyService so deleting
it garbage-collects them. The provider compares them with what is live before writing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from apis.v1alpha1.common import API_VERSION
from apis.v1alpha1.xynergyservice import (
    CONFIGURATION_ENV,
    CONTAINER_PORT_ENV,
    DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    PRE_STOP_SLEEP_SECONDS,
    REVISION_ENV,
    SERVICE_ENV,
    KeyToPath,
    Volume,
    XynergyService,
)
from controllers.xynergyservice.resources.naming import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POD_REVISION_ANNOTATION,
    REVISION_ANNOTATION,
    TEMPLATE_ANNOTATION,
    name_of,
    revision_name,
    selector,
)
from controllers.xynergyservice.resources.references import (
    CONFIG_HASH_ANNOTATION,
    CONFIG_SOURCES_ANNOTATION,
    config_hash,
    format_sources,
)

__all__ = [
    "DEFAULT_PROGRESS_DEADLINE_SECONDS",
    "PRE_STOP_SLEEP_SECONDS",
    "TERMINATION_GRACE_PERIOD_SECONDS",
    "build_deployment",
    "build_service",
    "owner_reference",
    "pod_spec",
    "pod_spec_digest",
    "revision_of",
    "service_url",
    "template_digest",
]

DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
"""Kubernetes' own default: a rollout without progress for this long is reported failed."""

TERMINATION_GRACE_PERIOD_SECONDS = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
"""The Pods' grace period unless spec.kubernetes.terminationGracePeriodSeconds sets one (the
preStop sleep, `PRE_STOP_SLEEP_SECONDS` from apis, plus Kubernetes' default 30 s)."""


def _labels(svc: XynergyService) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name_of(svc),
        MANAGED_BY_LABEL: MANAGED_BY,
        **selector(svc),
    }


def owner_reference(svc: XynergyService) -> dict[str, Any]:
    """Owner reference to the XynergyService (controller, blocks owner deletion)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "XynergyService",
        "name": name_of(svc),
        "uid": svc.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def service_url(svc: XynergyService) -> str:
    """The in-cluster URL of the Service."""
    return f"http://{name_of(svc)}.{svc.metadata.namespace}.svc.cluster.local"


def _contract_env(svc: XynergyService) -> list[dict[str, Any]]:
    """Cloud Run's (and Knative's) container contract: ``PORT`` (spec.port), ``K_SERVICE`` and
    ``K_CONFIGURATION`` (the service's name) and ``K_REVISION``, so one image and one spec
    listen where they are probed, and name themselves, on either backend; each one spec.env
    does not set (a user's value wins, as it always did for PORT, so an object that set
    K_SERVICE by hand before the operator did keeps its value).

    ``K_REVISION`` is read from the Pod's own `POD_REVISION_ANNOTATION` (the downward API):
    the revision's name cannot be a literal in the Pod spec, whose digest decides whether it
    is a new revision, and a scale keeps the revision (and its name) of the Pods it adds."""
    name = name_of(svc)
    revision_path = f"metadata.annotations['{POD_REVISION_ANNOTATION}']"
    named = {var.name for var in svc.spec.env or []}
    contract: list[dict[str, Any]] = [
        {"name": CONTAINER_PORT_ENV, "value": str(svc.spec.port)},
        {"name": SERVICE_ENV, "value": name},
        {
            "name": REVISION_ENV,
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": revision_path}},
        },
        {"name": CONFIGURATION_ENV, "value": name},
    ]
    return [item for item in contract if item["name"] not in named]


def _spec_env(svc: XynergyService) -> list[dict[str, Any]]:
    """spec.env as container env entries, in its order."""
    out: list[dict[str, Any]] = []
    for var in svc.spec.env or []:
        item: dict[str, Any] = {"name": var.name}
        if var.secret_key_ref is not None:
            ref = var.secret_key_ref
            item["valueFrom"] = {
                "secretKeyRef": {"name": ref.name, "key": ref.key, "optional": ref.optional}
            }
        elif var.config_map_key_ref is not None:
            cref = var.config_map_key_ref
            item["valueFrom"] = {
                "configMapKeyRef": {"name": cref.name, "key": cref.key, "optional": cref.optional}
            }
        else:
            item["value"] = var.value or ""
        out.append(item)
    return out


def _env(svc: XynergyService) -> list[dict[str, Any]]:
    """The container contract's variables (`_contract_env`) first, then spec.env: Kubernetes
    expands `$(VAR)` in a value only for a variable defined earlier in the list, so a user's
    `http://$(K_SERVICE):$(PORT)` resolves. A name spec.env sets is the user's alone (ours is
    left out, no duplicate names) and stays where the user put it, so a user's own value that
    reads a variable defined before it in spec.env still resolves."""
    return _contract_env(svc) + _spec_env(svc)


def _items(items: list[KeyToPath] | None) -> dict[str, Any]:
    return {"items": [{"key": i.key, "path": i.path} for i in items]} if items else {}


def _volume(volume: Volume) -> dict[str, Any]:
    """The Pod volume of a spec.volumes entry (its mount is in `_mounts`)."""
    if volume.secret is not None:
        src = volume.secret
        secret = {"secretName": src.secret_name, **_items(src.items), "optional": src.optional}
        return {"name": volume.name, "secret": secret}
    assert volume.config_map is not None  # the model requires exactly one source
    cm = volume.config_map
    config_map = {"name": cm.name, **_items(cm.items), "optional": cm.optional}
    return {"name": volume.name, "configMap": config_map}


def _mounts(svc: XynergyService) -> list[dict[str, Any]]:
    return [
        {"name": v.name, "mountPath": v.mount_path, "readOnly": True}
        for v in svc.spec.volumes or []
    ]


def _restricted(svc: XynergyService) -> bool:
    """The Pods meet the Pod Security Standard `restricted` (spec.kubernetes.podSecurity)."""
    k8s = svc.spec.kubernetes
    return k8s is None or k8s.pod_security == "restricted"


def _container(svc: XynergyService) -> dict[str, Any]:
    spec = svc.spec
    sizing = spec.sizing()
    container: dict[str, Any] = {
        "name": "app",
        "image": spec.image,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": sizing.cpu, "memory": sizing.memory},
            "limits": {"memory": sizing.memory},
        },
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    env = _env(svc)
    if env:
        container["env"] = env
    if spec.volumes:
        container["volumeMounts"] = _mounts(svc)
    if _restricted(svc):
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}}
    if spec.health_check is not None:
        hc = spec.health_check
        container["readinessProbe"] = {
            "httpGet": {"path": hc.path, "port": "http"},
            "periodSeconds": hc.period_seconds,
            "timeoutSeconds": hc.timeout_seconds,
            "failureThreshold": hc.failure_threshold,
        }
    return container


def build_deployment(
    svc: XynergyService,
    *,
    progress_deadline_seconds: int = DEFAULT_PROGRESS_DEADLINE_SECONDS,
    digests: Mapping[str, str] | None = None,
    revision: str | None = None,
) -> dict[str, Any]:
    """The Deployment running the service's instances; a rollout without progress for
    `progress_deadline_seconds` is reported as failed (ProgressDeadlineExceeded).

    `digests` (per Secret/ConfigMap the env reads, resources/references.py) put the config
    hash on the Pod template, so a changed value rolls the Pods (maxUnavailable 0: the old
    ones serve until the new ones are Ready), and the per-source digests on the Deployment.
    Secrets and ConfigMaps mounted as `spec.volumes` are not in them: the kubelet updates
    their files in place, and rolling the Pods would defeat that.

    The Pods meet PodSecurity `restricted` unless spec.kubernetes.podSecurity is baseline,
    and sleep `PRE_STOP_SLEEP_SECONDS` before their SIGTERM (docs/architecture.md).

    `revision` names what it runs (default the generation's `revision_name`; `revision_of`
    keeps the live one when only the instance count changed); the Pod spec's digest goes
    beside it, so a reader can tell whether the Deployment runs the spec's Pods. The Pods
    carry the name too (their K_REVISION reads it): in the template's metadata, outside the
    digested Pod spec."""
    spec = svc.spec
    pods = pod_spec(svc)
    name = revision or revision_name(svc)
    annotations = {REVISION_ANNOTATION: name, TEMPLATE_ANNOTATION: template_digest(svc, pods)}
    pod_annotations = {POD_REVISION_ANNOTATION: name}
    if digests:
        annotations[CONFIG_SOURCES_ANNOTATION] = format_sources(digests)
        pod_annotations[CONFIG_HASH_ANNOTATION] = config_hash(digests)
    template: dict[str, Any] = {
        "metadata": {"labels": _labels(svc), "annotations": pod_annotations},
        "spec": pods,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name_of(svc),
            "namespace": svc.metadata.namespace,
            "labels": _labels(svc),
            "annotations": annotations,
            "ownerReferences": [owner_reference(svc)],
        },
        "spec": {
            "replicas": spec.sizing().replicas,
            "progressDeadlineSeconds": progress_deadline_seconds,
            "selector": {"matchLabels": selector(svc)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": template,
        },
    }


def _grace_period(svc: XynergyService) -> int:
    """spec.kubernetes.terminationGracePeriodSeconds, else `TERMINATION_GRACE_PERIOD_SECONDS`
    (the model keeps it longer than the preStop sleep)."""
    k8s = svc.spec.kubernetes
    return k8s.grace_period_seconds() if k8s is not None else TERMINATION_GRACE_PERIOD_SECONDS


def pod_spec(svc: XynergyService) -> dict[str, Any]:
    """The Pod spec the service's instances run (the Deployment's template spec): what makes
    a revision."""
    spec = svc.spec
    pods: dict[str, Any] = {
        "containers": [_container(svc)],
        "terminationGracePeriodSeconds": _grace_period(svc),
    }
    if _restricted(svc):  # the rest of `restricted` is on the container
        pods["securityContext"] = {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    if spec.volumes:
        pods["volumes"] = [_volume(v) for v in spec.volumes]
    k8s = spec.kubernetes
    if k8s is not None and k8s.node_selector:
        pods["nodeSelector"] = dict(k8s.node_selector)
    if k8s is not None and k8s.service_account_name:
        pods["serviceAccountName"] = k8s.service_account_name
    if k8s is not None and k8s.tolerations:
        pods["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in k8s.tolerations
        ]
    return pods


def pod_spec_digest(pod_spec: Mapping[str, Any]) -> str:
    """16 hex digits of a Pod spec (sorted JSON). Not the config hash on the template: a
    rotated Secret rolls the Pods of the same revision, it is not a new one."""
    return hashlib.sha256(json.dumps(pod_spec, sort_keys=True).encode()).hexdigest()[:16]


def template_digest(svc: XynergyService, pods: Mapping[str, Any] | None = None) -> str:
    """The digest that tells one revision from another (`TEMPLATE_ANNOTATION`): of the Pod
    spec the service's instances run (`pods`, built here when not given), with the
    container's env read as spec.env followed by the contract's variables, their place
    before they moved first. Where the operator puts its own variables is not a change of
    what the service asks for: moving them made no Deployment a new revision (its name, a
    Kubernetes Rollout's new revision in flight, `-ro-<digest>`, and the status stayed); the
    Pods rolled once under the revision name they had, as for a rotated Secret."""
    pods = pod_spec(svc) if pods is None else pods
    ours = len(_contract_env(svc))
    first, *others = pods["containers"]
    env = list(first.get("env") or [])
    view = {**pods, "containers": [{**first, "env": env[ours:] + env[:ours]}, *others]}
    return pod_spec_digest(view)


def revision_of(svc: XynergyService, live: Mapping[str, Any] | None) -> str | None:
    """The live Deployment's revision when it runs the Pod spec the service asks for (only
    its instance count, the config hash or other Deployment fields differ), else None (a new
    revision). A Deployment from before the digest annotation counts as a new one."""
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    kept = annotations.get(REVISION_ANNOTATION)
    want = template_digest(svc)
    return kept if kept and annotations.get(TEMPLATE_ANNOTATION) == want else None


def build_service(svc: XynergyService) -> dict[str, Any]:
    """The Service in front of the instances (port 80 -> the container's port)."""
    k8s = svc.spec.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name_of(svc),
            "namespace": svc.metadata.namespace,
            "labels": _labels(svc),
            "ownerReferences": [owner_reference(svc)],
        },
        "spec": {
            "type": k8s.service_type if k8s is not None else "ClusterIP",
            "selector": selector(svc),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
