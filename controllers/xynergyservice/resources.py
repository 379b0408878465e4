"""Pure builders of the Kubernetes children of a XynergyService: a Deployment and a Service.

Children are plain dicts (what server-side apply sends), owned by the XynergyService so deleting
it garbage-collects them. `is_subset` tells whether a live object already has every field we
manage, so an unchanged object causes no write.
"""

from __future__ import annotations

import re
from typing import Any

from apis.v1alpha1.common import API_VERSION
from apis.v1alpha1.xynergyservice import XynergyService

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "OWNED_SELECTOR",
    "REVISION_ANNOTATION",
    "SERVICE_LABEL",
    "build_deployment",
    "build_service",
    "is_subset",
    "owner_reference",
    "revision_name",
    "selector",
    "selector_string",
    "service_url",
]

MANAGED_BY = "xynergy"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# What the operator watches its Deployments by (a server-side label selector).
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
SERVICE_LABEL = "xynergy.io/service"
REVISION_ANNOTATION = "xynergy.io/revision"
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
    "Gi": 1024.0**3,
    "Ti": 1024.0**4,
}


def _name(svc: XynergyService) -> str:
    assert svc.metadata.name, "metadata.name is required"
    return svc.metadata.name


def revision_name(svc: XynergyService) -> str:
    """Revision of the spec generation, e.g. crm-00003 (like Knative's revision names)."""
    return f"{_name(svc)}-{svc.metadata.generation or 0:05d}"


def selector(svc: XynergyService) -> dict[str, str]:
    """Labels that select the service's Pods."""
    return {SERVICE_LABEL: _name(svc)}


def selector_string(svc: XynergyService) -> str:
    """The selector as a label-selector string (for the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in selector(svc).items())


def _labels(svc: XynergyService) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": _name(svc),
        MANAGED_BY_LABEL: MANAGED_BY,
        **selector(svc),
    }


def owner_reference(svc: XynergyService) -> dict[str, Any]:
    """Owner reference to the XynergyService (controller, blocks owner deletion)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "XynergyService",
        "name": _name(svc),
        "uid": svc.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def service_url(svc: XynergyService) -> str:
    """The in-cluster URL of the Service."""
    return f"http://{_name(svc)}.{svc.metadata.namespace}.svc.cluster.local"


def _env(svc: XynergyService) -> list[dict[str, Any]]:
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
    if spec.health_check is not None:
        hc = spec.health_check
        container["readinessProbe"] = {
            "httpGet": {"path": hc.path, "port": "http"},
            "periodSeconds": hc.period_seconds,
            "timeoutSeconds": hc.timeout_seconds,
            "failureThreshold": hc.failure_threshold,
        }
    return container


def build_deployment(svc: XynergyService) -> dict[str, Any]:
    """The Deployment running the service's instances."""
    spec = svc.spec
    pod_spec: dict[str, Any] = {"containers": [_container(svc)]}
    k8s = spec.kubernetes
    if k8s is not None and k8s.node_selector:
        pod_spec["nodeSelector"] = dict(k8s.node_selector)
    if k8s is not None and k8s.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in k8s.tolerations
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": _name(svc),
            "namespace": svc.metadata.namespace,
            "labels": _labels(svc),
            "annotations": {REVISION_ANNOTATION: revision_name(svc)},
            "ownerReferences": [owner_reference(svc)],
        },
        "spec": {
            "replicas": spec.sizing().replicas,
            "selector": {"matchLabels": selector(svc)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": _labels(svc)}, "spec": pod_spec},
        },
    }


def build_service(svc: XynergyService) -> dict[str, Any]:
    """The Service in front of the instances (port 80 -> the container's port)."""
    k8s = svc.spec.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": _name(svc),
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


def _quantity(value: str) -> float | None:
    match = _QUANTITY.match(value)
    if not match or match.group(2) not in _SUFFIX:
        return None
    try:
        return float(match.group(1)) * _SUFFIX[match.group(2)]
    except ValueError:
        return None


def _same_scalar(want: Any, have: Any) -> bool:
    if want == have:
        return True
    if isinstance(want, (str, int)) and isinstance(have, (str, int)):
        a, b = _quantity(str(want)), _quantity(str(have))
        return a is not None and b is not None and abs(a - b) < 1e-9
    return False


def is_subset(want: Any, have: Any) -> bool:
    """True when every field in `want` is present and equal in `have`.

    Dicts compare key by key; lists element by element (same length); quantities by value
    (the apiserver writes `1000m` back as `1`).
    """
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(k in have and is_subset(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(is_subset(w, h) for w, h in zip(want, have, strict=True))
    return _same_scalar(want, have)
