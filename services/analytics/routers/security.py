"""``GET /api/v1/security/report``: the compliance report of the security policies
(docs/security.md) over the caller's tenant's XynergyServices, Rollouts and OAuthConnections,
evaluated by ``apis.policies`` (the CEL policies' twin) with the parameters ConfigMap the
policies read. Needs the editor role: the findings describe the tenant's configuration.

Objects belong to a tenant by their ``xynergy.io/tenant`` label (an OAuthConnection also by
its ``spec.tenant``). The parameters ConfigMap is found by name in any namespace
(``xynergy-system`` first, where manifests/base puts it; the chart puts it in its release's).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from lightkube import ApiError as KubeApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import ConfigMap, Namespace

from apis.policies import PARAMS_NAME, PRODUCTION_LABEL, Params, report, report_body
from apis.v1alpha1.common import GROUP, VERSION
from services.analytics.cluster import TENANT_LABEL, ClusterReader
from services.analytics.deps import AnalyticsDep, EditorDep
from services.common.errors import ApiError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/security", tags=["security"])
OAUTH = create_namespaced_resource(GROUP, VERSION, "OAuthConnection", "oauthconnections")
DEFAULT_PARAMS_NAMESPACE = "xynergy-system"


async def _listed(cluster: ClusterReader, res: Any, **kwargs: Any) -> list[dict[str, Any]]:
    try:
        return [
            item.to_dict() if hasattr(item, "to_dict") else dict(item)
            async for item in cluster.client.list(res, **kwargs)
        ]
    except KubeApiError as exc:
        raise ApiError(502, f"Kubernetes API: {exc.status.message}") from exc


async def _params(cluster: ClusterReader) -> tuple[Params | None, str | None]:
    found = await _listed(cluster, ConfigMap, namespace="*", fields={"metadata.name": PARAMS_NAME})
    if not found:
        return None, None
    found.sort(
        key=lambda c: (
            c["metadata"]["namespace"] != DEFAULT_PARAMS_NAMESPACE,
            c["metadata"]["namespace"],
        )
    )
    cm = found[0]
    return Params.from_data(cm.get("data")), f"{cm['metadata']['namespace']}/{PARAMS_NAME}"


async def _objects(cluster: ClusterReader, tenant: str) -> list[dict[str, Any]]:
    out = [{**p.raw, "kind": "XynergyService"} for p in await cluster.services(tenant)]
    out += [{**p.raw, "kind": "Rollout"} for p in await cluster.rollouts(tenant)]
    for conn in await _listed(cluster, OAUTH, namespace=cluster.namespace):
        labels = conn.get("metadata", {}).get("labels") or {}
        if tenant in (labels.get(TENANT_LABEL), (conn.get("spec") or {}).get("tenant")):
            out.append({**conn, "kind": "OAuthConnection"})
    return out


@router.get("/report", summary="Findings of the security policies over the tenant's objects")
async def security_report(a: AnalyticsDep, caller: EditorDep) -> dict[str, Any]:
    cluster = a.need_cluster()
    key, value = PRODUCTION_LABEL
    spaces = await _listed(cluster, Namespace, labels={key: value})
    params, source = await _params(cluster)
    findings = report(
        await _objects(cluster, caller.tenant),
        params=params,
        production_namespaces=[n["metadata"]["name"] for n in spaces],
    )
    return {
        "tenant": caller.tenant,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        **report_body(findings, params_source=source),
    }
