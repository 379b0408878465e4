"""The four CRDs on a real apiserver: installed and Established, samples apply, a model round
trip is lossless, and nonsense is rejected at admission with a message naming the field."""

from __future__ import annotations

import copy
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kopf.testing import KopfRunner
from kube_support import ALL_KINDS, Kube, run_operator
from prometheus import PrometheusServer, ScrapeTarget
from pydantic import ValidationError

from apis.crdgen import crd_for
from apis.v1alpha1 import GROUP, KINDS, VERSION, XynergyService
from apis.v1alpha1.oauthconnection import name_problem as oauth_name_problem
from apis.v1alpha1.xynergyservice import Backend as XSBackend
from apis.v1alpha1.xynergyservice import name_problem
from controllers.devcluster.manifests import create_secrets
from controllers.devcluster.platform import dev_secrets, sample_secrets

SAMPLES = Path(__file__).parents[2] / "manifests" / "samples"
BY_KIND = {k.crd.kind: k for k in KINDS}
DELETE = object()

BASE: dict[str, dict[str, Any]] = {
    "XynergyService": {"image": "registry.example/crm:1", "backend": "kubernetes"},
    "ScalingPolicy": {
        "targetRef": {"name": "crm"},
        "metric": {"source": "prometheus", "query": "sum(rate(x[1m]))", "targetPerInstance": 50},
        "minInstances": 1,
        "maxInstances": 10,
    },
    "Rollout": {
        "targetRef": {"name": "crm"},
        "image": "registry.example/crm:2",
        "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}]}},
    },
    "OAuthConnection": {
        "provider": "slack",
        "clientSecretRef": {"name": "slack-client"},
        "scopes": ["chat:write"],
        "redirectURL": "https://app.example.com/cb",
        "tenant": "acme",
        "tokenSecretName": "acme-slack-tokens",
    },
}


def _obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def _path(kind: str, namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{BY_KIND[kind].crd.plural}"


def _set(spec: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node: Any = spec
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    last = keys[-1]
    if value is DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def test_crds_are_established(kube: Kube, crds_installed: list[str]) -> None:
    assert sorted(crds_installed) == sorted(k.crd.name for k in KINDS)
    for name in crds_installed:
        crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds["Established"] == "True"
        assert conds.get("NamesAccepted") == "True"
        assert conds.get("NonStructuralSchema") is None


def _sample_docs(*, recursive: bool = True) -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(SAMPLES.rglob("*.yaml") if recursive else SAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _api_path(kube: Kube, doc: dict[str, Any], namespace: str) -> str:
    """The object's own REST path, found through discovery (core, RBAC, ours, any group)."""
    group_version = doc["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    resources = kube.get(base).json()["resources"]
    resource = next(r for r in resources if r["kind"] == doc["kind"] and "/" not in r["name"])
    scope = f"/namespaces/{namespace}" if resource["namespaced"] else ""
    return f"{base}{scope}/{resource['name']}/{doc['metadata']['name']}"


def test_every_sample_applies(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str
) -> None:
    """`kubectl apply -R -f manifests/samples/` as the README says: every kind (core, RBAC
    and ours) is accepted and stored where its own API serves it."""
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster), "-n", namespace, "apply", "-R", "-f", SAMPLES],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    docs = _sample_docs()
    assert {d["kind"] for d in docs} >= set(BY_KIND) | {"ConfigMap", "ServiceAccount"}
    for doc in docs:
        resp = kube.get(_api_path(kube, doc, namespace))
        assert resp.status_code == 200, f"{doc['kind']} {doc['metadata']['name']}: {resp.text}"
        stored, what = resp.json(), f"{doc['kind']} {doc['metadata']['name']}"
        model = BY_KIND.get(doc["kind"])
        if model is not None:  # the CRD's schema fills defaults; the models say what they mean
            assert model.model_validate(stored).spec == model.model_validate(doc).spec, what
            continue
        for key in doc.keys() - {"apiVersion", "kind", "metadata"}:
            assert stored[key] == doc[key], f"{what}: {key}"


def _required_secrets(docs: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    """(Secret, key) pairs the samples' env and Secret volumes read without `optional` (key
    None: a volume of every key, which needs the Secret only)."""
    specs = [doc.get("spec") or {} for doc in docs]
    from_env = {
        (ref["name"], ref["key"])
        for spec in specs
        for env in spec.get("env") or []
        if (ref := env.get("secretKeyRef")) and not ref.get("optional")
    }
    mounted = [
        v["secret"]
        for spec in specs
        for v in spec.get("volumes") or []
        if "secret" in v and not v["secret"].get("optional")
    ]
    from_volumes = {
        (secret["secretName"], item.get("key"))
        for secret in mounted
        for item in secret.get("items") or [{}]
    }
    return from_env | from_volumes


def test_dev_up_creates_every_secret_the_samples_read(tmp_path: Path) -> None:
    """`make dev` then `kubectl apply -f manifests/samples/` needs no Secret made by hand: the
    Secrets `dev up` creates hold every key a sample reads (OAuth client credentials aside,
    which only the user's Slack app / Google client can give)."""
    made = sample_secrets(tmp_path)
    needed = _required_secrets(_sample_docs())
    assert needed, "the samples read Secrets"
    assert needed <= {(name, key) for name, data in made.items() for key in [*data, None]}
    assert ("gateway-internal", "signing_key") in needed  # mounted by the services' samples
    values = dev_secrets(tmp_path)
    assert made["gateway-internal"]["signing_key"] == values["internal-signing-key"]


@pytest.fixture
def dev_operator(
    cluster: Path,
    crds_installed: list[str],
    prometheus_factory: Callable[..., PrometheusServer],
    scrape_target: ScrapeTarget,
) -> Iterator[KopfRunner]:
    """The operator as `make dev` runs it: ScalingPolicies and Rollouts read a Prometheus,
    which scrapes the gateway's request counter (here a stand-in serving it)."""
    scrape_target.set("xynergy_gateway_requests_total", 120, route="/api/v2/crm", status="200")
    url = prometheus_factory(targets=[scrape_target.address]).url
    with run_operator(
        cluster,
        kinds=ALL_KINDS,  # every kind, as the operator runs
        XYNERGY_SCALING_PROMETHEUS_URL=url,
        XYNERGY_ROLLOUT_PROMETHEUS_URL=url,
    ) as runner:
        yield runner


def test_samples_become_ready_with_the_dev_secrets(
    kube: Kube, cluster: Path, dev_operator: KopfRunner, namespace: str, tmp_path: Path
) -> None:
    """What a user sees after `make dev` and `kubectl apply -f manifests/samples/`: every
    XynergyService and the ScalingPolicy Ready; the samples that cannot be Ready here say why
    in their Ready condition (NOT_READY_HERE)."""
    create_secrets(kubeconfig=cluster, namespace=namespace, secrets=sample_secrets(tmp_path))
    # as the README says (cloudrun/ needs Google credentials: not applied)
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster), "-n", namespace, "apply", "-f", SAMPLES],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in _sample_docs(recursive=False) if d["kind"] in BY_KIND]

    def ready(doc: dict[str, Any]) -> dict[str, Any]:
        obj = kube.get(f"{_path(doc['kind'], namespace)}/{doc['metadata']['name']}").json()
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"]:
            return {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})

    def settled() -> bool:
        return all(
            ready(d).get("status") == "True"
            or ready(d).get("reason") == NOT_READY_HERE.get(d["metadata"]["name"])
            for d in docs
        )

    try:
        kube.wait_for("every sample Ready or waiting on what it lacks", settled, timeout=180)
    except pytest.fail.Exception:
        states = {
            f"{d['kind']}/{d['metadata']['name']}": (
                ready(d).get("reason"),
                ready(d).get("message"),
            )
            for d in docs
        }
        pytest.fail(f"not settled: {states}")
    for doc in docs:
        name = doc["metadata"]["name"]
        cond = ready(doc)
        if name in NOT_READY_HERE:
            assert cond["status"] != "True", (name, cond)
            assert cond["message"], (name, cond)
        else:
            assert cond["status"] == "True", (doc["kind"], name, cond)


