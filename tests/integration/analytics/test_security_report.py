"""``GET /api/v1/security/report`` on the analytics service over a real kube-apiserver: the
caller's tenant's XynergyServices, Rollouts and OAuthConnections judged by the security rules
(image provenance only in a namespace labelled production), with the parameters read from the
live ConfigMap; editors only; another tenant's objects never appear."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ai_router.conftest import INTERNAL, SIGNER
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from services.common.identity import IDENTITY_HEADER
from services.common.tenancy import Identity

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

XY = "/apis/xynergy.io/v1alpha1"
ID = uuid.uuid4().hex[:6]
ACME, OTHER = f"acme-{ID}", f"other-{ID}"
PROD, DEV = f"t-secprod-{ID}", f"t-secdev-{ID}"
SIZED = {"cpu": "250m", "memory": "256Mi"}
PINNED = "ghcr.io/xynergy/crm:1@sha256:" + "0123456789abcdef" * 4


def _service(name: str, tenant: str, **spec: Any) -> dict[str, Any]:
    meta = {"name": name, "labels": {"xynergy.io/tenant": tenant}}
    return {"apiVersion": "xynergy.io/v1alpha1", "kind": "XynergyService", "metadata": meta,
            "spec": {"image": PINNED, "resources": SIZED, **spec}}  # fmt: skip


def _oauth(name: str, tenant: str, scopes: list[str]) -> dict[str, Any]:
    spec = {
        "provider": "slack",
        "clientSecretRef": {"name": "client"},
        "scopes": scopes,
        "redirectURL": "https://app.xynergyos.com/oauth/callback",
        "tenant": tenant,  # no tenant label: the report also goes by spec.tenant
        "tokenSecretName": "tokens",
    }
    return {"apiVersion": "xynergy.io/v1alpha1", "kind": "OAuthConnection",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


OBJECTS = [
    (PROD, "xynergyservices", _service("web", ACME, image="ghcr.io/xynergy/web:2")),
    (PROD, "xynergyservices", _service("ok", ACME)),
    (DEV, "xynergyservices", _service("job", ACME, image="nginx:1", resources={"cpu": "1"})),
    (DEV, "oauthconnections", _oauth("chat", ACME, ["chat:write", "channels:read"])),
    (DEV, "xynergyservices", _service("theirs", OTHER, env=[{"name": "TOKEN", "value": "s3cr3t"}])),
]
# The live parameters, narrower than the shipped ones (which allow channels:read)
PARAMS = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "xynergy-policy-params"},
    "data": {"allowedRegistries": "ghcr.io/xynergy", "allowedScopes.slack": "chat:write"},
}


@pytest.fixture(scope="module")
def objects(kube: Kube, crds_installed: list[str]) -> Iterator[None]:
    labels = {PROD: {"xynergy.io/environment": "production"}, DEV: {}}
    for ns, extra in labels.items():
        resp = kube.create("/api/v1/namespaces", {"metadata": {"name": ns, "labels": extra}})
        assert resp.status_code == 201, resp.text
    try:
        resp = kube.create(f"/api/v1/namespaces/{DEV}/configmaps", PARAMS)
        assert resp.status_code == 201, resp.text
        for ns, plural, body in OBJECTS:
            resp = kube.create(f"{XY}/namespaces/{ns}/{plural}", body)
            assert resp.status_code == 201, resp.text
        yield
    finally:
        for ns in labels:
            kube.delete(f"/api/v1/namespaces/{ns}")


@pytest.fixture
async def analytics(cluster: Path, objects: None) -> AsyncIterator[httpx.AsyncClient]:
    kube = AsyncClient(config=KubeConfig.from_file(str(cluster)))
    settings = AnalyticsSettings(log_level="WARNING")
    app = create_app(settings, internal_settings=INTERNAL, kube_client=kube)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://analytics") as http:
        yield http
    await kube.close()


def _as(tenant: str, *roles: str) -> dict[str, str]:
    return {IDENTITY_HEADER: SIGNER.sign(Identity("u1", tenant, roles=roles))}


def _by_object(report: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for f in report["findings"]:
        out.setdefault(f["object"]["name"], []).append((f["severity"], f["rule"]))
    return out


async def test_report_lists_the_tenants_findings_by_severity(
    analytics: httpx.AsyncClient,
) -> None:
    resp = await analytics.get("/api/v1/security/report", headers=_as(ACME, "editor"))
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["tenant"] == ACME
    assert report["params"] == f"{DEV}/xynergy-policy-params"
    assert _by_object(report) == {
        "chat": [("high", "xynergy-oauth-scopes")],
        "web": [("medium", "xynergy-image-provenance")],  # production: tag, not digest
        "job": [("low", "xynergy-resources-set")],  # not production: no image rule
    }
    [chat] = [f for f in report["findings"] if f["object"]["name"] == "chat"]
    assert chat["message"].startswith("spec.scopes channels:read not allowed for provider slack")
    assert chat["object"] == {"kind": "OAuthConnection", "namespace": DEV, "name": "chat"}
    assert report["summary"] == {"high": 1, "medium": 1, "low": 1}


async def test_other_tenants_and_non_editors(analytics: httpx.AsyncClient) -> None:
    resp = await analytics.get("/api/v1/security/report", headers=_as(OTHER, "editor"))
    assert resp.status_code == 200, resp.text
    assert _by_object(resp.json()) == {"theirs": [("high", "xynergy-secret-env")]}
    assert "s3cr3t" not in resp.text  # names the variable, never its value
    viewer = await analytics.get("/api/v1/security/report", headers=_as(ACME, "viewer"))
    assert viewer.status_code == 403
    assert "editor" in viewer.text
