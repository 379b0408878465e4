"""Argo CD health and actions (manifests/argocd/) run by a real Lua 5.1 interpreter (lupa), as
Argo CD's gopher-lua runs them: the global `obj` is the live object, the script returns a
health table or the changed object.

Three layers: the tables in Argo CD's `resource_customizations` test format
(tests/data/health/<Kind>/health_test.yaml and action_test.yaml over objects captured from the
local cluster in each state); the same scripts over the live objects, built here with the real
operator (`python -m controllers`), the fake Cloud Run and OAuth providers, a real Prometheus
and the real gateway for the OAuth callback; and the Rollout actions applied to the cluster the
way Argo CD applies them (a merge patch of the returned object), with the operator acting.

XYNERGY_CAPTURE_HEALTH=1 rewrites tests/data/health/<Kind>/<state>.yaml from the live objects
(and the derived `unobserved` and action-output files).
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from fakes.cloudrun import FakeCloudRun
from fakes.oauth import FakeOAuth
from gateway.conftest import make_jwt, run_redis, serve
from kube_support import Kube
from lupa import lua51
from prometheus import PrometheusServer
from test_oauthconnection import SECRET, apply_connection, browser
from test_oauthconnection import _env as oauth_env
from test_rollout_support import Operator, create_rollout, operator_process
from test_xynergyservice import create_xs, merge_patch
from test_xynergyservice_cloudrun import create_cloudrun_xs

from controllers.devcluster import repo_root
from services.common.auth import AuthSettings
from services.common.settings import InternalIdentitySettings
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

pytestmark = pytest.mark.timeout(600)

ARGOCD = repo_root() / "manifests" / "argocd"
DATA = repo_root() / "tests" / "data" / "health"
KINDS = ("XynergyService", "ScalingPolicy", "Rollout", "OAuthConnection")
PLURALS = {
    "XynergyService": "xynergyservices",
    "ScalingPolicy": "scalingpolicies",
    "Rollout": "rollouts",
    "OAuthConnection": "oauthconnections",
}
API = "/apis/xynergy.io/v1alpha1"
FIXED_NOW = int(dt.datetime(2024, 7, 2, 12, 0, tzinfo=dt.UTC).timestamp())
"""The clock of os.date in the table tests (action outputs carry the request time)."""


# -- the Lua side: what Argo CD's gopher-lua does ---------------------------------------------


def _from_lua(value: Any) -> Any:
    if lua51.lua_type(value) != "table":
        return value
    keys = list(value.keys())
    if (
        keys
        and all(isinstance(k, int) for k in keys)
        and sorted(keys) == list(range(1, len(keys) + 1))
    ):
        return [_from_lua(value[i]) for i in range(1, len(keys) + 1)]
    return {str(k): _from_lua(value[k]) for k in keys}


def run_lua(script: Path, obj: dict[str, Any], *, now: int | None = None) -> Any:
    """Run `script` with the global `obj`; its return value as Python data. With `now`,
    os.date without a time formats `now` (the table tests' fixed clock)."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=False)
    if now is not None:
        lua.execute(
            f"local real = os.date; os.date = function(f, t) return real(f, t or {now}) end"
        )
    lua.globals().obj = lua.table_from(copy.deepcopy(obj), recursive=True)
    return _from_lua(lua.execute(script.read_text()))


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    result: dict[str, str] = run_lua(ARGOCD / "health" / f"{kind}.lua", obj)
    return result


def actions_dir(kind: str) -> Path:
    return ARGOCD / "actions" / ("Rollout" if kind == "Rollout" else "resync")


def discover(kind: str, obj: dict[str, Any]) -> dict[str, bool]:
    found = run_lua(actions_dir(kind) / "discovery.lua", obj)
    return {name: bool(spec.get("disabled")) for name, spec in found.items()}


def act(kind: str, action: str, obj: dict[str, Any], *, now: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = run_lua(actions_dir(kind) / action / "action.lua", obj, now=now)
    return out


def _empty_as_dict(value: Any) -> Any:
    """Lua has one empty table: [] and {} read back the same."""
    if isinstance(value, dict):
        return {k: _empty_as_dict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_empty_as_dict(v) for v in value] if value else {}
    return value


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


# -- the tables (Argo CD's resource_customizations test format) ------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_health_table(kind: str) -> None:
    table = load(DATA / kind / "health_test.yaml")
    assert len(table["tests"]) >= 4, "every kind has a case per state"
    for case in table["tests"]:
        obj = load(DATA / kind / case["inputPath"])
        assert health(kind, obj) == case["healthStatus"], case["inputPath"]


@pytest.mark.parametrize("kind", KINDS)
def test_action_table(kind: str) -> None:
    table = load(DATA / kind / "action_test.yaml")
    for case in table["discoveryTests"]:
        obj = load(DATA / kind / case["inputPath"])
        want = {a["name"]: bool(a.get("disabled")) for a in case["result"]}
        assert discover(kind, obj) == want, case["inputPath"]
    for case in table["actionTests"]:
        obj = load(DATA / kind / case["inputPath"])
        expected = load(DATA / kind / case["expectedOutputPath"])
        got = act(kind, case["action"], obj, now=FIXED_NOW)
        assert _empty_as_dict(got) == _empty_as_dict(expected), case["expectedOutputPath"]


def test_argocd_cm_carries_exactly_the_scripts() -> None:
    """manifests/argocd/argocd-cm.yaml is what a user applies: it must embed these files."""
    cm = load(ARGOCD / "argocd-cm.yaml")
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"] == argocd_cm_data()


def argocd_cm_data() -> dict[str, str]:
    data: dict[str, str] = {}
    for kind in KINDS:
        data[f"resource.customizations.health.xynergy.io_{kind}"] = (
            ARGOCD / "health" / f"{kind}.lua"
        ).read_text()
        folder = actions_dir(kind)
        definitions = [
            {"name": d.name, "action.lua": (d / "action.lua").read_text()}
            for d in sorted(folder.iterdir())
            if d.is_dir()
        ]
        actions = {
            "discovery.lua": (folder / "discovery.lua").read_text(),
            "definitions": definitions,
        }
        data[f"resource.customizations.actions.xynergy.io_{kind}"] = yaml.dump(
            actions, sort_keys=False, width=1000
        )
    return data


# -- live objects in each state ----------------------------------------------------------------


@dataclass
class Live:
    """The objects built in each state: (kind, state) -> name, all in one namespace."""

    kube: Kube
    namespace: str
    names: dict[tuple[str, str], str] = field(default_factory=dict)

    def path(self, kind: str, name: str) -> str:
        return f"{API}/namespaces/{self.namespace}/{PLURALS[kind]}/{name}"

    def get(self, kind: str, state: str) -> dict[str, Any]:
        resp = self.kube.get(self.path(kind, self.names[kind, state]))
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def wait(self, kind: str, state: str, check: Callable[[dict[str, Any]], bool]) -> None:
        last: dict[str, Any] = {}

        def ok() -> bool:
            obj = self.get(kind, state)
            last.update(status=obj.get("status") or {})
            observed = last["status"].get("observedGeneration") == obj["metadata"]["generation"]
            return observed and check(last["status"])

        try:
            self.kube.wait_for(f"{kind} in state {state}", ok, timeout=120)
        except pytest.fail.Exception as exc:
            raise AssertionError(f"{exc}; last status: {last.get('status')}") from None


def cond(status: dict[str, Any], type_: str) -> str | None:
    found = [c["status"] for c in status.get("conditions") or [] if c["type"] == type_]
    return found[0] if found else None


def phase(value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s.get("phase") == value


def _create(live: Live, kind: str, body: dict[str, Any]) -> None:
    resp = live.kube.create(f"{API}/namespaces/{live.namespace}/{PLURALS[kind]}", body)
    assert resp.status_code == 201, resp.text


def build_services(live: Live) -> None:
    ns, kube = live.namespace, live.kube
    create_xs(kube, ns, "web")
    create_xs(kube, ns, "huge", resources={"memory": "1000Ei"})
    env = [{"name": "DB_PASSWORD", "secretKeyRef": {"name": "absent", "key": "password"}}]
    create_xs(kube, ns, "needs-secret", env=env)
    create_xs(kube, ns, "held", paused=True)
    kind = "XynergyService"
    live.names.update({(kind, "ready"): "web", (kind, "reconciling"): "huge",
                       (kind, "stalled"): "needs-secret", (kind, "paused"): "held"})  # fmt: skip
    live.wait(kind, "ready", lambda s: cond(s, "Ready") == "True")
    live.wait(kind, "reconciling", lambda s: cond(s, "Reconciling") == "True")
    live.wait(kind, "stalled", lambda s: cond(s, "Stalled") == "True")
    live.wait(kind, "paused", lambda s: cond(s, "Ready") is not None)


def _policy(name: str, target: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1", "kind": "ScalingPolicy", "metadata": {"name": name},
        "spec": {"targetRef": {"name": target}, "mode": "reactive", "interval": "3s",
                 "minInstances": 1, "maxInstances": 5,
                 "metric": {"source": "prometheus", "prometheusUrl": url, "query": "vector(3)",
                            "targetPerInstance": 1}, **spec},
    }  # fmt: skip


def build_policies(live: Live, prometheus_url: str) -> None:
    kind = "ScalingPolicy"
    create_xs(live.kube, live.namespace, "scaled")
    create_xs(live.kube, live.namespace, "unread")
    _create(live, kind, _policy("scales", "scaled", prometheus_url))
    _create(live, kind, _policy("orphan", "absent", prometheus_url))
    _create(live, kind, _policy("paused", "web", prometheus_url, paused=True))
    _create(live, kind, _policy("blind", "unread", "http://127.0.0.1:9"))
    live.names.update({(kind, "ready"): "scales", (kind, "stalled"): "orphan",
                       (kind, "paused"): "paused", (kind, "held"): "blind"})  # fmt: skip
    live.wait(kind, "ready", lambda s: cond(s, "Ready") == "True")
    live.wait(kind, "stalled", lambda s: cond(s, "Stalled") == "True")
    live.wait(kind, "paused", lambda s: cond(s, "Ready") == "True")
    live.wait(kind, "held", lambda s: cond(s, "Degraded") == "True")


def build_rollouts(live: Live) -> None:
    kind, ns, kube = "Rollout", live.namespace, live.kube
    for target in ("cr-paused", "cr-promoted", "cr-actions"):
        create_cloudrun_xs(kube, ns, target)
    image = "us-docker.pkg.dev/xynergy-test/apps/ai:2"
    paused = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
    create_rollout(kube, ns, "canary", target="cr-paused", image=image, strategy=paused)
    create_rollout(kube, ns, "actions", target="cr-actions", image=image, strategy=paused)
    create_rollout(kube, ns, "done", target="cr-promoted", image=image,
                   strategy={"canary": {"steps": [{"setWeight": 50}]}})  # fmt: skip
    create_rollout(kube, ns, "waiting", target="huge", image=image,
                   strategy={"immediate": {}})  # fmt: skip
    create_rollout(kube, ns, "no-target", target="absent", image=image,
                   strategy={"immediate": {}})  # fmt: skip
    live.names.update({(kind, "paused"): "canary", (kind, "promoted"): "done",
                       (kind, "pending"): "waiting", (kind, "stalled"): "no-target",
                       (kind, "actions"): "actions"})  # fmt: skip
    live.wait(kind, "paused", phase("Paused"))
    live.wait(kind, "actions", phase("Paused"))
    live.wait(kind, "promoted", phase("Promoted"))
    live.wait(kind, "pending", lambda s: cond(s, "Reconciling") == "True")
    live.wait(kind, "stalled", lambda s: cond(s, "Stalled") == "True")


def build_connections(live: Live, callback_url: str) -> None:
    kind = "OAuthConnection"
    apply_connection(live.kube, live.namespace, "pending", "slack", callback_url)
    apply_connection(live.kube, live.namespace, "linked", "slack", callback_url)
    apply_connection(live.kube, live.namespace, "relinked", "slack", callback_url)
    broken = {
        "apiVersion": "xynergy.io/v1alpha1", "kind": kind, "metadata": {"name": "broken"},
        "spec": {"provider": "slack", "clientSecretRef": {"name": "absent"},
                 "scopes": ["chat:write"], "redirectURL": callback_url, "tenant": "acme",
                 "tokenSecretName": "broken-tokens"},
    }  # fmt: skip
    _create(live, kind, broken)
    live.names.update({(kind, "pending"): "pending", (kind, "connected"): "linked",
                       (kind, "degraded"): "relinked", (kind, "stalled"): "broken"})  # fmt: skip
    live.wait(kind, "pending", phase("PendingAuthorization"))
    live.wait(kind, "connected", phase("PendingAuthorization"))
    live.wait(kind, "degraded", phase("PendingAuthorization"))
    live.wait(kind, "stalled", lambda s: cond(s, "Stalled") == "True")


async def connect(live: Live, gateway: httpx.AsyncClient, state: str) -> None:
    """A person approves at the (fake) provider; the browser lands on the gateway's callback."""
    url = live.get("OAuthConnection", state)["status"]["authorizationURL"]
    location = urlsplit(browser(url))
    token = make_jwt(tenant_id="acme", secret=SECRET)
    resp = await gateway.get(
        f"{location.path}?{location.query}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 200, resp.text
    live.wait("OAuthConnection", state, phase("Connected"))


def lose_user_token(live: Live) -> None:
    """Slack's user scopes added after authorizing: Connected for the bot token, Degraded
    UserReauthRequired with a URL to get the user token (as after a refused user refresh)."""
    kind = "OAuthConnection"
    patch = {"spec": {"userScopes": ["search:read"]}}
    merge_patch(live.kube, live.path(kind, live.names[kind, "degraded"]), patch)
    live.wait(kind, "degraded", lambda s: cond(s, "Degraded") == "True")


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[FakeCloudRun, FakeOAuth]]:
    with FakeCloudRun(operation_delay=0.1) as cloudrun, FakeOAuth(expires_in=3600) as oauth:
        yield cloudrun, oauth
        assert not cloudrun.crashes, cloudrun.crashes[0]


@pytest.fixture(scope="module")
def full_operator(
    cluster: Path,
    crds_installed: list[str],
    providers: tuple[FakeCloudRun, FakeOAuth],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("health-operator") / "operator.log"
    cloudrun, oauth = providers
    with operator_process(
        cluster, log, XYNERGY_CLOUDRUN_ENDPOINT=cloudrun.endpoint, **oauth_env(oauth)
    ) as op:
        yield op


@pytest.fixture(scope="module")
async def live(
    cluster: Path, kube: Kube, full_operator: Operator, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Live]:
    """Every kind in every state it can reach here, in one namespace (deleted afterwards)."""
    ns = f"health-{uuid.uuid4().hex[:8]}"
    assert kube.create("/api/v1/namespaces", {"metadata": {"name": ns}}).status_code == 201
    state = Live(kube, ns)
    prometheus = PrometheusServer(tmp_path_factory.mktemp("health-prometheus"))
    prometheus.start()
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("KUBECONFIG", str(cluster))  # the gateway's client (the callback's reads)
            await build_connections_via_gateway(state, tmp_path_factory.mktemp("health-redis"))
        build_services(state)
        build_policies(state, prometheus.url)
        build_rollouts(state)
        if os.environ.get("XYNERGY_CAPTURE_HEALTH"):
            capture(state)
        yield state
    finally:
        prometheus.stop()
        kube.delete(f"/api/v1/namespaces/{ns}")
        # finalizers (Cloud Run services) need this module's operator: let them run first
        kube.wait_for(
            f"namespace {ns} deleted",
            lambda: kube.get(f"/api/v1/namespaces/{ns}").status_code == 404,
            timeout=120,
        )


async def build_connections_via_gateway(live: Live, redis_dir: Path) -> None:
    """The OAuthConnections, one of them connected through the real gateway's callback."""
    async with run_redis(redis_dir) as redis:
        app = create_app(
            GatewaySettings(redis_url=redis.url),
            auth_settings=AuthSettings(jwt_secret=SECRET, firebase_enabled=False),  # type: ignore[arg-type]
            internal_settings=InternalIdentitySettings(signing_key="k" * 32),  # type: ignore[arg-type]
        )
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as gateway:
            build_connections(live, f"{url}/api/v2/oauth/slack/callback")
            await connect(live, gateway, "connected")
            await connect(live, gateway, "degraded")
    lose_user_token(live)


CAPTURED = {
    "XynergyService": ("ready", "reconciling", "stalled", "paused"),
    "ScalingPolicy": ("ready", "stalled", "paused", "held"),
    "Rollout": ("paused", "promoted", "pending", "stalled"),
    "OAuthConnection": ("pending", "connected", "degraded", "stalled"),
}


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].pop("managedFields", None)
    return obj


def capture(live: Live) -> None:
    """Write the live objects to tests/data/health/<Kind>/<state>.yaml, plus `unobserved`
    (a live object whose generation moved past observedGeneration, as right after an edit)."""
    for kind, states in CAPTURED.items():
        for state in states:
            write(DATA / kind / f"{state}.yaml", _clean(live.get(kind, state)))
        unobserved = _clean(live.get(kind, states[0]))
        unobserved["metadata"]["generation"] += 1
        write(DATA / kind / "unobserved.yaml", unobserved)


def write(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(obj, sort_keys=False))


def table_status(kind: str, state: str) -> str:
    table = load(DATA / kind / "health_test.yaml")
    case = next(c for c in table["tests"] if c["inputPath"] == f"{state}.yaml")
    status: str = case["healthStatus"]["status"]
    return status


@pytest.mark.parametrize(
    ("kind", "state"), [(k, s) for k, states in CAPTURED.items() for s in states]
)
def test_live_health_matches_the_table(live: Live, kind: str, state: str) -> None:
    assert health(kind, live.get(kind, state))["status"] == table_status(kind, state)


def _apply(live: Live, kind: str, action: str, state: str) -> None:
    """What Argo CD does with an action's result: patch the object with what changed."""
    before = live.get(kind, state)
    after = act(kind, action, before)
    patch = {
        "metadata": {"annotations": after["metadata"].get("annotations") or {}},
        "spec": {k: v for k, v in after["spec"].items() if before["spec"].get(k) != v},
    }
    merge_patch(live.kube, live.path(kind, live.names[kind, state]), patch)


def test_rollout_actions_move_the_live_rollout(live: Live) -> None:
    kind = "Rollout"
    assert discover(kind, live.get(kind, "actions")) == {
        "promote": False, "abort": False, "retry": True
    }  # fmt: skip
    _apply(live, kind, "abort", "actions")
    live.wait(kind, "actions", phase("Aborted"))
    aborted = live.get(kind, "actions")
    assert health(kind, aborted)["status"] == "Degraded"
    assert discover(kind, aborted) == {"promote": True, "abort": True, "retry": False}
    _apply(live, kind, "retry", "actions")
    live.wait(kind, "actions", phase("Paused"))
    _apply(live, kind, "promote", "actions")
    live.wait(kind, "actions", phase("Promoted"))
    assert health(kind, live.get(kind, "actions"))["status"] == "Healthy"


def test_resync_writes_the_request_time(live: Live) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for kind in ("XynergyService", "ScalingPolicy", "OAuthConnection"):
        _apply(live, kind, "resync", "stalled")
        stamp = live.get(kind, "stalled")["metadata"]["annotations"]["xynergy.io/resync-requested"]
        assert dt.datetime.fromisoformat(stamp) >= before
