"""manifests/samples/analytics-rbac.yaml on a real kube-apiserver: the analytics service, as its
ServiceAccount (a TokenRequest token) under exactly that ClusterRole, serves the endpoints that
read the cluster (the compliance report, the scaling and deployment views, deploy), opens its
dashboard watch and posts a scheduled run's Event; SubjectAccessReviews show nothing else is
granted (no Secrets, no writes beyond Rollouts and Events)."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ai_router.conftest import INTERNAL, SIGNER
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig

from services.analytics.app import create_app
from services.analytics.cluster import ClusterReader
from services.analytics.schedules.events import REASON, KubeEvents
from services.analytics.schedules.models import Schedule, ScheduleRun
from services.analytics.settings import AnalyticsSettings
from services.common.identity import IDENTITY_HEADER
from services.common.tenancy import Identity

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SAMPLE = Path(__file__).parents[3] / "manifests" / "samples" / "analytics-rbac.yaml"
XY = "/apis/xynergy.io/v1alpha1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
TENANT = f"acme-{uuid.uuid4().hex[:6]}"

# (group, resource, verb) the service uses; each is exercised below through its own code.
NEEDED = [
    *(("xynergy.io", r, v) for r in ("xynergyservices", "scalingpolicies", "rollouts")
      for v in ("list", "watch")),
    ("xynergy.io", "rollouts", "create"),
    ("xynergy.io", "oauthconnections", "list"),
    ("", "namespaces", "list"),
    ("", "configmaps", "list"),
    ("", "events", "create"),
]  # fmt: skip
NOT_GRANTED = [
    ("", "secrets", "get"),
    ("", "secrets", "list"),
    ("", "configmaps", "get"),
    ("", "configmaps", "create"),
    ("", "pods", "list"),
    ("xynergy.io", "xynergyservices", "patch"),
    ("xynergy.io", "xynergyservices", "create"),
    ("xynergy.io", "rollouts", "delete"),
    ("xynergy.io", "rollouts", "patch"),
    ("xynergy.io", "oauthconnections", "watch"),
    ("xynergy.io", "scalingpolicies", "create"),
    ("apps", "deployments", "list"),
]


@pytest.fixture
def account(kube: Kube, crds_installed: list[str], namespace: str) -> Iterator[str]:
    """The sample's account, role and binding, bound to the test's namespace under names of
    its own (the cluster-scoped ones may exist from the samples test); the account's user."""
    sa, role, binding = (copy.deepcopy(d) for d in yaml.safe_load_all(SAMPLE.read_text()))
    name = f"xynergy-analytics-{namespace}"
    role["metadata"]["name"] = binding["metadata"]["name"] = binding["roleRef"]["name"] = name
    binding["subjects"][0]["namespace"] = namespace
    assert kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", sa).status_code == 201
    assert kube.create(f"{RBAC}/clusterroles", role).status_code == 201
    assert kube.create(f"{RBAC}/clusterrolebindings", binding).status_code == 201
    user = f"system:serviceaccount:{namespace}:{sa['metadata']['name']}"
    try:
        # the RBAC authorizer reads roles and bindings from its informers: a review made at
        # once may still see the account without them
        kube.wait_for(
            "the binding to reach the authorizer",
            lambda: _allowed(kube, user, "", "events", "create"),
            timeout=30,
        )
        yield user
    finally:
        kube.delete(f"{RBAC}/clusterrolebindings/{name}")
        kube.delete(f"{RBAC}/clusterroles/{name}")


def _allowed(kube: Kube, user: str, group: str, resource: str, verb: str) -> bool:
    namespace = user.split(":")[2]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {"group": group, "resource": resource, "verb": verb},
        },
    }
    resp = kube.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert resp.status_code == 201, resp.text
    return bool(resp.json()["status"].get("allowed"))


def test_the_role_grants_what_analytics_uses_and_nothing_else(kube: Kube, account: str) -> None:
    denied = [n for n in NEEDED if not _allowed(kube, account, *n)]
    assert not denied, f"needed but not granted: {denied}"
    extra = [n for n in NOT_GRANTED if _allowed(kube, account, *n)]
    assert not extra, f"granted beyond what analytics uses: {extra}"


