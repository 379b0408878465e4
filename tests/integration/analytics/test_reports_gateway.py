"""Reports downloaded through the real gateway (JWT auth, signed identity) from the analytics
service with its real store (seeded with usage, the AI ledger and alert history), redis-server
and a real kube-apiserver (a ScalingPolicy and a Rollout of the tenant). Each PDF's pages are
rendered with ``pdftoppm`` (not blank, charts drawn in colour) and its text read back with
``pdftotext``: every CSV row is a line of the PDF's table. Delivery goes through the real Gmail
service on the tenant's OAuthConnection (its token in a Secret) to the fake Gmail API."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from ai_router.conftest import INTERNAL
from fakes.google import FakeGmail, Mailbox
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig
from PIL import Image
from slack.conftest import Connections

from services.analytics.app import create_app
from services.analytics.records import AiUsageRow, EventRow, UsageRow
from services.analytics.reports.delivery import ReportSettings
from services.analytics.settings import AnalyticsSettings, CloudRunPrices
from services.common.oauth_tokens import TokenReader
from services.gmail.app import create_app as create_gmail
from services.gmail.settings import GmailSettings

from .conftest import GatewayFactory, RedisServer, make_jwt, serve

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("pdftoppm") is None, reason="poppler-utils: bash hack/deps/poppler.sh"
    ),
]

GROUP = "/apis/xynergy.io/v1alpha1"
ACME, OTHER = "acme-" + uuid.uuid4().hex[:6], "other-" + uuid.uuid4().hex[:6]
HOUR = dt.timedelta(hours=1)
FLEET = {"crm": (2.0, 1.0, 0.5), "billing": (1.0, 2.0, 4.0)}
"""service -> (instances, vCPU, GiB), sampled every hour of the period."""
KINDS = ("cost", "scaling", "anomaly", "deployment")


@dataclass
class Stack:
    http: httpx.AsyncClient
    start: dt.datetime
    end: dt.datetime
    rollout: str
    mailbox: Mailbox

    def query(self, fmt: str) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "format": fmt}


def auth(tenant: str, *roles: str) -> dict[str, str]:
    token = make_jwt(tenant_id=tenant, roles=list(roles or ("member",)))
    return {"Authorization": f"Bearer {token}"}


class _Nobody:
    """No tenant's history is polled (the Gmail service only sends here)."""

    async def tenants(self) -> list[str]:
        return []


@contextlib.asynccontextmanager
async def _gmail(
    redis: RedisServer, kube: Kube, kube_client: AsyncClient, ns: str
) -> AsyncIterator[tuple[str, Mailbox]]:
    """The Gmail service on the fake Gmail API, the tenant's OAuthConnection Connected."""
    with FakeGmail() as fake:
        box = fake.grant("ya29.reports", f"{ACME}@example.com")
        Connections(kube, ns).connect("gmail", tenant=ACME, provider="gmail", token="ya29.reports")
        settings = GmailSettings(
            api_url=fake.endpoint + "/", redis_url=redis.url, poll_interval_seconds=0
        )
        app = create_gmail(
            settings,
            internal_settings=INTERNAL,
            tokens=TokenReader(kube_client),  # type: ignore[arg-type]
            connections=_Nobody(),
        )
        async with serve(app) as url:
            yield url, box


def _objects(ns: str) -> list[tuple[str, dict[str, Any]]]:
    meta = {"labels": {"xynergy.io/tenant": ACME}, "namespace": ns}
    policy = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "crm", **meta},
        "spec": {
            "targetRef": {"name": "crm"},
            "minInstances": 1,
            "maxInstances": 4,
            "metric": {"source": "prometheus", "query": "sum(up)", "targetPerInstance": 50},
        },
    }
    rollout = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "crm-v2", **meta},
        "spec": {
            "targetRef": {"kind": "XynergyService", "name": "crm"},
            "image": "registry.example/crm:2",
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 100}]}},
        },
    }
    return [("scalingpolicies", policy), ("rollouts", rollout)]


