"""The operator's RBAC is exactly what it uses.

The chart's RBAC (rendered by helm from controllers/rbac.py) is applied to the local cluster, and
the operator, with the handlers of all four kinds and kopf peering, runs under the chart's
ServiceAccount (a TokenRequest token) behind `kubectl proxy -v=6`, which logs every request it
forwards with its status. A short e2e drives every kind (XynergyService with a ConfigMap env
reference, ScalingPolicy, Rollout, OAuthConnection created and deleted). Then:
- no request was refused (no 403), and the apiserver's audit log shows the writes under the
  ServiceAccount's name (so RBAC, not system:masters, authorised them);
- every granted (group, resource, verb) was used, or is in NOT_EXERCISED with the reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fakes.oauth import FakeOAuth
from kopf.testing import KopfRunner
from kube_support import Kube, writes_by

from controllers.rbac import CLUSTER_RULES, NAMESPACED_RULES

pytestmark = pytest.mark.timeout(420)

CHART = Path(__file__).parents[2] / "charts" / "xynergy"
API = "/apis/xynergy.io/v1alpha1"
RELEASE = "audit"
SA = f"{RELEASE}-operator"

# Granted but not reached by this short e2e, each with where it is used. Anything granted and
# neither used here nor listed fails the test: a new grant needs a user or a reason.
NOT_EXERCISED: dict[tuple[str, str, str], str] = {
    ("xynergy.io", "xynergyservices/scale", "patch"): "ScalingPolicy acting (needs metrics)",
    ("xynergy.io", "xynergyservices", "patch"): "Rollout sets its target's image (Cloud Run)",
    ("xynergy.io", "scalingpolicies", "patch"): "kopf finalizer path, not used by this kind",
    ("apps", "deployments", "delete"): "XynergyService switching backend removes its children",
    ("", "services", "delete"): "XynergyService switching backend removes its children",
    ("", "secrets", "update"): "OAuthConnection storing refreshed tokens (claim under RV)",
    ("kopf.dev", "kopfpeerings", "list"): "peering when the operator watches one namespace",
    ("kopf.dev", "kopfpeerings", "watch"): "peering when the operator watches one namespace",
    ("kopf.dev", "kopfpeerings", "patch"): "peering when the operator watches one namespace",
}

# Granted, needed, and used or not depending on timing: a converge on an event reads the body
# its watch delivered; only the scheduler's checks GET the object.
MAYBE_EXERCISED: dict[tuple[str, str, str], str] = (
    {
        ("xynergy.io", plural, "get"): "read by the scheduler's checks (a resync, a converge "
        "after one that ran, a ScalingPolicy's sync); the test may end before one"
        for plural in ("xynergyservices", "scalingpolicies", "rollouts", "oauthconnections")
    }
    | {
        (group, plural, "get"): "a XynergyService's children, read by the scheduler's checks and "
        "the object's own events; a child event's converge reads the child cache instead"
        for group, plural in (("", "services"), ("apps", "deployments"))
    }
    | {
        ("", "pods", "list"): "a later converge of a Deployment still not available lists its Pods "
        "to say why (the converge that wrote it does not); the test may end before one"
    }
)

# kubectl -v=6: `round_trippers.go:560] GET https://.../path?query 200 OK in 3 milliseconds`
_LOG_LINE = re.compile(
    r"\] (?P<method>GET|POST|PUT|PATCH|DELETE) (?P<url>https?://\S+) (?P<code>\d{3}) "
)
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def granted() -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in NAMESPACED_RULES + CLUSTER_RULES
        for group in rule.groups
        for resource in rule.resources
        for verb in rule.verbs
    }


def attributes(method: str, url: str) -> tuple[str, str, str] | None:
    """(group, resource[/subresource], verb) of a request; None for discovery (non-resource)."""
    path, _, query = url.partition("?")
    parts = [p for p in re.sub(r"^https?://[^/]+", "", path).split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None  # /version, /api, /apis, /apis/<group>[/<version>]: discovery
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    if not rest:
        return None
    resource = "/".join([rest[0], *rest[2:3]])
    if method == "GET":
        watch = re.search(r"(^|&)watch=(1|true)", query) is not None
        verb = "watch" if watch else ("get" if len(rest) > 1 else "list")
    else:
        verb = _METHOD_VERBS[method]
    return group, resource, verb


def kubectl(cluster: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def install_chart_rbac(bindir: Path, cluster: Path, namespace: str) -> None:
    """The chart's ServiceAccount, roles, bindings and peering object, as helm renders them."""
    rendered = subprocess.run(
        [
            *(str(bindir / "helm"), "template", RELEASE, str(CHART), "--namespace", namespace),
            *("--kube-version", "1.37.2", "--show-only", "templates/rbac.yaml"),
            *("--show-only", "templates/peering.yaml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    peering_crds = (CHART / "crds" / "kopf-peerings.kopf.dev.yaml").read_text()
    kubectl(cluster, "apply", "--server-side", "-f", "-", stdin=peering_crds)
    kubectl(cluster, "wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev")
    kubectl(cluster, "apply", "--server-side", "-f", "-", stdin=rendered)


def token_kubeconfig(kube: Kube, cluster: Path, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount."""
    resp = kube.http.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{SA}/token",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 3600}},
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    cfg = yaml.safe_load(cluster.read_text())
    cfg["users"][0]["user"] = {"token": resp.json()["status"]["token"]}
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


@contextmanager
def recording_proxy(kube: Kube, kubeconfig: Path, workdir: Path) -> Iterator[tuple[Path, Path]]:
    """`kubectl proxy` as the ServiceAccount; yields (kubeconfig to it, its request log)."""
    log = workdir / "proxy.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            ["kubectl", "--kubeconfig", str(kubeconfig), "proxy", "--port=0", "-v=6"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, f"kubectl proxy did not start: {line!r} {log.read_text()[-2000:]}"
        proxied = workdir / "proxied.kubeconfig"
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{match[1]}"}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
        }  # fmt: skip
        proxied.write_text(yaml.safe_dump(cfg))
        url = f"http://127.0.0.1:{match[1]}/apis/kopf.dev/v1/clusterkopfpeerings"
        kube.wait_for(  # the peering CRD's storage may still be initialising (429)
            f"the ServiceAccount can list through the proxy ({log})",
            lambda: httpx.get(url).status_code == 200,
        )
        yield proxied, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def operator_as(kubeconfig: Path, peering: str, env: dict[str, str]) -> Iterator[KopfRunner]:
    env = {"KUBECONFIG": str(kubeconfig), **env}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from controllers.runtime import HANDLER_MODULES  # its login handler reads KUBECONFIG late

    args = ["run", "-A", "--peering", peering, "-m", "controllers.runtime"]
    for module in HANDLER_MODULES:
        args += ["-m", module]
    try:
        with KopfRunner(args, timeout=60, reraise=False) as runner:
            yield runner
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert runner.exception is None, f"{runner.exception!r}\n{runner.output[-4000:]}"


def _status(kube: Kube, path: str) -> dict[str, Any]:
    body = kube.get(path).json()
    return body.get("status") or {}


def _observed(kube: Kube, path: str) -> bool:
    status = _status(kube, path)
    return any(c.get("type") == "Ready" for c in status.get("conditions") or [])


def drive_every_kind(kube: Kube, ns: str) -> None:
    """Create one object of each kind, wait until each has status, delete them."""
    samples = Path(__file__).parents[2] / "manifests" / "samples"
    objects = [
        ("/api/v1", "configmaps", "configmap-crm.yaml"),
        (API, "xynergyservices", "xynergyservice-crm.yaml"),
        (API, "scalingpolicies", "scalingpolicy-crm.yaml"),
        (API, "rollouts", "rollout-crm-canary.yaml"),
    ]
    client = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "slack-oauth-client"},
              "stringData": {"client_id": "id", "client_secret": "fake-client-secret"}}  # fmt: skip
    assert kube.create(f"/api/v1/namespaces/{ns}/secrets", client).status_code == 201
    paths = []
    for base, plural, sample in [*objects, (API, "oauthconnections", "oauthconnection-slack.yaml")]:
        body = yaml.safe_load((samples / sample).read_text())
        resp = kube.create(f"{base}/namespaces/{ns}/{plural}", body)
        assert resp.status_code == 201, resp.text
        paths.append(f"{base}/namespaces/{ns}/{plural}/{body['metadata']['name']}")
    for path in paths[1:]:
        kube.wait_for(f"status of {path}", lambda p=path: _observed(kube, p), timeout=120)
    crm = f"{API}/namespaces/{ns}/xynergyservices/crm"
    kube.wait_for(
        "XynergyService crm Ready (its Deployment Available under kwok)",
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in _status(kube, crm).get("conditions", [])
        ),
        timeout=120,
    )
    for path in reversed(paths[1:]):
        assert kube.delete(path).status_code == 200
    for path in paths[1:]:
        kube.wait_for(f"{path} deleted", lambda p=path: kube.get(p).status_code == 404, timeout=120)


def requests_made(log: Path) -> list[tuple[str, str, int]]:
    out = []
    for line in log.read_text().splitlines():
        match = _LOG_LINE.search(line)
        if match:
            out.append((match["method"], match["url"], int(match["code"])))
    return out


def test_operator_uses_exactly_its_rbac(
    bindir: Path,
    cluster: Path,
    kube: Kube,
    crds_installed: list[str],
    audit_log: Path,
    tmp_path: Path,
) -> None:
    home = f"xy-rbac-{uuid.uuid4().hex[:6]}"
    work = f"xy-work-{uuid.uuid4().hex[:6]}"
    for ns in (home, work):
        assert kube.create("/api/v1/namespaces", {"metadata": {"name": ns}}).status_code == 201
    try:
        install_chart_rbac(bindir, cluster, home)
        sa_config = token_kubeconfig(kube, cluster, home, tmp_path / "sa.kubeconfig")
        with FakeOAuth(expires_in=3600) as fake:
            env = {f"XYNERGY_OAUTH_SLACK_{step.upper()}_URL": url
                   for step, url in fake.endpoints("slack").items()}  # fmt: skip
            with (
                recording_proxy(kube, sa_config, tmp_path) as (proxied, log),
                operator_as(proxied, f"{RELEASE}-operator", env) as runner,
            ):
                try:
                    drive_every_kind(kube, work)
                except BaseException:
                    (tmp_path / "operator.log").write_text(runner.output)
                    print(f"operator log: {tmp_path / 'operator.log'}")
                    raise
        requests = requests_made(log)
    finally:
        for ns in (work, home):
            kube.delete(f"/api/v1/namespaces/{ns}")
        kube.delete("/apis/kopf.dev/v1/clusterkopfpeerings/audit-operator")
        for name in (SA, f"{SA}-cluster"):
            kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")
            kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")

    assert requests, "kubectl proxy logged no request"
    refused = [(m, u) for m, u, code in requests if code in (401, 403)]
    assert not refused, f"refused by RBAC: {refused}"
    used = {a for m, u, _ in requests if (a := attributes(m, u)) is not None}
    # a server-side apply that creates (201) is also authorised as `create` by the apiserver
    used |= {(g, r, "create") for m, u, code in requests if m == "PATCH" and code == 201
             for g, r, _ in [attributes(m, u) or ("", "", "")]}  # fmt: skip
    assert used <= granted(), f"used but not granted: {sorted(used - granted())}"
    unused = granted() - used - set(MAYBE_EXERCISED)
    assert unused == set(NOT_EXERCISED), (
        f"granted, unused and unlisted: {sorted(unused - set(NOT_EXERCISED))}; "
        f"listed but used (drop from NOT_EXERCISED): {sorted(set(NOT_EXERCISED) - unused)}"
    )
    # the writes reached the apiserver as the ServiceAccount (RBAC decided, not system:masters)
    user = f"system:serviceaccount:{home}:{SA}"
    writes = writes_by(audit_log, user)
    assert {e["verb"] for e in writes} >= {"create", "patch", "delete"}, json.dumps(writes[:3])
    denied = [e["requestURI"] for e in writes if e["responseStatus"]["code"] in (401, 403)]
    assert not denied, f"writes the apiserver refused: {denied}"
