"""The analytics service's routes, in dev (DEV_ROUTES) and in the cluster (its sample
XynergyService), reach every API path the service serves; `dev up` gives it the dev Gmail
service's URL for report delivery."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from controllers.devcluster.platform import DEV_ROUTES, _start_analytics
from services.analytics.app import create_app

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).parents[3] / "manifests" / "samples" / "xynergyservice-analytics.yaml"
SERVICE_ONLY = {"/healthz", "/readyz", "/metrics"}  # probes and scrapes, not proxied


def _served(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    monkeypatch.setenv("XYNERGY_INTERNAL_SIGNING_KEY", "k" * 40)
    return set(create_app().openapi()["paths"]) - SERVICE_ONLY


def _unreached(paths: set[str], routes: list[dict[str, Any]]) -> list[str]:
    """Paths no route's prefix covers (the gateway forwards a route's prefix as is)."""
    prefixes = [str(r["prefix"]).rstrip("/") for r in routes]
    return sorted(p for p in paths if not any(p == x or p.startswith(x + "/") for x in prefixes))


def test_dev_routes_reach_every_analytics_path(monkeypatch: pytest.MonkeyPatch) -> None:
    served = _served(monkeypatch)
    assert {"/api/v1/reports/{kind}", "/api/v1/security/report"} <= served
    assert _unreached(served, DEV_ROUTES["analytics"]) == []


def test_the_sample_routes_reach_every_analytics_path(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = yaml.safe_load(SAMPLE.read_text())["spec"]["routes"]
    # the sample does not publish the Platform Dashboard (dev routes it, a public page)
    served = {p for p in _served(monkeypatch) if not p.startswith("/dashboard")}
    assert _unreached(served, routes) == []


def test_dev_analytics_delivers_reports_through_the_dev_gmail_service(tmp_path: Path) -> None:
    started: dict[str, dict[str, str]] = {}

    def python_service(name: str, *, title: str, env: dict[str, str], metrics: bool) -> str:
        started[name] = env
        return "http://127.0.0.1:1"

    cluster = SimpleNamespace(kubeconfig=tmp_path / "admin.kubeconfig", workdir=tmp_path)
    start: Any = SimpleNamespace(cluster=cluster, python_service=python_service)
    gmail = "http://127.0.0.1:40123"
    _start_analytics(
        start, redis_url="redis://x", ai_url="http://ai", prometheus_url="http://p", gmail_url=gmail
    )
    assert started["analytics"]["XYNERGY_ANALYTICS_REPORTS_GMAIL_URL"] == gmail