@pytest.fixture
def account_config(kube: Kube, cluster: Path, account: str, namespace: str) -> dict[str, Any]:
    """The cluster's kubeconfig with a token of the sample's ServiceAccount as its user."""
    sa = account.rpartition(":")[2]
    resp = kube.http.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 600}},
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    config: dict[str, Any] = yaml.safe_load(cluster.read_text())
    config["users"][0]["user"] = {"token": resp.json()["status"]["token"]}
    return config


@pytest.fixture
async def as_account(account_config: dict[str, Any]) -> AsyncIterator[AsyncClient]:
    """A lightkube client authenticated as the sample's ServiceAccount."""
    client = AsyncClient(config=KubeConfig.from_dict(account_config))
    yield client
    await client.close()


def _as_editor() -> dict[str, str]:
    return {IDENTITY_HEADER: SIGNER.sign(Identity("u1", TENANT, roles=("editor",)))}


async def test_analytics_runs_under_the_role(
    kube: Kube, as_account: AsyncClient, namespace: str
) -> None:
    body = {"apiVersion": "xynergy.io/v1alpha1", "kind": "XynergyService",
            "metadata": {"name": "web", "labels": {"xynergy.io/tenant": TENANT}},
            "spec": {"image": "ghcr.io/xynergy/web:1"}}  # fmt: skip
    assert kube.create(f"{XY}/namespaces/{namespace}/xynergyservices", body).status_code == 201
    policy = yaml.safe_load(SAMPLE.with_name("scalingpolicy-crm.yaml").read_text())
    policy["metadata"]["labels"]["xynergy.io/tenant"] = TENANT
    policy["spec"]["targetRef"]["name"] = "web"
    resp = kube.create(f"{XY}/namespaces/{namespace}/scalingpolicies", policy)
    assert resp.status_code == 201, resp.text
    app = create_app(
        AnalyticsSettings(log_level="WARNING"),
        internal_settings=INTERNAL,
        kube_client=as_account,  # type: ignore[arg-type]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://analytics") as http:
        report = await http.get("/api/v1/security/report", headers=_as_editor())
        assert report.status_code == 200, report.text
        scaling = await http.get("/phase3/scaling/dashboard", headers=_as_editor())
        assert [p["name"] for p in scaling.json()["policies"]] == ["crm"], scaling.text
        deploy = await http.post(
            "/phase3/deployment/deploy/web", json={"image": "ghcr.io/xynergy/web:2"},
            headers=_as_editor(),
        )  # fmt: skip
        assert deploy.status_code == 201, deploy.text
        views = await http.get("/phase3/deployment/dashboard", headers=_as_editor())
        assert [r["name"] for r in views.json()["rollouts"]] == [deploy.json()["name"]]

    # the dashboard's live watch (one per kind) opens; its listing brings the tenant's objects
    reader = ClusterReader(as_account)  # type: ignore[arg-type]
    for res in reader.kinds.values():
        async for _, _obj in as_account.watch(res, namespace="*", labels={"xynergy.io/tenant": TENANT}):  # fmt: skip
            break
        else:
            pytest.fail(f"no event from the watch of {res}")

    now = dt.datetime.now(dt.UTC)
    schedule = Schedule(id="nightly", tenant=TENANT, workflow="report", cron="0 2 * * *",
                        timezone="UTC", missed_run_policy="skip", enabled=True, goal="g",
                        created=now)  # fmt: skip
    run = ScheduleRun(schedule_id="nightly", due=now, outcome="failed", replica="r1", error="x")
    await KubeEvents(as_account, namespace=namespace, object_name="analytics").run_failed(  # type: ignore[arg-type]
        schedule, run
    )
    events = kube.get(f"/api/v1/namespaces/{namespace}/events").json()["items"]
    assert [e["reason"] for e in events if e["reason"] == REASON] == [REASON]


def test_the_analytics_sample_runs_as_the_account() -> None:
    sample = SAMPLE.with_name("xynergyservice-analytics.yaml")
    spec: dict[str, Any] = yaml.safe_load(sample.read_text())["spec"]
    account = yaml.safe_load_all(SAMPLE.read_text()).__next__()["metadata"]["name"]
    assert spec["kubernetes"]["serviceAccountName"] == account
