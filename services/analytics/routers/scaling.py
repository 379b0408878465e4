"""``/phase3/scaling`` and ``/phase3/deployment``: views over the tenant's ScalingPolicy and
Rollout objects (read through the ``apis`` models), ``analyze`` and ``deploy``.

``analyze`` reports what the ScalingPolicy controller decided last (its status: load, desired
instances, forecast band, mode and reason). A fresh dry-run decision needs the API ->
``intelligence.scaling.ScalingParams`` mapping, which today lives only in the operator
(``controllers/scalingpolicy/params.py``, not importable by services); until it moves to a
shared module the answer says so in ``dry_run``. ``deploy`` creates a Rollout of the service.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apis.conditions import get_condition
from services.analytics.cluster import ClusterError, Parsed
from services.analytics.deps import AnalyticsDep, CallerDep, EditorDep
from services.common.errors import ApiError

__all__ = ["deployment", "policy_view", "rollout_view", "scaling"]

scaling = APIRouter(prefix="/phase3/scaling", tags=["scaling"])
deployment = APIRouter(prefix="/phase3/deployment", tags=["deployment"])


def _ready(obj: Any) -> dict[str, Any] | None:
    status = getattr(obj, "status", None)
    cond = get_condition(status.conditions, "Ready") if status is not None else None
    return (
        None
        if cond is None
        else {"status": cond.status, "reason": cond.reason, "message": cond.message}
    )


def _ref(p: Parsed) -> dict[str, Any]:
    """Where the object is and which service it is about."""
    spec = p.obj.spec if p.obj is not None else None
    target = spec.target_ref.name if spec is not None else None
    return {"namespace": p.namespace, "name": p.name, "target": target}


def policy_view(p: Parsed) -> dict[str, Any]:
    if p.obj is None:
        return {**_ref(p), "error": p.error}
    spec, st = p.obj.spec, p.obj.status
    return {
        **_ref(p),
        "mode": str(spec.mode),
        "target_per_instance": spec.metric.target_per_instance,
        "min_instances": spec.min_instances,
        "max_instances": spec.max_instances,
        "current_instances": st.current_instances if st else None,
        "desired_instances": st.desired_instances if st else None,
        "current_load": st.current_load if st else None,
        "mode_in_effect": (str(st.mode) if st and st.mode else None),
        "mode_reason": st.mode_reason if st else None,
        "last_decision": st.last_decision.model_dump(mode="json", by_alias=True)
        if st and st.last_decision
        else None,
        "forecast": [f.model_dump(mode="json") for f in (st.forecast or [])] if st else [],
        "model": st.model if st else None,
        "ready": _ready(p.obj),
    }


def rollout_view(p: Parsed) -> dict[str, Any]:
    if p.obj is None:
        return {**_ref(p), "error": p.error}
    spec, st = p.obj.spec, p.obj.status
    return {
        **_ref(p),
        "image": spec.image,
        "strategy": next(
            (k for k, v in spec.strategy.model_dump(by_alias=True).items() if v is not None), None
        ),
        "phase": str(st.phase) if st and st.phase else None,
        "step": st.current_step_index if st else None,
        "canary_weight": st.canary_weight if st else None,
        "verdicts": [r.model_dump(mode="json") for r in (st.analysis_runs or [])] if st else [],
        "message": st.message if st else None,
        "ready": _ready(p.obj),
    }


@scaling.get("/dashboard", summary="The tenant's ScalingPolicies: load, instances, forecast")
async def scaling_dashboard(a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    policies = await a.need_cluster().policies(caller.tenant)
    return {"tenant": caller.tenant, "policies": [policy_view(p) for p in policies]}


@scaling.post("/analyze/{service_name}", summary="The scaling decision for a service now")
async def analyze(service_name: str, a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    policies = [
        p
        for p in await a.need_cluster().policies(caller.tenant)
        if p.obj and p.obj.spec.target_ref.name == service_name
    ]
    if not policies:
        raise ApiError(
            404, f"service_name: no ScalingPolicy of this tenant targets {service_name!r}"
        )
    view = policy_view(policies[0])
    return {
        "tenant": caller.tenant,
        "service": service_name,
        "policy": view,
        "decision": view["last_decision"],
        "dry_run": {
            "available": False,
            "reason": "the ScalingPolicy -> ScalingParams mapping is operator-only "
            "(controllers/scalingpolicy/params.py); this shows the controller's last decision",
        },
    }


@deployment.get("/dashboard", summary="The tenant's Rollouts: phase, step, verdicts")
async def deployment_dashboard(a: AnalyticsDep, caller: CallerDep) -> dict[str, Any]:
    rollouts = await a.need_cluster().rollouts(caller.tenant)
    return {"tenant": caller.tenant, "rollouts": [rollout_view(p) for p in rollouts]}


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, max_length=512)
    strategy: dict[str, Any] = Field(
        default_factory=lambda: {
            "canary": {
                "steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}, {"setWeight": 100}]
            }
        }
    )


@deployment.post("/deploy/{service_name}", status_code=201, summary="Create a Rollout of a service")
async def deploy(
    service_name: str, body: DeployRequest, a: AnalyticsDep, caller: EditorDep
) -> dict[str, Any]:
    cluster = a.need_cluster()
    targets = [s for s in await cluster.services(caller.tenant) if s.name == service_name]
    if not targets:
        raise ApiError(404, f"service_name: no XynergyService {service_name!r} of this tenant")
    rollout = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": f"{service_name}-{uuid.uuid4().hex[:6]}",
            "namespace": targets[0].namespace,
        },
        "spec": {
            "targetRef": {"kind": "XynergyService", "name": service_name},
            "image": body.image,
            "strategy": body.strategy,
        },
    }
    try:
        created = await cluster.create_rollout(caller.tenant, rollout)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(x) for x in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        raise ApiError(422, f"{fields[0]['field']}: {fields[0]['message']}", fields=fields) from exc
    except ClusterError as exc:
        raise ApiError(exc.status if 400 <= exc.status < 600 else 502, str(exc)) from exc
    meta = created.get("metadata", {})
    return {
        "tenant": caller.tenant,
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "service": service_name,
        "image": body.image,
    }