async def _seed(store: Any, start: dt.datetime) -> None:
    await store.add_usage(
        [
            UsageRow(ACME, svc, start + h * HOUR, "api-service", n, 3600.0, cpu, gib)
            for h in range(24)
            for svc, (n, cpu, gib) in FLEET.items()
        ]
        + [UsageRow(OTHER, "payroll", start, "api-service", 3.0, 3600.0, 1.0, 1.0)]
    )
    await store.add_ai_usage(
        [AiUsageRow(ACME, start + 2 * HOUR, "openai", "gpt-4o-mini", 4, 800, 200, 0.75)]
    )
    alert = {"service": "crm", "metric": "error_rate", "severity": "CRITICAL", "value": 3.5}
    await store.add_events(
        [
            EventRow(ACME, "anomaly-alerts", start + k * HOUR, uuid.uuid4().hex, None, body)
            for k, body in (
                (3, json.dumps({"change": "opened", "alert": alert})),
                (5, json.dumps({"change": "resolved", "alert": alert})),
            )
        ]
    )


@pytest.fixture(scope="module")
async def stack(
    redis_server: RedisServer,
    gateway_factory: GatewayFactory,
    cluster: Path,
    kube: Kube,
    crds_installed: list[str],
) -> AsyncIterator[Stack]:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    assert kube.create("/api/v1/namespaces", {"metadata": {"name": ns}}).status_code == 201
    for plural, body in _objects(ns):
        r = kube.create(f"{GROUP}/namespaces/{ns}/{plural}", body)
        assert r.status_code == 201, r.text
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    start, end = now - 23 * HOUR, now + HOUR
    settings = AnalyticsSettings(
        redis_url=redis_server.url,
        namespace=ns,
        ai_url="http://127.0.0.1:9",
        usage_interval_seconds=3600,
        log_level="WARNING",
    )
    kube_client = AsyncClient(config=KubeConfig.from_file(str(cluster)))
    app = create_app(settings, internal_settings=INTERNAL, kube_client=kube_client)  # type: ignore[arg-type]
    async with contextlib.AsyncExitStack() as es:
        gmail, box = await es.enter_async_context(_gmail(redis_server, kube, kube_client, ns))
        app.state.report_settings = ReportSettings(gmail_url=gmail)
        url = await es.enter_async_context(serve(app))
        await _seed(app.state.analytics.store, start)
        routes = [{"prefix": "/api/v1/reports", "timeoutSeconds": 60}]
        gw = await es.enter_async_context(
            gateway_factory({"services": [{"name": "analytics", "url": url, "routes": routes}]})
        )
        yield Stack(gw.http, start, end, "crm-v2", box)
    kube.delete(f"/api/v1/namespaces/{ns}")


async def _get(stack: Stack, kind: str, fmt: str, tenant: str = ACME) -> httpx.Response:
    r = await stack.http.get(
        f"/api/v1/reports/{kind}", params=stack.query(fmt), headers=auth(tenant)
    )
    assert r.status_code == 200, r.text
    return r


def _csv(r: httpx.Response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(r.text)))


def _pages(pdf: bytes, tmp: Path) -> list[Image.Image]:
    (tmp / "report.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(tmp / "report.pdf"), str(tmp / "page")],
        check=True,
        timeout=30,
    )
    return [Image.open(p).convert("RGB") for p in sorted(tmp.glob("page-*.png"))]


def _inked(page: Image.Image) -> tuple[float, int]:
    """The share of the page that is not white, and how many pixels are coloured."""
    rgb = np.asarray(page, dtype=np.int16)
    ink = float((rgb.min(axis=2) < 200).mean())
    colour = int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())
    return ink, colour


def _text(pdf: bytes, tmp: Path) -> str:
    (tmp / "text.pdf").write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-layout", str(tmp / "text.pdf"), "-"],
        check=True,
        timeout=30,
        capture_output=True,
    )
    return out.stdout.decode()


@pytest.mark.parametrize("kind", KINDS)
async def test_the_pdf_renders_and_its_table_is_the_csv(
    stack: Stack, kind: str, tmp_path: Path
) -> None:
    table = _csv(await _get(stack, kind, "csv"))
    r = await _get(stack, kind, "pdf")
    assert r.headers["content-type"] == "application/pdf"
    assert re.fullmatch(
        rf'attachment; filename="{kind}-report-{ACME}-\d{{8}}-\d{{8}}\.pdf"',
        r.headers["content-disposition"],
    )
    pages = _pages(r.content, tmp_path)
    assert pages, "no page rendered"
    inked = [_inked(p) for p in pages]
    assert all(share > 0.005 for share, _ in inked), inked  # no blank page
    assert sum(colour for _, colour in inked) > 200, "no chart drawn in colour"
    text = _text(r.content, tmp_path)
    assert len(table) > 1, "the seeded data made no rows"
    for row in table:
        cells = [re.escape(c) for c in row if c]
        assert re.search(r"\s+".join(cells), text), f"row {row} not in the PDF"


