"""The gateway sample, deployed: apply it to the local cluster, let the operator produce the
Deployment (kwok runs no containers), then start the gateway process as the kubelet would,
with exactly the container's command, environment and Secret/ConfigMap values, as its
ServiceAccount, and check that it serves /healthz, /readyz and a proxied request.

What the kubelet does and this test does in its stead: it resolves each ``valueFrom``
(``secretKeyRef``/``configMapKeyRef``, optional ones skipped when missing) by reading the
objects; it writes each mounted Secret's items into a directory (a temporary one here, so the
``*_FILE`` settings under a mountPath are pointed there: the keys are read from files); it gives the process its ServiceAccount's token (a TokenRequest, written into a
kubeconfig for the process instead of the token file under /var/run/secrets, which a shared
machine cannot offer); and the pod's own network namespace becomes ``XYNERGY_GATEWAY_HOST``/
``_PORT`` on a free local port. The sample's Redis (the cluster DNS name ``redis``) is the
test's redis-server: the ConfigMap is given that URL, as a user gives their own.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kube_support import Kube, run_operator

from services.common.settings import AuthSettings, InternalIdentitySettings, env_variables
from services.gateway.oauth import OAuthCallbackSettings
from services.gateway.settings import GatewaySettings

from .conftest import INTERNAL_KEY, JWT_SECRET, RedisServer, Upstream, free_port, make_jwt, wait_for

REPO = Path(__file__).parents[3]
SAMPLES = REPO / "manifests" / "samples"
API = "/apis/xynergy.io/v1alpha1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _sample(name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((SAMPLES / name).read_text()))


def _created(resp: httpx.Response) -> None:
    assert resp.status_code in (201, 409), resp.text


def _secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


@pytest.fixture
def rbac(kube: Kube, namespace: str) -> Iterator[str]:
    """gateway-rbac.yaml, its bindings pointed at the test's namespace; the account's name."""
    docs = [copy.deepcopy(d) for d in _sample("gateway-rbac.yaml")]
    (account,) = (d for d in docs if d["kind"] == "ServiceAccount")
    (binding,) = (d for d in docs if d["kind"] == "ClusterRoleBinding")
    (secrets,) = (d for d in docs if d["kind"] == "RoleBinding")
    _created(kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", account))
    for role in (d for d in docs if d["kind"] == "ClusterRole"):
        _created(kube.create(f"{RBAC}/clusterroles", role))
    binding["metadata"]["name"] = f"xynergy-gateway-{namespace}"
    binding["subjects"][0]["namespace"] = namespace
    _created(kube.create(f"{RBAC}/clusterrolebindings", binding))
    secrets["metadata"]["namespace"] = namespace
    secrets["subjects"][0]["namespace"] = namespace
    _created(kube.create(f"{RBAC}/namespaces/{namespace}/rolebindings", secrets))
    yield account["metadata"]["name"]
    kube.delete(f"{RBAC}/clusterrolebindings/xynergy-gateway-{namespace}")


def test_the_gateway_account_reads_secrets_only_where_it_is_bound(
    kube: Kube, namespace: str, rbac: str, tmp_path: Path
) -> None:
    """The OAuth callback's Secrets: get/update in the namespace bound (the connections'),
    nothing in any other (kube-system's, say)."""
    config = yaml.safe_load(
        _service_account_kubeconfig(kube, namespace, rbac, tmp_path / "kc").read_text()
    )
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    _created(kube.create(f"/api/v1/namespaces/{namespace}/secrets", _secret("probe", k="v")))
    with httpx.Client(
        base_url=cluster["server"],
        verify=ssl.create_default_context(cafile=cluster["certificate-authority"]),
        headers={"Authorization": f"Bearer {user['token']}"},
        timeout=30,
    ) as http:
        assert http.get(f"/api/v1/namespaces/{namespace}/secrets/probe").status_code == 200
        elsewhere = http.get("/api/v1/namespaces/kube-system/secrets/anything")
        assert elsewhere.status_code == 403, elsewhere.text
        listed = http.get(f"/api/v1/namespaces/{namespace}/secrets")  # get, not list
        assert listed.status_code == 403, listed.text


def _deployment_of_the_sample(
    kube: Kube, cluster: Path, namespace: str, redis_url: str, endpoint: str
) -> dict[str, Any]:
    """Apply the sample (the ConfigMap given the test's Redis) and return the Deployment the
    operator made of it."""
    settings, gateway = _sample("xynergyservice-gateway.yaml")
    settings["data"]["redis_url"] = redis_url
    name = gateway["metadata"]["name"]
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    with run_operator(cluster, XYNERGY_CLOUDRUN_ENDPOINT=endpoint):
        _created(kube.create(f"/api/v1/namespaces/{namespace}/configmaps", settings))
        _created(kube.create(f"{API}/namespaces/{namespace}/xynergyservices", gateway))
        kube.wait_for("the gateway's Deployment", lambda: kube.get(path).status_code == 200)
    return dict(kube.get(path).json())


def _materialised_env(
    kube: Kube, namespace: str, container: dict[str, Any], meta: dict[str, Any]
) -> dict[str, str]:
    """The container's environment with every valueFrom resolved, as the kubelet does (a
    downward-API field from the Pod's metadata `meta`, the template's)."""
    out: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            out[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]
        kind, key_ref = next(iter(ref.items()))
        if kind == "fieldRef":
            field = re.fullmatch(
                r"metadata\.(labels|annotations)\['([^']+)'\]", key_ref["fieldPath"]
            )
            assert field, f"{var['name']}: unexpected field {key_ref['fieldPath']}"
            out[var["name"]] = meta[field[1]][field[2]]
            continue
        plural = {"secretKeyRef": "secrets", "configMapKeyRef": "configmaps"}[kind]
        obj = kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{key_ref['name']}")
        data = obj.json().get("data", {}) if obj.status_code == 200 else {}
        if key_ref["key"] not in data:
            assert key_ref.get("optional"), f"{var['name']}: {key_ref} is missing"
            continue
        value = data[key_ref["key"]]
        out[var["name"]] = base64.b64decode(value).decode() if plural == "secrets" else value
    return out


def _mounted_secrets(
    kube: Kube, namespace: str, pod: dict[str, Any], container: dict[str, Any], root: Path
) -> dict[str, Path]:
    """Write each Secret volume the container mounts under ``root`` (its items, or every key),
    as the kubelet does; mountPath -> the local directory that stands for it."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]]
        assert set(source) == {"name", "secret"}, f"only Secret volumes here: {source}"
        assert mount.get("readOnly"), mount
        secret = source["secret"]
        resp = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{secret['secretName']}")
        assert resp.status_code == 200 or secret.get("optional"), f"{mount}: {resp.text}"
        data = resp.json().get("data", {}) if resp.status_code == 200 else {}
        items = secret.get("items") or [{"key": k, "path": k} for k in data]
        folder = root / mount["name"]
        for item in items:
            assert item["key"] in data or secret.get("optional"), f"{mount}: {item} is missing"
            if item["key"] in data:
                (folder / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (folder / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
        out[mount["mountPath"]] = folder
    return out


def _files_moved(env: dict[str, str], mounts: dict[str, Path]) -> dict[str, str]:
    """``env`` with each ``*_FILE`` path under a mountPath pointed at its local directory."""
    out = dict(env)
    for name, value in env.items():
        for mount_path, folder in mounts.items():
            if name.endswith("_FILE") and value.startswith(mount_path + "/"):
                out[name] = str(folder / value.removeprefix(mount_path + "/"))
    return out


def _key_files(env: dict[str, str]) -> dict[str, str]:
    """What each ``*_FILE`` variable's file holds."""
    return {k: Path(v).read_text() for k, v in env.items() if k.endswith("_FILE")}


def _service_account_kubeconfig(kube: Kube, namespace: str, account: str, where: Path) -> Path:
    """A kubeconfig holding the ServiceAccount's token (what the kubelet mounts)."""
    resp = kube.http.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        json={"spec": {"expirationSeconds": 3600}},
    )
    assert resp.status_code == 201, resp.text
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": resp.json()["status"]["token"]}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": account}}],
        "current-context": "c",
    }
    where.write_text(yaml.safe_dump(config))
    return where


