"""``/phase3/scaling`` and ``/phase3/deployment``: views over the tenant's ScalingPolicy and
Rollout objects (read through the ``apis`` models), ``analyze`` and ``deploy``.

``analyze`` makes the policy's decision now, as a dry run (``services.analytics.dryrun``: the
operator's mapping from ``adapters.scaling`` and ``intelligence.scaling.decide`` on what the
status last observed, or on ``?load=``), next to the controller's last decision. ``deploy``
creates a Rollout of the service.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apis.conditions import get_condition
from services.analytics.cluster import ClusterError, Parsed
from services.analytics.deps import AnalyticsDep, CallerDep, EditorDep
from services.analytics.dryrun import dry_run
from services.analytics.prometheus import PrometheusClient, PrometheusError
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


async def _load_now(a: AnalyticsDep, policy: Any) -> float | None:
    """The policy's load read now from Prometheus (its own URL, else this service's); None
    when it cannot be read here (another source, no Prometheus): the status's last load."""
    metric = policy.spec.metric
    if str(metric.source) != "prometheus" or not metric.query:
        return None
    engine = a.anomalies
    if metric.prometheus_url and engine is not None:
        client = PrometheusClient(metric.prometheus_url, engine.http)
    elif engine is not None:
        client = engine.prometheus
    else:
        return None
    try:
        return await client.instant(metric.query)
    except PrometheusError:
        return None


@scaling.post("/analyze/{service_name}", summary="The scaling decision for a service now")
async def analyze(
    service_name: str, a: AnalyticsDep, caller: CallerDep, load: float | None = None
) -> dict[str, Any]:
    cluster = a.need_cluster()
    policies = [
        p
        for p in await cluster.policies(caller.tenant)
        if p.obj and p.obj.spec.target_ref.name == service_name
    ]
    if not policies:
        raise ApiError(
            404, f"service_name: no ScalingPolicy of this tenant targets {service_name!r}"
        )
    if load is not None and not 0 <= load < float("inf"):
        raise ApiError(422, f"load: expected a finite number >= 0, got {load}")
    policy = policies[0].obj
    if load is None:
        load = await _load_now(a, policy)
    if load is None and policy.status is not None:
        load = policy.status.current_load
    targets = [s for s in await cluster.services(caller.tenant) if s.name == service_name]
    sizing = targets[0].obj.spec.sizing() if targets and targets[0].obj is not None else None
    view = policy_view(policies[0])
    answer = {"tenant": caller.tenant, "service": service_name, "policy": view}
    answer["last_decision"] = view["last_decision"]
    if load is None:
        why = "no load now (Prometheus), none observed by the policy; give ?load=<value>"
        return {**answer, "decision": None, "no_decision": why}
    try:
        decision = dry_run(policy, sizing, now=time.time(), load=load)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from exc
    return {
        **answer,
        "load": load,
        "decision": {
            "dry_run": True,
            "desired_instances": decision.desired,
            "mode": str(decision.mode),
            "reason": str(decision.reason),
            "message": decision.message,
            "fallback": None if decision.fallback is None else str(decision.fallback),
            "active_schedules": list(decision.active_schedules),
            "evidence": decision.evidence,
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
