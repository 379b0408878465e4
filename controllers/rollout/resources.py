"""Pure builders of what a Rollout asks of its target: the new revision's XynergyService spec
(the target's with the rollout's image and template overrides) and the patch that makes the
target's own spec the new revision at promotion (or an older one at undo); on the
Kubernetes backend, the new revision's Deployment and Service, owned by the Rollout."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from apis.base import is_zero
from apis.v1alpha1.common import API_VERSION, LABEL_VALUE_MAX
from apis.v1alpha1.rollout import (
    ROLLOUT_NAME,
    RevisionTemplate,
    Rollout,
    RolloutSpec,
    TrafficRouting,
)
from apis.v1alpha1.xynergyservice import ResourceRequirements, XynergyService
from controllers.core.errors import StalledError
from controllers.xynergyservice.resources.naming import MANAGED_BY, MANAGED_BY_LABEL, SERVICE_LABEL
from controllers.xynergyservice.resources.references import CONFIG_SOURCES_ANNOTATION

__all__ = [
    "REVISION_LABEL",
    "ROLLOUT_LABEL",
    "canary_deployment",
    "canary_replicas",
    "canary_service",
    "check_label_name",
    "kubernetes_revision_name",
    "promotion_patch",
    "restore_patch",
    "restored",
    "revision_digest",
    "revision_url",
    "rolling_update",
    "settled_on",
    "with_overrides",
]


def _env(target: XynergyService, spec: RolloutSpec) -> list[Any] | None:
    overrides = spec.template.env if spec.template else None
    if not overrides:
        return target.spec.env
    by_name = {v.name: v for v in target.spec.env or []}
    by_name.update({v.name: v for v in overrides})
    return list(by_name.values())


def with_overrides(target: XynergyService, spec: RolloutSpec) -> XynergyService:
    """The target as the new revision: image, env (set or replaced by name), args, resources."""
    update: dict[str, Any] = {"env": _env(target, spec)}
    if spec.image:
        update["image"] = spec.image
    if spec.template is not None:
        if spec.template.args is not None:
            update["args"] = spec.template.args
        if spec.template.resources is not None:
            update["resources"] = spec.template.resources
    return target.model_copy(update={"spec": target.spec.model_copy(update=update)})


TEMPLATE_FIELDS = ("env", "args", "resources")
"""The spec fields a Rollout may change besides the image (a revision's template)."""


def _revision_fields(target: XynergyService) -> dict[str, Any]:
    """The target's image, env, args and resources as set (the fields a Rollout may change)."""
    spec = target.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {k: spec[k] for k in ("image", *TEMPLATE_FIELDS) if k in spec}


RESOURCE_KEYS = tuple(
    info.alias or name for name, info in ResourceRequirements.model_fields.items()
)
"""The keys of a spec's `resources` (an object: a merge patch merges into it)."""


def _whole(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` as merge-patch values that replace, not merge: `resources` is an object, so
    a merge patch keeps a key of the stored one it does not name; every key it may hold is
    sent, null for the unset ones (env and args are lists: a merge patch replaces those)."""
    out = dict(fields)
    resources = out.get("resources")
    if isinstance(resources, Mapping):
        out["resources"] = {k: resources.get(k) for k in RESOURCE_KEYS}
    return out


def promotion_patch(canary: XynergyService) -> dict[str, Any]:
    """A merge patch that makes the target's spec the new revision's (only the fields a
    Rollout may change; resources whole: a key the new revision does not set is removed)."""
    return {"spec": _whole(_revision_fields(canary))}


def spec_template(target: XynergyService) -> RevisionTemplate:
    """The target's env, args and resources (its promotion patch without the image)."""
    fields = _revision_fields(target)
    fields.pop("image", None)
    return RevisionTemplate.model_validate(fields)


def restore_patch(image: str, template: RevisionTemplate | None) -> dict[str, Any]:
    """A merge patch that puts an earlier revision's image back, and its env, args and
    resources when recorded (a field it did not set is removed: null in a merge patch; so is
    a resources key it did not set, which a promotion may have added)."""
    spec: dict[str, Any] = {"image": image}
    if template is not None:
        kept = template.model_dump(by_alias=True, exclude_none=True, mode="json")
        spec.update(_whole({k: kept.get(k) for k in TEMPLATE_FIELDS}))
    return {"spec": spec}


def _merged(stored: Any, patch: Any) -> Any:
    """RFC 7386: what the apiserver stores when `patch` is merged into `stored`."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(stored) if isinstance(stored, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merged(out.get(key), value)
    return out


def restored(
    target: XynergyService, image: str | None, template: RevisionTemplate | None
) -> XynergyService:
    """The target as an earlier revision whose `image` (None: the target's) and, when
    recorded, `template` the status kept: what `restore_patch` makes of its spec (as the
    apiserver merges it), whatever the target's spec holds now (a promotion's patch, say)."""
    patch = restore_patch(image or target.spec.image, template)
    body = target.model_dump(by_alias=True, exclude_none=True, mode="json")
    return XynergyService.model_validate(_merged(body, patch))


def settled_on(target: XynergyService, canary: XynergyService) -> bool:
    """The target's spec already is the new revision's (the promotion patch is in)."""
    want = _revision_fields(canary)
    have = _revision_fields(target)
    return all(have.get(k) == v for k, v in want.items())


# ---- Kubernetes backend: the new revision's Deployment and Service ---------------------------

ROLLOUT_LABEL = "xynergy.io/rollout"
"""On the Rollout's children: the Rollout's name."""
REVISION_LABEL = "xynergy.io/rollout-revision"
"""On the new revision's Deployment, Pods and Service: the revision (its Pods' selector)."""


def revision_digest(canary: XynergyService) -> str:
    """8 hex digits of the Pod template the new revision runs (same spec, same name). Without
    the config hash: a rotated Secret rolls the revision's Pods, it is not a new revision."""
    from controllers.xynergyservice.resources.kubernetes import template_digest

    return template_digest(canary)[:8]


REVISION_INFIX = "-ro-"


def kubernetes_revision_name(canary: XynergyService) -> str:
    """The new revision's name on Kubernetes, `crm-ro-1a2b3c4d`: its Deployment's and
    Service's name (a DNS-1035 label) and its `REVISION_LABEL` value, so at most 63
    characters. The target's name is cut to what leaves room for the suffix (51 of its up
    to 63): a longer one could not have a revision at all before, so no live child is
    renamed; its Pod spec holds the whole name (K_SERVICE), so the digest still tells two
    targets of the same first 51 characters apart."""
    digest = revision_digest(canary)
    room = LABEL_VALUE_MAX - len(REVISION_INFIX) - len(digest)
    return f"{(canary.metadata.name or '')[:room]}{REVISION_INFIX}{digest}"


def check_label_name(rollout: Rollout) -> None:
    """StalledError `InvalidName` for a Rollout whose name cannot be the `ROLLOUT_LABEL` value
    of its Kubernetes children (stored before the CRD refused such names at creation)."""
    problem = ROLLOUT_NAME.problem(rollout.metadata.name or "")
    if problem is not None:
        raise StalledError(problem, reason="InvalidName")


def revision_url(name: str, namespace: str | None) -> str:
    """The in-cluster URL of a revision's Service (the format the target's status.url has)."""
    return f"http://{name}.{namespace}.svc.cluster.local"


def canary_replicas(total: int, weight: int, *, routing: TrafficRouting, preview: bool) -> int:
    """Instances of the new revision for `weight` percent of the traffic: its share of the
    target's `total` behind the gateway; with replica-ratio routing (the target's Service
    spreads over both revisions' Pods, which the rollout cannot resize) the count that makes
    the new Pods `weight` percent of all; the full size for a blue-green preview and at 100."""
    if preview or weight >= 100:
        return total
    if weight <= 0:
        return 1
    if routing is TrafficRouting.REPLICAS:
        return max(1, round(total * weight / (100 - weight)))
    return max(1, math.ceil(total * weight / 100))


def _owner(rollout: Rollout) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "name": rollout.metadata.name,
        "uid": rollout.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _child_labels(rollout: Rollout, name: str) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        ROLLOUT_LABEL: rollout.metadata.name or "",
        REVISION_LABEL: name,
    }


def rolling_update(rollout: Rollout) -> dict[str, int | str] | None:
    """The RollingUpdate of the new revision's Deployment (how its own Pods are replaced: a
    rotated Secret, joining the target's Service) from the strategy: rolling's maxSurge and
    maxUnavailable; canary's maxSurge with maxUnavailable 0 (its serving Pods stay until
    their replacements are ready), 1 when maxSurge is 0 (one at a time: a Deployment needs
    one of them above 0); None for the others (the XynergyService's own: 25 %, 0)."""
    strategy = rollout.spec.strategy
    if strategy.rolling is not None:
        rolling = strategy.rolling
        return {"maxSurge": rolling.max_surge, "maxUnavailable": rolling.max_unavailable}
    if strategy.canary is not None:
        surge = strategy.canary.max_surge
        return {"maxSurge": surge, "maxUnavailable": 1 if is_zero(surge) else 0}
    return None


def canary_deployment(
    rollout: Rollout,
    canary: XynergyService,
    *,
    name: str,
    replicas: int,
    routing: TrafficRouting,
    serving: bool = True,
    digests: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The new revision's Deployment, owned by the Rollout. Its Pods carry the target's
    Pod selector only with replica-ratio routing and once it is `serving` (has a weight: so
    the target's Service reaches them, and not before its pre-traffic verification);
    behind the gateway they are reached through their own Service alone. `digests` (of the
    Secrets/ConfigMaps its env reads) give its Pod template the same config hash a
    XynergyService's Deployment carries, so its Pods roll on a rotation as the target's do.
    Its Pods are told `name` as their revision (K_REVISION), the name the Rollout reports."""
    from controllers.xynergyservice.resources.kubernetes import build_deployment

    dep = build_deployment(canary, digests=digests, revision=name)
    # the per-source digests the config hash was made from (a converge that cannot read a
    # source reuses them, kubernetes.py)
    annotations = dep["metadata"].get("annotations") or {}
    sources = {k: v for k, v in annotations.items() if k == CONFIG_SOURCES_ANNOTATION}
    pod_labels = {"app.kubernetes.io/name": canary.metadata.name or "", REVISION_LABEL: name}
    if routing is TrafficRouting.REPLICAS and serving:
        pod_labels[SERVICE_LABEL] = canary.metadata.name or ""
    dep["metadata"] = {
        "name": name,
        "namespace": canary.metadata.namespace,
        "labels": _child_labels(rollout, name),
        "ownerReferences": [_owner(rollout)],
        **({"annotations": sources} if sources else {}),
    }
    dep["spec"]["replicas"] = replicas
    dep["spec"]["progressDeadlineSeconds"] = rollout.spec.progress_deadline_seconds
    update = rolling_update(rollout)
    if update is not None:
        dep["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": update}
    dep["spec"]["selector"] = {"matchLabels": {REVISION_LABEL: name}}
    dep["spec"]["template"]["metadata"] = {
        **dep["spec"]["template"].get("metadata", {}),
        "labels": pod_labels,
    }
    return dep


def canary_service(rollout: Rollout, canary: XynergyService, *, name: str) -> dict[str, Any]:
    """The new revision's own Service (what the gateway's weighted upstream points at)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": canary.metadata.namespace,
            "labels": _child_labels(rollout, name),
            "ownerReferences": [_owner(rollout)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {REVISION_LABEL: name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