# Samples that cannot be Ready in a fresh test cluster, with the Ready reason that says why.
NOT_READY_HERE = {
    # a canary of 5 steps (5 min of analysis, a 10 min pause); blue-green promotes after 600 s
    "crm-1-5-0": "Progressing",
    "gateway-2-1-0": "Progressing",
    # OAuth client credentials come from the user's Slack app / Google OAuth client
    "acme-slack": "ClientSecretMissing",
    "acme-gmail": "ClientSecretMissing",
}


def test_category_lists_every_kind(kube: Kube, crds_installed: list[str]) -> None:
    resources = kube.get(f"/apis/{GROUP}/{VERSION}").json()["resources"]
    top = {r["kind"]: r for r in resources if "/" not in r["name"]}
    assert set(top) == set(BY_KIND)
    for r in top.values():
        assert "xynergy" in r["categories"]
    subresources = {r["name"] for r in resources if "/" in r["name"]}
    assert "xynergyservices/scale" in subresources
    assert {f"{k.crd.plural}/status" for k in KINDS} <= subresources


def test_round_trip_is_lossless(kube: Kube, crds_installed: list[str], namespace: str) -> None:
    for path in sorted(SAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            model = BY_KIND.get(doc["kind"])
            if model is None:
                continue
            original = model.model_validate(doc)
            manifest = original.to_manifest()
            manifest["metadata"]["name"] = f"rt-{manifest['metadata']['name']}"
            resp = kube.create(_path(doc["kind"], namespace), manifest)
            assert resp.status_code == 201, resp.text
            back = model.model_validate(resp.json())
            assert back.spec == original.spec, path.name
            stored = kube.get(f"{_path(doc['kind'], namespace)}/{manifest['metadata']['name']}")
            assert stored.json()["spec"] == manifest["spec"], (
                f"{path.name}: the apiserver changed it"
            )


IQR = {"name": "e", "query": "q", "method": "iqr"}
"""An analysis metric judged by a detector, not by the U test."""

INVALID: list[tuple[str, str, list[tuple[str, Any]], str]] = [
    # (id, kind, [(field, value) changes], text the apiserver's message must contain)
    ("xs-backend-enum", "XynergyService", [("backend", "docker")], "spec.backend"),
    ("xs-image-required", "XynergyService", [("image", DELETE)], "spec.image"),
    (
        "xs-cloudrun-block-on-k8s",
        "XynergyService",
        [("cloudRun", {"project": "my-proj-1", "region": "us-central1"})],
        "spec.cloudRun may only be set when spec.backend is cloudRun",
    ),
    (
        "xs-k8s-block-on-cloudrun",
        "XynergyService",
        [
            ("backend", "cloudRun"),
            ("cloudRun", {"project": "my-proj-1", "region": "us-central1"}),
            ("kubernetes", {"serviceType": "ClusterIP"}),
        ],
        "spec.kubernetes may only be set when spec.backend is kubernetes",
    ),
    (
        "xs-cloudrun-reserved-env",
        "XynergyService",
        [
            ("backend", "cloudRun"),
            ("cloudRun", {"project": "my-proj-1", "region": "us-central1"}),
            ("env", [{"name": "LOG_LEVEL", "value": "INFO"}, {"name": "PORT", "value": "8080"}]),
        ],
        "spec.env: PORT, K_SERVICE, K_REVISION and K_CONFIGURATION are set by Cloud Run",
    ),
    (
        "xs-cloudrun-needs-block",
        "XynergyService",
        [("backend", "cloudRun")],
        "spec.cloudRun (project, region) is required",
    ),
    (
        "xs-min-over-max",
        "XynergyService",
        [("scaling", {"minInstances": 5, "maxInstances": 2})],
        "spec.scaling.minInstances",
    ),
    ("xs-port-range", "XynergyService", [("port", 70000)], "spec.port"),
    ("xs-profile-enum", "XynergyService", [("profile", "gpu-monster")], "spec.profile"),
    ("xs-cpu-quantity", "XynergyService", [("resources", {"cpu": "lots"})], "spec.resources.cpu"),
    (
        "xs-env-two-sources",
        "XynergyService",
        [("env", [{"name": "A", "value": "x", "secretKeyRef": {"name": "s", "key": "k"}}])],
        "spec.env[0]",
    ),
    (
        "xs-env-duplicate-name",
        "XynergyService",
        [("env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}])],
        "spec.env[1]",
    ),
    (
        "xs-route-dotdot",
        "XynergyService",
        [("routes", [{"prefix": "/api/../admin"}])],
        "spec.routes[0].prefix",
    ),
    (
        "xs-route-relative",
        "XynergyService",
        [("routes", [{"prefix": "api/v2"}])],
        "spec.routes[0].prefix",
    ),
    (
        "xs-route-double-slash",
        "XynergyService",
        [("routes", [{"prefix": "/api/v2//crm"}])],
        "spec.routes[0].prefix",
    ),
    (
        "xs-route-dot-segment",
        "XynergyService",
        [("routes", [{"prefix": "/api/v2/crm/."}])],
        "routes[].prefix: must be a path like /api/v2/crm, without '.' or '..' segments",
    ),
    ("xs-route-root", "XynergyService", [("routes", [{"prefix": "/"}])], "spec.routes[0].prefix"),
    (
        "xs-route-alias-dot-segment",
        "XynergyService",
        [("routes", [{"prefix": "/api/v2/crm", "aliases": ["/api/./crm"]}])],
        "spec.routes[0].aliases",
    ),
    (
        "xs-health-timeout",
        "XynergyService",
        [("healthCheck", {"periodSeconds": 5, "timeoutSeconds": 10})],
        "spec.healthCheck.timeoutSeconds",
    ),
    ("xs-deletion-policy", "XynergyService", [("deletionPolicy", "Keep")], "spec.deletionPolicy"),
    ("xs-unknown-field", "XynergyService", [("colour", "blue")], "spec.colour"),
    (
        "xs-replicas-over-max",
        "XynergyService",
        [("scaling", {"maxInstances": 3}), ("replicas", 4)],
        "spec.replicas",
    ),
    (
        "xs-negative-min",
        "XynergyService",
        [("scaling", {"minInstances": -1})],
        "spec.scaling.minInstances",
    ),
    (
        "xs-bad-project",
        "XynergyService",
        [("backend", "cloudRun"), ("cloudRun", {"project": "X", "region": "us-central1"})],
        "spec.cloudRun.project",
    ),
    ("sp-min-over-max", "ScalingPolicy", [("minInstances", 20)], "spec.minInstances"),
    ("sp-scheduled-needs-schedules", "ScalingPolicy", [("mode", "scheduled")], "spec.schedules"),
    ("sp-prom-needs-query", "ScalingPolicy", [("metric.query", DELETE)], "spec.metric.query"),
    (
        "sp-target-zero",
        "ScalingPolicy",
        [("metric.targetPerInstance", 0)],
        "spec.metric.targetPerInstance",
    ),
    (
        "sp-bad-duration",
        "ScalingPolicy",
        [("forecast", {"horizon": "10 minutes"})],
        "spec.forecast.horizon",
    ),
    (
        "sp-history-too-short",
        "ScalingPolicy",
        [("forecast", {"historyWindow": "1h", "minimumHistory": "2h"})],
        "spec.forecast.minimumHistory",
    ),
    (
        "sp-policy-type",
        "ScalingPolicy",
        [
            (
                "behavior",
                {"scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 15}]}},
            )
        ],
        "spec.behavior.scaleUp.policies[0].type",
    ),
    (
        "sp-negative-window",
        "ScalingPolicy",
        [("behavior", {"scaleDown": {"stabilizationWindowSeconds": -5}})],
        "spec.behavior.scaleDown.stabilizationWindowSeconds",
    ),
    ("sp-target-required", "ScalingPolicy", [("targetRef", DELETE)], "spec.targetRef"),
    (
        "sp-bad-cron",
        "ScalingPolicy",
        [("schedules", [{"cron": "every day", "duration": "1h", "minInstances": 2}])],
        "spec.schedules[0].cron",
    ),
    ("sp-metric-source", "ScalingPolicy", [("metric.source", "datadog")], "spec.metric.source"),
    (
        "sp-window-needs-prometheus",
        "ScalingPolicy",
        [
            ("metric.source", "cloudMonitoring"),
            ("metric.query", DELETE),
            ("metric.metricType", "run.googleapis.com/request_count"),
            ("metric.averagingWindowSeconds", 60),
        ],
        "spec.metric.averagingWindowSeconds",
    ),
    (
        "sp-window-over-an-hour",
        "ScalingPolicy",
        [("metric.averagingWindowSeconds", 3601)],
        "spec.metric.averagingWindowSeconds",
    ),
    (
        "sp-capacity-below-target",
        "ScalingPolicy",
        [("metric.capacityPerInstance", 1)],
        "spec.metric.capacityPerInstance",
    ),
    (
        "ro-weight-over-100",
        "Rollout",
        [("strategy.canary.steps.0", {"setWeight": 150})],
        "spec.strategy.canary.steps[0].setWeight",
    ),
    (
        "ro-weights-decrease",
        "Rollout",
        [("strategy.canary.steps", [{"setWeight": 50}, {"setWeight": 20}])],
        "setWeight must not decrease",
    ),
    (
        "ro-two-strategies",
        "Rollout",
        [("strategy.immediate", {})],
        "set exactly one of canary, blueGreen, rolling, immediate",
    ),
    (
        "ro-step-two-actions",
        "Rollout",
        [("strategy.canary.steps.0", {"setWeight": 10, "pause": {}})],
        "spec.strategy.canary.steps[0]",
    ),
    ("ro-needs-revision", "Rollout", [("image", DELETE)], "set image and/or template"),
    (
        "ro-analysis-needs-spec",
        "Rollout",
        [("strategy.canary.steps", [{"setWeight": 10}, {"analysis": {"duration": "5m"}}])],
        "spec.analysis is required",
    ),
    (
        "ro-method-enum",
        "Rollout",
        [("analysis", {"metrics": [{"name": "e", "query": "q", "method": "magic"}]})],
        "spec.analysis.metrics[0].method",
    ),
    (
        "ro-threshold-needs-bound",
        "Rollout",
        [("analysis", {"metrics": [{"name": "e", "query": "q", "method": "threshold"}]})],
        "threshold needs maxValue or minValue",
    ),
    (
        "ro-points-per-sample-method",
        "Rollout",
        [("analysis", {"metrics": [{**IQR, "pointsPerSample": 3}]})],
        "pointsPerSample is for method mannWhitney only",
    ),
    (
        "ro-paired-method",
        "Rollout",
        [("analysis", {"metrics": [{**IQR, "paired": True}]})],
        "paired is for method mannWhitney only",
    ),
    (
        "ro-points-per-sample-below-one",
        "Rollout",
        [("analysis", {"metrics": [{"name": "e", "query": "q", "pointsPerSample": 0.5}]})],
        "spec.analysis.metrics[0].pointsPerSample",
    ),
    (
        "ro-pause-duration",
        "Rollout",
        [("strategy.canary.steps.1", {"pause": {"duration": "forever"}})],
        "spec.strategy.canary.steps[1].pause.duration",
    ),
    (
        "ro-max-unavailable",
        "Rollout",
        [("strategy", {"rolling": {"maxUnavailable": "abc%"}})],
        "spec.strategy.rolling.maxUnavailable",
    ),
    (
        "ro-rolling-nothing-moves",
        "Rollout",
        [("strategy", {"rolling": {"maxSurge": "0%"}})],
        "rolling.maxSurge and rolling.maxUnavailable must not both be 0",
    ),
    (
        "xs-toleration-exists-value",
        "XynergyService",
        [("kubernetes", {"tolerations": [{"operator": "Exists", "value": "x"}]})],
        "spec.kubernetes.tolerations[0].value",
    ),
    (
        "xs-toleration-empty-key",
        "XynergyService",
        [("kubernetes", {"tolerations": [{"value": "x"}]})],
        "spec.kubernetes.tolerations[0].operator",
    ),
    (
        "xs-toleration-seconds-effect",
        "XynergyService",
        [("kubernetes", {"tolerations": [{"key": "k", "tolerationSeconds": 5}]})],
        "spec.kubernetes.tolerations[0].tolerationSeconds",
    ),
    (
        "xs-empty-vpc-connector",
        "XynergyService",
        [
            ("backend", "cloudRun"),
            ("cloudRun", {"project": "my-proj-1", "region": "us-central1", "vpcConnector": ""}),
        ],
        "spec.cloudRun.vpcConnector",
    ),
    ("sp-zero-interval", "ScalingPolicy", [("interval", "0s")], "spec.interval"),
    (
        "sp-sub-second-interval",
        "ScalingPolicy",
        [("interval", "1ms")],
        "spec.interval must be a duration of at least 1s",
    ),
    (
        "sp-zero-window",
        "ScalingPolicy",
        [("schedules", [{"cron": "0 8 * * *", "duration": "0m", "minInstances": 2}])],
        "spec.schedules[0].duration",
    ),
    (
        "sp-zero-horizon",
        "ScalingPolicy",
        [("forecast", {"horizon": "0s"})],
        "spec.forecast.horizon",
    ),
    (
        "ro-zero-analysis-interval",
        "Rollout",
        [("analysis", {"interval": "0s", "metrics": [{"name": "e", "query": "q"}]})],
        "spec.analysis.interval",
    ),
    (
        "ro-preview-route-double-slash",
        "Rollout",
        [("strategy", {"blueGreen": {"previewRoute": "/api/v2/ai-preview//x"}})],
        "spec.strategy.blueGreen.previewRoute",
    ),
    (
        "ro-preview-route-dot-segment",
        "Rollout",
        [("strategy", {"blueGreen": {"previewRoute": "/api/v2/./ai-preview"}})],
        "blueGreen.previewRoute: must be a path like /api/v2/crm",
    ),
    ("oc-provider-enum", "OAuthConnection", [("provider", "github")], "spec.provider"),
    (
        "oc-slack-scope",
        "OAuthConnection",
        [("scopes", ["https://www.googleapis.com/auth/gmail.readonly"])],
        "Slack scopes look like",
    ),
    ("oc-gmail-scope", "OAuthConnection", [("provider", "gmail")], "Gmail scopes must be"),
    (
        "oc-redirect-http",
        "OAuthConnection",
        [("redirectURL", "http://example.com/cb")],
        "redirectURL must use https",
    ),
    (
        "oc-refresh-too-soon",
        "OAuthConnection",
        [("refreshBeforeExpirySeconds", 5)],
        "spec.refreshBeforeExpirySeconds",
    ),
    ("oc-no-scopes", "OAuthConnection", [("scopes", [])], "spec.scopes"),
    (
        "oc-gmail-user-scopes",
        "OAuthConnection",
        [("provider", "gmail"), ("scopes", ["email"]), ("userScopes", ["search:read"])],
        "userScopes: only Slack has user scopes",
    ),
    (
        "oc-slack-user-scope-shape",
        "OAuthConnection",
        [("userScopes", ["https://www.googleapis.com/auth/gmail.readonly"])],
        "userScopes: Slack user scopes look like search:read",
    ),
    ("oc-empty-user-scopes", "OAuthConnection", [("userScopes", [])], "spec.userScopes"),
    (
        "oc-token-secret-clash",
        "OAuthConnection",
        [("tokenSecretName", "slack-client")],
        "spec.tokenSecretName",
    ),
    ("oc-tenant-pattern", "OAuthConnection", [("tenant", "Acme Corp")], "spec.tenant"),
]


def test_table_is_big_enough() -> None:
    assert len(INVALID) >= 30
    assert {kind for _, kind, _, _ in INVALID} == set(BY_KIND)


def test_bases_are_valid(kube: Kube, crds_installed: list[str], namespace: str) -> None:
    """Each invalid case is one change away from an object the apiserver accepts."""
    for kind, spec in BASE.items():
        resp = kube.create(_path(kind, namespace), _obj(kind, "base", copy.deepcopy(spec)))
        assert resp.status_code == 201, f"{kind}: {resp.text}"


@pytest.mark.parametrize(
    ("kind", "changes", "expected"),
    [pytest.param(k, c, e, id=i) for i, k, c, e in INVALID],
)
def test_invalid_objects_are_rejected_naming_the_field(
    kube: Kube,
    crds_installed: list[str],
    kind: str,
    changes: list[tuple[str, Any]],
    expected: str,
) -> None:
    spec = copy.deepcopy(BASE[kind])
    for field, value in changes:
        _set(spec, field, value)
    resp = kube.create(_path(kind, "default"), _obj(kind, "invalid", spec))
    assert resp.status_code in (400, 422), f"accepted: {spec}"
    message = resp.json()["message"]
    assert expected in message, message


DIGEST = "sha256:" + "0123456789abcdef" * 4

# issue 20 item 3: (id, kind, field, value, path the message names, text of the expectation)
REFUSED: list[tuple[str, str, str, Any, str, str]] = [
    ("image-garbage", "XynergyService", "image", "::::@@@@", "spec.image", "image reference"),
    ("image-uppercase", "XynergyService", "image", "Nginx", "spec.image", "lowercase path"),
    ("image-short-digest", "XynergyService", "image", "nginx@sha256:abc", "spec.image", "digest"),
    ("image-empty-tag", "XynergyService", "image", "nginx:", "spec.image", "image reference"),
    ("rollout-image", "Rollout", "image", "::::@@@@", "spec.image", "image reference"),
    ("cpu-negative", "XynergyService", "resources.cpu", "-2", "spec.resources.cpu", "non-negative"),
    ("cpu-negative-int", "XynergyService", "resources.cpu", -2, "spec.resources.cpu", "non-negative"),
    ("memory-negative", "XynergyService", "resources.memory", "-1Gi", "spec.resources.memory",
     "non-negative"),
    ("cpu-unparsable", "XynergyService", "resources.cpu", "1.2.3", "spec.resources.cpu",
     "Kubernetes quantity"),
    ("rollout-cpu-negative", "Rollout", "template.resources.cpu", "-500m",
     "spec.template.resources.cpu", "non-negative"),
    # the grace period includes the 5 s preStop sleep: the app must get some of it
    ("grace-only-the-sleep", "XynergyService", "kubernetes.terminationGracePeriodSeconds", 5,
     "spec.kubernetes.terminationGracePeriodSeconds",
     "must be more than 5: the grace period counts from the start of the Pods' 5 s preStop"),
    ("grace-zero", "XynergyService", "kubernetes.terminationGracePeriodSeconds", 0,
     "spec.kubernetes.terminationGracePeriodSeconds", "must be more than 5"),
    ("grace-over-an-hour", "XynergyService", "kubernetes.terminationGracePeriodSeconds", 3606,
     "spec.kubernetes.terminationGracePeriodSeconds", "less than or equal to 3605"),
]  # fmt: skip

ACCEPTED: list[tuple[str, str, str, Any]] = [
    ("image-full", "XynergyService", "image", f"ghcr.io/acme/crm:1.2.3@{DIGEST}"),
    ("env-port-on-kubernetes", "XynergyService", "env", [{"name": "PORT", "value": "8080"}]),
    (
        "env-contract-on-kubernetes",  # objects stored before the operator set them stay valid
        "XynergyService",
        "env",
        [{"name": n, "value": "x"} for n in ("K_SERVICE", "K_REVISION", "K_CONFIGURATION")],
    ),
    ("grace-just-past-the-sleep", "XynergyService", "kubernetes.terminationGracePeriodSeconds", 6),
    ("grace-an-hour", "XynergyService", "kubernetes.terminationGracePeriodSeconds", 3605),
    ("image-port", "XynergyService", "image", "localhost:5000/x"),
    ("image-bare", "XynergyService", "image", "nginx"),
    ("image-ipv6", "XynergyService", "image", "[::1]:5000/app:dev"),
    ("rollout-image-digest", "Rollout", "image", f"nginx@{DIGEST}"),
    ("cpu-exponent", "XynergyService", "resources.cpu", "1e3"),
    ("cpu-leading-dot", "XynergyService", "resources.cpu", ".5"),
    ("cpu-plus", "XynergyService", "resources.cpu", "+1"),
    ("memory-zero", "XynergyService", "resources.memory", 0),
    ("memory-binary", "XynergyService", "resources.memory", "1.5Gi"),
    ("rollout-cpu", "Rollout", "template.resources.cpu", "250m"),
    (
        "oc-slack-dotted-scope",
        "OAuthConnection",
        "scopes",
        ["users.profile:read", "links.embed:write"],
    ),
    ("oc-slack-hyphen-scope", "OAuthConnection", "scopes", ["incoming-webhook"]),
    ("oc-slack-user-scopes", "OAuthConnection", "userScopes", ["search:read", "users:read"]),
    ("oc-slack-connect-scope", "OAuthConnection", "scopes", ["conversations.connect:write"]),
    (
        "oc-slack-admin-scopes",
        "OAuthConnection",
        "scopes",
        ["admin.conversations:write", "admin", "commands", "identity.basic", "chat:write.public"],
    ),
    ("route-trailing-slash", "XynergyService", "routes", [{"prefix": "/api/v2/crm/"}]),
    ("route-dots-in-a-name", "XynergyService", "routes", [{"prefix": "/api/v2/.well-known"}]),
    ("preview-route", "Rollout", "strategy", {"blueGreen": {"previewRoute": "/api/v2/crm-pre"}}),
]


@pytest.mark.parametrize(
    ("kind", "field", "value", "path", "text"),
    [pytest.param(k, f, v, p, t, id=i) for i, k, f, v, p, t in REFUSED],
)
def test_bad_images_and_negative_quantities_are_refused(
    kube: Kube, crds_installed: list[str], kind: str, field: str, value: Any, path: str, text: str
) -> None:
    spec = copy.deepcopy(BASE[kind])
    _set(spec, field, value)
    with pytest.raises(ValidationError):  # the model refuses it too
        BY_KIND[kind].crd.spec_model.model_validate(spec)
    resp = kube.create(_path(kind, "default"), _obj(kind, "refused", spec))
    assert resp.status_code == 422, f"accepted: {spec}"
    message = resp.json()["message"]
    assert f"{path}: Invalid value" in message, message
    assert text in message, message


@pytest.mark.parametrize(
    ("kind", "field", "value"), [pytest.param(k, f, v, id=i) for i, k, f, v in ACCEPTED]
)
def test_good_images_and_quantities_are_accepted(
    kube: Kube, crds_installed: list[str], namespace: str, kind: str, field: str, value: Any
) -> None:
    spec = copy.deepcopy(BASE[kind])
    _set(spec, field, value)
    BY_KIND[kind].crd.spec_model.model_validate(spec)  # the model agrees with the apiserver
    resp = kube.create(_path(kind, namespace), _obj(kind, "accepted", spec))
    assert resp.status_code == 201, resp.text


CLOUD_RUN = {"project": "my-proj-1", "region": "us-central1"}
ON_CLOUD_RUN = {**BASE["XynergyService"], "backend": "cloudRun", "cloudRun": CLOUD_RUN}

# (id, spec created, merge patch of the spec, text the refusal names; None: accepted)
TRANSITIONS: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    ("kubernetes-to-cloudrun", BASE["XynergyService"],
     {"backend": "cloudRun", "cloudRun": CLOUD_RUN}, "spec.backend is immutable"),
    ("cloudrun-to-kubernetes", ON_CLOUD_RUN, {"backend": "kubernetes", "cloudRun": None},
     "spec.backend is immutable"),
    ("cloudrun-project", ON_CLOUD_RUN, {"cloudRun": {"project": "other-proj-2"}},
     "spec.cloudRun.project is immutable"),
    ("cloudrun-region", ON_CLOUD_RUN, {"cloudRun": {"region": "europe-west1"}},
     "spec.cloudRun.region is immutable"),
    ("cloudrun-image", ON_CLOUD_RUN, {"image": "registry.example/crm:2"}, None),
    ("kubernetes-image", BASE["XynergyService"], {"image": "registry.example/crm:2"}, None),
]  # fmt: skip


def test_the_backend_and_cloud_run_location_cannot_change_in_place(
    kube: Kube, crds_installed: list[str], namespace: str
) -> None:
    """Moving a XynergyService to another backend, project or region in place would leave
    the old service running (a Deployment, or a billed Cloud Run service nobody deletes):
    the apiserver refuses it naming the field and saying to delete and recreate; other
    updates still go through."""
    path = _path("XynergyService", namespace)
    for case, spec, patch, refused in TRANSITIONS:
        created = kube.create(path, _obj("XynergyService", case, copy.deepcopy(spec)))
        assert created.status_code == 201, f"{case}: {created.text}"
        resp = kube.http.patch(
            f"{path}/{case}",
            json={"spec": patch},
            headers={"Content-Type": "application/merge-patch+json"},
            params={"fieldValidation": "Strict"},
        )
        if refused is None:
            assert resp.status_code == 200, f"{case}: {resp.text}"
            continue
        assert resp.status_code == 422, f"{case}: accepted {patch}"
        message = resp.json()["message"]
        assert refused in message, message
        assert "delete the XynergyService and create it again" in message, message


def test_route_timeout_is_not_defaulted(
    kube: Kube, crds_installed: list[str], namespace: str
) -> None:
    """A route without timeoutSeconds stays without it, so the gateway's default applies."""
    spec = {**copy.deepcopy(BASE["XynergyService"]), "routes": [{"prefix": "/api/v2/crm"}]}
    resp = kube.create(_path("XynergyService", namespace), _obj("XynergyService", "routes", spec))
    assert resp.status_code == 201, resp.text
    assert resp.json()["spec"]["routes"] == [{"prefix": "/api/v2/crm", "public": False}]


# (id, kind, spec, metadata.name, text of the refusal; None: accepted)
NAMES: list[tuple[str, str, dict[str, Any], str, str | None]] = [
    ("xs-63", "XynergyService", BASE["XynergyService"], "a" * 63, None),
    ("xs-64", "XynergyService", BASE["XynergyService"], "a" * 64,
     "metadata.name: must be at most 63 characters: it names the XynergyService's Service"),
    ("xs-253", "XynergyService", BASE["XynergyService"], "a" * 253,
     "metadata.name: must be at most 63 characters"),
    ("xs-dotted", "XynergyService", BASE["XynergyService"], "crm.v2",
     "metadata.name: must start with a lowercase letter"),
    ("xs-leading-digit", "XynergyService", BASE["XynergyService"], "2fa",
     "metadata.name: must start with a lowercase letter"),
    ("xs-cloudrun-49", "XynergyService", ON_CLOUD_RUN, "c" * 49, None),
    ("xs-cloudrun-50", "XynergyService", ON_CLOUD_RUN, "c" * 50,
     "metadata.name: must be at most 49 characters with spec.backend cloudRun"),
    ("rollout-63", "Rollout", BASE["Rollout"], "r" * 63, None),
    ("rollout-dotted", "Rollout", BASE["Rollout"], "crm.canary", None),
    ("rollout-64", "Rollout", BASE["Rollout"], "r" * 64,
     "metadata.name: must be at most 63 characters: it is the value of the xynergy.io/rollout"),
    ("oc-63", "OAuthConnection", BASE["OAuthConnection"], "o" * 63, None),
    ("oc-dotted", "OAuthConnection", BASE["OAuthConnection"], "acme.slack", None),
    ("oc-64", "OAuthConnection", BASE["OAuthConnection"], "o" * 64,
     "metadata.name: must be at most 63 characters: it is the value of the"
     " xynergy.io/oauth-connection label on the connection's token and authorization Secrets"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "spec", "name", "refused"),
    [pytest.param(k, s, n, r, id=i) for i, k, s, n, r in NAMES],
)
def test_a_name_its_children_cannot_have_is_refused_at_creation(
    kube: Kube,
    crds_installed: list[str],
    namespace: str,
    kind: str,
    spec: dict[str, Any],
    name: str,
    refused: str | None,
) -> None:
    """A XynergyService's name names its Service (a DNS-1035 label), a Cloud Run service id
    and label values; a Rollout's is a label value: one they cannot have is refused when the
    object is created, naming metadata.name and the limit, not by a child's apiserver error
    later (the longest of each is admitted)."""
    resp = kube.create(_path(kind, namespace), _obj(kind, name, copy.deepcopy(spec)))
    if refused is None:
        assert resp.status_code == 201, resp.text
        return
    assert resp.status_code == 422, f"accepted {name!r}"
    message = resp.json()["message"]
    assert refused in message, message
    if kind == "XynergyService":  # the operator's own check says the same
        backend = XSBackend(spec.get("backend", "kubernetes"))
        assert (name_problem(name, backend) or "").startswith(refused)
    if kind == "OAuthConnection":
        assert (oauth_name_problem(name) or "").startswith(refused)


def _renamed_crd(group: str, *, with_name_rules: bool) -> dict[str, Any]:
    """The XynergyService CRD in another group (so this test can change it), with or without
    its rules on metadata.name."""
    crd = crd_for(XynergyService.crd)
    crd["metadata"]["name"] = f"{XynergyService.crd.plural}.{group}"
    crd["spec"]["group"] = group
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert root.get("x-kubernetes-validations"), "the CRD has its rules on metadata.name"
    if not with_name_rules:
        del root["x-kubernetes-validations"]
    return crd


def test_an_object_stored_before_the_name_rules_stays_updatable(kube: Kube, namespace: str) -> None:
    """Upgrading the CRD leaves an object already stored with a longer name as it was: its
    spec, finalizers and deletion still go through (the rules are for creation only), while
    a new object of that name is refused."""
    group = f"u{uuid.uuid4().hex[:8]}.xynergy.io"
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    crd_name = f"{XynergyService.crd.plural}.{group}"
    made = kube.create(crds, _renamed_crd(group, with_name_rules=False))
    assert made.status_code == 201, made.text
    try:

        def established() -> bool:
            conditions = kube.get(f"{crds}/{crd_name}").json().get("status", {}).get("conditions")
            return any(
                c["type"] == "Established" and c["status"] == "True" for c in conditions or []
            )

        kube.wait_for(f"{crd_name} Established", established)
        path = f"/apis/{group}/{VERSION}/namespaces/{namespace}/{XynergyService.crd.plural}"
        old_name = "legacy-" + "x" * 70
        body = {**_obj("XynergyService", old_name, copy.deepcopy(BASE["XynergyService"]))}
        body["apiVersion"] = f"{group}/{VERSION}"

        def created() -> bool:  # the new group is served a moment after Established
            resp = kube.create(path, body)
            assert resp.status_code in (201, 404), resp.text
            return resp.status_code == 201

        kube.wait_for("an object with a 77-character name", created)

        live = kube.get(f"{crds}/{crd_name}").json()
        upgraded = _renamed_crd(group, with_name_rules=True)
        upgraded["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        resp = kube.http.put(f"{crds}/{crd_name}", json=upgraded)
        assert resp.status_code == 200, resp.text
        newer = {**body, "metadata": {"name": "newer-" + "x" * 70}}

        def refused() -> bool:  # the apiserver serves the new schema a moment later
            resp = kube.create(path, newer)
            assert resp.status_code in (201, 422), resp.text
            if resp.status_code == 201:
                kube.delete(f"{path}/{newer['metadata']['name']}")
                return False
            assert "metadata.name: must be at most 63 characters" in resp.json()["message"]
            return True

        kube.wait_for("a new over-long name refused", refused)

        def patch(change: dict[str, Any]) -> httpx.Response:
            return kube.http.patch(
                f"{path}/{old_name}",
                json=change,
                headers={"Content-Type": "application/merge-patch+json"},
            )

        for change in (
            {"spec": {"image": "registry.example/crm:2"}},
            {"metadata": {"finalizers": ["xynergy.io/finalizer"]}},
            {"metadata": {"finalizers": None}},
        ):
            resp = patch(change)
            assert resp.status_code == 200, f"{change}: {resp.text}"
        assert kube.get(f"{path}/{old_name}").json()["spec"]["image"] == "registry.example/crm:2"
        assert kube.delete(f"{path}/{old_name}").status_code == 200
    finally:
        kube.delete(f"{crds}/{crd_name}")


def test_an_oauth_connections_token_secret_name_cannot_change(
    kube: Kube, crds_installed: list[str], namespace: str
) -> None:
    """The operator does not move tokens between Secrets: a new `spec.tokenSecretName` would
    leave them in the old Secret (unrevoked at the connection's deletion) while services read
    the new name. The apiserver refuses the change naming the field and saying what to do;
    other updates go through."""
    path = _path("OAuthConnection", namespace)
    created = kube.create(
        path, _obj("OAuthConnection", "oc", copy.deepcopy(BASE["OAuthConnection"]))
    )
    assert created.status_code == 201, created.text
    for patch, refused in (
        ({"tokenSecretName": "other-tokens"}, True),
        ({"scopes": ["chat:write", "channels:read"]}, False),
    ):
        resp = kube.http.patch(
            f"{path}/oc",
            json={"spec": patch},
            headers={"Content-Type": "application/merge-patch+json"},
            params={"fieldValidation": "Strict"},
        )
        if not refused:
            assert resp.status_code == 200, resp.text
            continue
        assert resp.status_code == 422, f"accepted: {patch}"
        message = resp.json()["message"]
        assert "spec.tokenSecretName is immutable" in message, message
        assert "delete the OAuthConnection and create it again" in message, message
