"""The cluster route source against a real kube-apiserver (the project's dev cluster).

Uses the session fixtures of tests/integration/conftest.py: ``cluster`` (admin kubeconfig),
``crds_installed`` (crds/ applied and Established) and ``namespace``. No operator runs here,
so the test writes ``status.url`` itself, as the XynergyService controller would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, KubeConfig

from services.gateway.routes_cluster import ClusterRouteSource
from services.gateway.routing import RouteTable

GROUP_PATH = "/apis/xynergy.io/v1alpha1"


def _service(name: str, prefix: str) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": name},
        "spec": {
            "image": "us-docker.pkg.dev/xynergy-demo/platform/crm-engine:1.4.2",
            "backend": "kubernetes",
            "port": 8080,
            "routes": [{"prefix": prefix, "aliases": ["/api/v2/contacts"], "timeoutSeconds": 15}],
        },
    }


async def _next(stream: AsyncIterator[RouteTable]) -> RouteTable:
    return await asyncio.wait_for(anext(stream), timeout=60)


def _routes(table: RouteTable) -> list[tuple[str, str, tuple[str, ...], float | None]]:
    return sorted((r.prefix, r.upstream, r.aliases, r.timeout_seconds) for r in table.routes)


async def test_cluster_source_follows_xynergyservices(
    cluster: Path, crds_installed: list[str], kube: Any, namespace: str
) -> None:
    assert "xynergyservices.xynergy.io" in crds_installed
    base = f"{GROUP_PATH}/namespaces/{namespace}/xynergyservices"
    client = AsyncClient(config=KubeConfig.from_file(cluster))
    stream = ClusterRouteSource(client, namespace=namespace, max_backoff_seconds=1).watch()
    try:
        assert _routes(await _next(stream)) == []

        r = await asyncio.to_thread(kube.create, base, _service("crm", "/api/v2/crm"))
        assert r.status_code == 201, r.text
        # no status.url yet: the service contributes no route, so no new table either
        r = await asyncio.to_thread(
            kube.http.patch,
            f"{base}/crm/status",
            json={"status": {"url": "http://crm.test.svc:8080"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
        table = await _next(stream)
        assert _routes(table) == [
            ("/api/v2/crm", "http://crm.test.svc:8080", ("/api/v2/contacts",), 15.0)
        ]
        match = table.match("/api/xynergyos/v2/contacts/1")
        assert match is not None
        assert match.upstream_path == "/api/v2/crm/1"

        r = await asyncio.to_thread(kube.delete, f"{base}/crm")
        assert r.status_code == 200, r.text
        assert _routes(await _next(stream)) == []
    finally:
        await stream.aclose()
        await client.close()