def _argv(container: dict[str, Any]) -> list[str]:
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[:1] == ["python"], argv  # the image's python is this interpreter here
    return [sys.executable, *argv[1:]]


def test_every_variable_of_the_sample_is_read_by_the_gateway() -> None:
    _, gateway = _sample("xynergyservice-gateway.yaml")
    read = set().union(
        *(
            env_variables(cls)
            for cls in (
                GatewaySettings,
                AuthSettings,
                InternalIdentitySettings,
                OAuthCallbackSettings,
            )
        )
    )
    names = {var["name"] for var in gateway["spec"]["env"]}
    assert names - read == set()
    assert "REDIS_URL" not in names


def test_the_sample_names_its_load_balancer_as_a_trusted_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind a load balancer the TCP peer is the balancer: without trusted proxies every
    client would share its per-address limits (HTTP and stream connections)."""
    settings, gateway = _sample("xynergyservice-gateway.yaml")
    (ref,) = [v for v in gateway["spec"]["env"] if v["name"] == "XYNERGY_GATEWAY_TRUSTED_PROXIES"]
    assert ref["configMapKeyRef"]["name"] == settings["metadata"]["name"]
    monkeypatch.setenv(ref["name"], settings["data"][ref["configMapKeyRef"]["key"]])
    assert GatewaySettings().trusted_proxies == ["10.0.0.0/8"]  # a valid list, read as JSON


async def test_the_gateway_starts_from_the_deployment_the_operator_makes(
    kube: Kube,
    cluster: Path,
    crds_installed: list[str],
    cloudrun_session: Any,
    namespace: str,
    rbac: str,
    redis_server: RedisServer,
    upstream: Upstream,
    tmp_path: Path,
) -> None:
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    _created(kube.create(secrets, _secret("gateway-internal", signing_key=INTERNAL_KEY)))
    _created(kube.create(secrets, _secret("gateway-jwt", secret=JWT_SECRET)))
    deployment = await asyncio.to_thread(
        _deployment_of_the_sample,
        kube,
        cluster,
        namespace,
        redis_server.url,
        cloudrun_session.endpoint,
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == rbac
    (container,) = pod["containers"]
    mounts = _mounted_secrets(kube, namespace, pod, container, tmp_path / "volumes")
    meta = deployment["spec"]["template"]["metadata"]
    env = _files_moved(_materialised_env(kube, namespace, container, meta), mounts)
    # the keys are files of the mounted Secrets (a rotation needs no restart), not values
    assert "XYNERGY_INTERNAL_SIGNING_KEY" not in env
    assert "JWT_SECRET" not in env
    assert _key_files(env) == {
        "XYNERGY_INTERNAL_SIGNING_KEY_FILE": INTERNAL_KEY,
        "JWT_SECRET_FILE": JWT_SECRET,
    }

    port = free_port()
    process_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        **env,
        "KUBECONFIG": str(
            _service_account_kubeconfig(kube, namespace, rbac, tmp_path / "sa.kubeconfig")
        ),
        "XYNERGY_GATEWAY_HOST": "127.0.0.1",
        "XYNERGY_GATEWAY_PORT": str(port),
    }
    await _settings_error_names_the_variable(_argv(container), process_env)
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *_argv(container), env=process_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await _serves(http, Running(proc, log), kube, namespace, upstream)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=20)


async def _settings_error_names_the_variable(argv: list[str], env: dict[str, str]) -> None:
    without = {k: v for k, v in env.items() if k != "XYNERGY_INTERNAL_SIGNING_KEY_FILE"}
    proc = await asyncio.create_subprocess_exec(
        *argv, env=without, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    assert "settings error: XYNERGY_INTERNAL_SIGNING_KEY" in err.decode()
    assert "Traceback" not in err.decode()


@dataclass
class Running:
    proc: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    async def until(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        """Wait for ``check``; fail with the gateway's output if it does not come."""
        try:
            await wait_for(check, within=60, what=what)
        except TimeoutError:
            exited = self.proc.returncode
            pytest.fail(f"{what}: not within 60 s (exit code {exited}):\n{self.output()}")


async def _serves(
    http: httpx.AsyncClient, gw: Running, kube: Kube, namespace: str, upstream: Upstream
) -> None:
    async def answers(path: str) -> bool:
        return (await http.get(path)).status_code == 200

    await gw.until(lambda: answers("/healthz"), "the gateway's /healthz")
    # ready: Redis answers and the route table was listed with the ServiceAccount's token
    await gw.until(lambda: answers("/readyz"), "the gateway's /readyz")
    crm = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": "deployed-crm"},
        "spec": {
            "image": "us-docker.pkg.dev/xynergy-demo/platform/crm-engine:1.4.2",
            "routes": [{"prefix": "/api/v2/deployed"}],
        },
    }
    base = f"{API}/namespaces/{namespace}/xynergyservices"
    _created(kube.create(base, crm))
    patched = kube.http.patch(
        f"{base}/deployed-crm/status",
        json={"status": {"url": upstream.url}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    token = {"Authorization": f"Bearer {make_jwt(user_id='deployed-user')}"}

    async def proxied() -> bool:
        r = await http.get("/api/v2/deployed/contacts", headers=token)
        return r.status_code == 200 and r.json()["identity"]["user"] == "deployed-user"

    await gw.until(proxied, "a request proxied to the route's upstream")
