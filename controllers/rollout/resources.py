"""Pure builders of what a Rollout asks of its target: the new revision's XynergyService spec
(the target's with the rollout's image and template overrides) and the patch that makes the
target's own spec the new revision at promotion (or an older one at undo)."""

from __future__ import annotations

from typing import Any

from apis.v1alpha1.rollout import RolloutSpec
from apis.v1alpha1.xynergyservice import XynergyService

__all__ = ["promotion_patch", "with_overrides"]


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


def promotion_patch(canary: XynergyService) -> dict[str, Any]:
    """A merge patch that makes the target's spec the new revision's (only the fields a
    Rollout may change)."""
    spec = canary.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    keys = ("image", "env", "args", "resources")
    return {"spec": {k: spec[k] for k in keys if k in spec}}