async def test_the_csvs_are_the_seeded_data(stack: Stack) -> None:
    prices = CloudRunPrices()
    cost = {r[0]: r for r in _csv(await _get(stack, "cost", "csv"))[1:]}
    assert set(cost) == {*FLEET, "ai-tokens openai/gpt-4o-mini"}
    for svc, (n, cpu, gib) in FLEET.items():
        want = 24 * n * 3600 * (cpu * prices.vcpu_second + gib * prices.gib_second)
        assert float(cost[svc][1]) == pytest.approx(want, abs=1e-4)
    assert float(cost["ai-tokens openai/gpt-4o-mini"][1]) == pytest.approx(0.75)
    scaling = {r[0]: r for r in _csv(await _get(stack, "scaling", "csv"))[1:]}
    assert {s: float(r[2]) for s, r in scaling.items()} == {s: v[0] for s, v in FLEET.items()}
    assert (scaling["crm"][5], scaling["crm"][7]) == ("crm", "1-4")
    alerts = [r for r in _csv(await _get(stack, "anomaly", "csv"))[1:] if r[1] == "alert"]
    assert [(r[2], r[4], r[5]) for r in alerts] == [
        ("crm", "opened", "CRITICAL"),
        ("crm", "resolved", "CRITICAL"),
    ]
    deployment = _csv(await _get(stack, "deployment", "csv"))
    assert [(r[1], r[2], r[3]) for r in deployment[1:]] == [
        (stack.rollout, "crm", "registry.example/crm:2")
    ]


async def test_reports_are_the_callers_tenants_only(stack: Stack) -> None:
    r = await stack.http.get("/api/v1/reports/cost", params=stack.query("csv"))
    assert r.status_code == 401
    for kind in KINDS:
        rows = _csv(await _get(stack, kind, "csv", tenant=OTHER))[1:]
        assert all("crm" not in cell for row in rows for cell in row), (kind, rows)
    cost = _csv(await _get(stack, "cost", "csv", tenant=OTHER))[1:]
    assert [r[0] for r in cost] == ["payroll"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/reports/costs", {}, "kind"),
        ("/api/v1/reports/cost", {"format": "xlsx"}, "format"),
        ("/api/v1/reports/cost", {"from": "last week"}, "from"),
        ("/api/v1/reports/cost", {"to": "2026-02-30"}, "to"),
        ("/api/v1/reports/cost", {"from": "2026-03-02", "to": "2026-03-01"}, "from"),
    ],
)
async def test_a_bad_request_is_refused_naming_the_parameter(
    stack: Stack, path: str, params: dict[str, str], field: str
) -> None:
    r = await stack.http.get(path, params=params, headers=auth(ACME))
    assert r.status_code == 422, r.text
    assert r.json()["fields"][0]["field"] == field
    assert r.json()["message"].startswith(f"{field}: expected")


async def test_a_report_is_delivered_from_the_tenants_gmail(stack: Stack) -> None:
    path, body = "/api/v1/reports/cost/deliver", {"recipients": ["cfo@example.com"]}
    r = await stack.http.post(path, params=stack.query("csv"), json=body, headers=auth(ACME))
    assert r.status_code == 403, r.text  # editors only
    r = await stack.http.post(
        path, params=stack.query("csv"), json=body, headers=auth(ACME, "editor")
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"]
    sent = stack.mailbox.sent[-1]
    assert sent["To"] == "cfo@example.com"
    (attachment,) = list(sent.iter_attachments())
    assert attachment.get_filename() == r.json()["filename"]
    assert attachment.get_filename().startswith(f"cost-report-{ACME}-")
    download = await _get(stack, "cost", "csv")
    assert attachment.get_content().replace("\r\n", "\n") == download.text.replace("\r\n", "\n")
    # a tenant with no Gmail connection: the Gmail service's 409, naming what to connect
    r = await stack.http.post(
        path, params=stack.query("pdf"), json=body, headers=auth(OTHER, "editor")
    )
    assert r.status_code == 409, r.text
    assert "Gmail service (409)" in r.json()["message"]
