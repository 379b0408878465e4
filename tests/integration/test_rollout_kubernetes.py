"""Rollout on the Kubernetes backend, end to end with real processes: the operator (its own
process) makes the new revision's Deployment + Service in a real cluster (kwok Pods) and
writes the weights into the Rollout's status; the real gateway (in a thread, its routes from
the cluster) sends each request to the stable or canary upstream by weight; two small real
HTTP upstreams stand in for the kwok Pods (the canary can inject errors or latency); a load
generator keeps requests flowing; a real Prometheus scrapes the gateway's per-revision
metrics (5xx and all requests counted per step, judged as a proportion, and the mean latency of
each step by revision), which the analysis reads.

A bad canary is rolled back within 2 analysis intervals (and the gateway's route is plain
again, the canary scaled to zero); a healthy one is promoted through every step (the target
then runs the new image and the canary's children are gone); one too small to judge is
extended (weight raised one step) and paused, never promoted."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from gateway.conftest import (
    FIREBASE_PROJECT,
    INTERNAL_KEY,
    JWT_SECRET,
    free_port,
    make_jwt,
    run_redis,
    serve,
)
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig
from prometheus import PrometheusServer
from test_rollout_support import (
    Operator,
    create_rollout,
    get_rollout,
    operator_process,
    wait_rollout,
)
from test_xynergyservice import create_xs, deployment, get_xs, merge_patch, wait_ready
from test_xynergyservice_cloudrun import unique

from services.common.settings import AuthSettings, InternalIdentitySettings
from services.gateway.app import Gateway, create_app
from services.gateway.routes_cluster import ClusterRouteSource
from services.gateway.settings import GatewaySettings

INTERVAL = 5.0
RATE = 40.0  # requests per second through the gateway
_CANARY_HOST = re.compile(r"-ro-[0-9a-f]{8}$")
STEP = 1  # s, the operator's query step, as the scrape interval: the latency needs the points
_COUNTER = 'xynergy_gateway_revision_requests_total{revision="{{revision}}"%s}'


def counted(selector: str) -> str:
    """Requests counted in each step: the counter now less the counter a step ago (none yet:
    0). Steps of {{step}} tile the time, so each request is counted once, exactly; increase()
    over [{{step}}] would need at least two scrapes per window (a 2 s step), and extrapolates
    the one scrape interval it sees to the window (doubling the counts' noise)."""
    return f"sum({selector}) - (sum({selector} offset {{{{step}}}}) or vector(0))"


# the 5xx and all requests of each step, judged as a proportion
ERRORS = counted(_COUNTER % ',status=~"5.."')
REQUESTS = counted(_COUNTER % "")
# the mean latency of the requests of each step (the duration histogram's sum over its count,
# both counted like the errors): the steps tile the time, so the points are independent, as the
# U test assumes; a step without a canary request has no point (0/0, dropped). A rate over a
# 5 s window at 1 s steps made each point share 4/5 of its requests with the next: at a 3 %
# canary (~12 requests a look) the overlapping points of a few slightly slow requests all sat
# above the stable's, a "significant" 6.7 % regression that rolled back an unchanged canary
# (once, on a busy machine)
_DURATION = 'xynergy_gateway_revision_request_duration_seconds_%s{revision="{{revision}}"}'
LATENCY = f"({counted(_DURATION % 'sum')}) / ({counted(_DURATION % 'count')})"


class Upstream:
    """One stand-in process (tests/integration/test_rollout_upstream.py)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = Path(__file__).with_name("test_rollout_upstream.py")
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.port)])
        wait_until("the stand-in upstream answering", self._answers, timeout=20)

    def _answers(self) -> bool:
        try:
            self.served()
        except httpx.TransportError:
            return False
        return True

    def behave(self, *, errors: float = 0.0, slow: float = 1.0) -> None:
        httpx.post(self.url, json={"errors": errors, "slow": slow}, timeout=5).raise_for_status()

    def served(self) -> int:
        return int(httpx.get(f"{self.url}/__count", timeout=5).json()["served"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class GatewayThread:
    """The real gateway app on its own event loop (a thread), routes from the cluster; the
    stand-ins answer for the in-cluster Service URLs (`resolve`: no cluster DNS here)."""

    def __init__(self, cluster: Path, workdir: Path, resolve: Callable[[str], str]) -> None:
        self.cluster, self.workdir, self.resolve = cluster, workdir, resolve
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app: Gateway | None = None
        self.up = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped: asyncio.Event | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.loop, self.stopped = asyncio.get_running_loop(), asyncio.Event()
        client = AsyncClient(config=KubeConfig.from_file(self.cluster))
        async with run_redis(self.workdir) as redis:
            settings = GatewaySettings(
                redis_url=redis.url,
                cache_enabled=False,
                rate_limit_per_minute=10_000_000,
                tenant_rate_limit_per_minute=0,
                ip_rate_limit_per_minute=0,
                retries=0,
                log_level="WARNING",
            )
            self.app = create_app(
                settings,
                auth_settings=AuthSettings(
                    jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
                    firebase_project_id=FIREBASE_PROJECT,
                ),
                internal_settings=InternalIdentitySettings(signing_key=INTERNAL_KEY),  # type: ignore[arg-type]
                route_source=ClusterRouteSource(client, resolve=self.resolve),
            )
            async with serve(self.app, self.port):
                self.up.set()
                await self.stopped.wait()
        await client.close()

    def start(self) -> GatewayThread:
        self.thread.start()
        assert self.up.wait(60), "the gateway did not start"
        return self

    def stop(self) -> None:
        if self.loop is not None and self.stopped is not None:
            self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(timeout=30)

    def upstreams(self, prefix: str) -> list[tuple[str, str]]:
        """(upstream, revision) the gateway's table holds for `prefix` now."""
        assert self.app is not None
        route = next((r for r in self.app.routes.table.routes if r.prefix == prefix), None)
        if route is None:
            return []
        if not route.upstreams:
            return [(route.upstream, route.revision)]
        return [(u.url, u.revision) for u in route.upstreams]


class Load:
    """Requests at about RATE per second to `prefix`, from a few threads."""

    def __init__(self, url: str) -> None:
        self.url, self.prefix = url, ""
        self.stop = threading.Event()
        self.token = make_jwt(user_id="load")
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(4)]

    def _run(self) -> None:
        pause = len(self.threads) / RATE
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while not self.stop.is_set():
                started = time.monotonic()
                if self.prefix:
                    headers = {"Authorization": f"Bearer {self.token}"}
                    with contextlib.suppress(httpx.HTTPError):
                        http.get(f"{self.prefix}/items", headers=headers)
                self.stop.wait(max(0.0, pause - (time.monotonic() - started)))


class Stack:
    def __init__(self, gateway: GatewayThread, load: Load, canary: Upstream, stable: Upstream):
        self.gateway, self.load, self.canary, self.stable = gateway, load, canary, stable


@pytest.fixture(scope="module")
def stack(
    cluster: Path, crds_installed: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, str]]:
    stable, canary = Upstream(), Upstream()

    def resolve(url: str) -> str:
        host = (urlsplit(url).hostname or "").split(".")[0]
        return canary.url if _CANARY_HOST.search(host) else stable.url

    workdir = tmp_path_factory.mktemp("rollout-k8s")
    gateway = GatewayThread(cluster, workdir, resolve).start()
    prom = PrometheusServer(workdir / "prom", targets=[f"127.0.0.1:{gateway.port}"])
    prom.start()
    load = Load(gateway.url)
    for thread in load.threads:
        thread.start()
    try:
        yield Stack(gateway, load, canary, stable), prom.url
    finally:
        load.stop.set()
        prom.stop()
        gateway.stop()
        stable.stop()
        canary.stop()


@pytest.fixture(scope="module")
def k8s_operator(
    cluster: Path, stack: tuple[Stack, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("rollout-k8s-op") / "operator.log"
    env = {
        "XYNERGY_ROLLOUT_PROMETHEUS_URL": stack[1],
        "XYNERGY_ROLLOUT_QUERY_STEP_SECONDS": str(STEP),
    }
    with operator_process(cluster, log, **env) as op:
        yield op


def start(
    kube: Kube, ns: str, stack: Stack, *, steps: list[dict[str, Any]], tolerance: float
) -> tuple[str, str]:
    """A routed XynergyService with load on it, then a Rollout of a new image."""
    svc = unique("ai")
    prefix = f"/api/v2/{svc}"
    create_xs(kube, ns, svc, backend="kubernetes", port=8080, routes=[{"prefix": prefix}])
    wait_ready(kube, ns, svc)
    stack.load.prefix = prefix
    analysis = {
        "interval": f"{INTERVAL:.0f}s",
        "minimumSamples": 3,
        "metrics": [
            # 10 pp: what the ~60 canary requests of a look at 20 % can show (the bad canary
            # here is 20 pp worse); 2 pp would need ~300 (the step extended, then paused)
            {"name": "errors", "method": "proportion", "query": ERRORS, "denominator": REQUESTS,
             "tolerancePercent": 0, "absoluteTolerance": 0.01, "minimumDetectable": 0.1,
             "critical": True},
            {"name": "latency", "query": LATENCY, "tolerancePercent": tolerance,
             "critical": True},
        ],
    }  # fmt: skip
    create_rollout(kube, ns, "ro", target=svc, image="reg.example/app:2",
                   strategy={"canary": {"steps": steps}}, analysis=analysis)  # fmt: skip
    return svc, prefix


def wait_phase(kube: Kube, ns: str, phase: str, timeout: float) -> dict[str, Any]:
    """The Rollout's status once in `phase`; on a timeout, the status it had (to see why)."""
    try:
        return wait_rollout(kube, ns, "ro", phase, lambda st: st.get("phase") == phase,
                            timeout=timeout)["status"]  # fmt: skip
    except BaseException as exc:
        raise AssertionError(f"{exc}: {get_rollout(kube, ns, 'ro').get('status')}") from None


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_bad_canary_rolled_back_within_two_intervals(
    kube: Kube, k8s_operator: Operator, namespace: str, stack: tuple[Stack, str]
) -> None:
    s = stack[0]
    s.canary.behave(errors=0.2, slow=2.0)
    steps = [{"setWeight": 20}, {"analysis": {"duration": "10s"}}, {"setWeight": 50}]
    _svc, prefix = start(kube, namespace, s, steps=steps, tolerance=10)
    canary = wait_rollout(kube, namespace, "ro", "canary taking traffic",
                          lambda st: (st.get("canaryWeight") or 0) > 0)["status"]  # fmt: skip
    name = canary["canaryRevision"]
    wait_until("weighted route", lambda: len(s.gateway.upstreams(prefix)) == 2)
    assert {rev for _, rev in s.gateway.upstreams(prefix)} == {name, canary["stableRevision"]}
    status = wait_phase(kube, namespace, "RolledBack", 90)
    runs = status["analysisRuns"]
    assert runs[-1]["verdict"] == "Failed"
    assert runs[-1]["look"] <= 2, runs
    errors = next(line for line in runs[-1]["evidence"] if line.startswith("errors:"))
    assert errors.startswith("errors: High proportion (Fisher)"), errors
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "AnalysisFailed"
    assert not status.get("traffic")
    wait_until("plain route", lambda: s.gateway.upstreams(prefix) == [(s.stable.url, "")])
    dep = deployment(kube, namespace, name)
    assert dep is not None
    assert dep["spec"]["replicas"] == 0
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "Rollout"


def test_healthy_canary_promoted_through_every_step(
    kube: Kube, k8s_operator: Operator, namespace: str, stack: tuple[Stack, str]
) -> None:
    s = stack[0]
    s.canary.behave()
    steps = [
        {"setWeight": 20},
        {"analysis": {"duration": "15s"}},
        {"setWeight": 50},
        {"analysis": {"duration": "15s"}},
    ]
    # 40 %: a tolerance the judge can show (MDE below it) within the step on a busy machine
    svc, prefix = start(kube, namespace, s, steps=steps, tolerance=40)
    status = wait_phase(kube, namespace, "Promoted", 150)
    assert {run["stepIndex"] for run in status["analysisRuns"]} == {1, 3}, status["analysisRuns"]
    assert status["analysisRuns"][-1]["verdict"] == "Successful"
    name = status["canaryRevision"]
    # the target runs the new image, serves again, and the canary's children go
    wait_rollout(kube, namespace, "ro", "settled on the target",
                 lambda st: st.get("traffic") == [], timeout=90)  # fmt: skip
    assert get_xs(kube, namespace, svc)["spec"]["image"] == "reg.example/app:2"
    wait_until("plain route", lambda: s.gateway.upstreams(prefix) == [(s.stable.url, "")])
    wait_until("canary removed", lambda: deployment(kube, namespace, name) is None)


def test_canary_too_small_to_judge_is_extended_not_promoted(
    kube: Kube, k8s_operator: Operator, namespace: str, stack: tuple[Stack, str]
) -> None:
    s = stack[0]
    s.canary.behave()
    steps = [
        {"setWeight": 3},
        {"analysis": {"duration": "10s"}},
        {"setWeight": 6},
        {"analysis": {"duration": "10s"}},
    ]
    start(kube, namespace, s, steps=steps, tolerance=0.5)
    status = wait_phase(kube, namespace, "Paused", 120)
    assert status["currentStepIndex"] == 1
    assert status["canaryWeight"] == 6, "extended with the weight raised one step"
    assert status["extendedLooks"] >= 1
    assert all(run["verdict"] != "Successful" for run in status["analysisRuns"])
    # the errors judged on counts (with minimumDetectable 0.1 the big stable lets even ~40
    # canary requests pass them; the latency is what is too small to judge here)
    errors = next(line for line in status["analysisRuns"][-1]["evidence"] if "errors:" in line)
    assert "proportion (Fisher)" in errors, errors
    assert errors.endswith("trials") or "trials [" in errors, errors
    reasons = [c["reason"] for c in status["conditions"] if c["type"] == "Reconciling"]
    assert reasons == ["AnalysisUnderpowered"]


def _config_hash(kube: Kube, ns: str, name: str) -> str | None:
    dep = deployment(kube, ns, name) or {}
    meta = ((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return (meta.get("annotations") or {}).get("xynergy.io/config-hash")


def _revision_pods(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    selector = f"xynergy.io/rollout-revision={name}"
    pods = kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector).json()["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_canary_pods_carry_the_config_hash_and_roll_on_a_secret_rotation(
    kube: Kube, k8s_operator: Operator, namespace: str
) -> None:
    secret = {"metadata": {"name": "db"}, "stringData": {"password": "first-value-0001"}}
    assert kube.create(f"/api/v1/namespaces/{namespace}/secrets", secret).status_code == 201
    svc = unique("ai")
    env = [{"name": "DB_PASSWORD", "secretKeyRef": {"name": "db", "key": "password"}}]
    create_xs(kube, namespace, svc, backend="kubernetes", port=8080, env=env)
    wait_ready(kube, namespace, svc)
    create_rollout(kube, namespace, "ro", target=svc, image="reg.example/app:2",
                   strategy={"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}})  # fmt: skip
    name = wait_phase(kube, namespace, "Paused", 60)["canaryRevision"]
    stable_hash = _config_hash(kube, namespace, svc)
    assert stable_hash is not None
    assert _config_hash(kube, namespace, name) == stable_hash
    # the new revision's Pods (made by its ReplicaSet) are told its name as K_REVISION
    wait_until("the new revision's Pods", lambda: bool(_revision_pods(kube, namespace, name)))
    for pod in _revision_pods(kube, namespace, name):
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        path = env["K_REVISION"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert path == "metadata.annotations['xynergy.io/revision']"
        assert pod["metadata"]["annotations"]["xynergy.io/revision"] == name

    rotated = base64.b64encode(b"second-value-0002").decode()
    merge_patch(kube, f"/api/v1/namespaces/{namespace}/secrets/db", {"data": {"password": rotated}})
    wait_until("the target's Pods rolled",
               lambda: _config_hash(kube, namespace, svc) not in (None, stable_hash))  # fmt: skip
    new_hash = _config_hash(kube, namespace, svc)
    wait_until("the canary's Pods rolled with the same hash",
               lambda: _config_hash(kube, namespace, name) == new_hash)  # fmt: skip
    status = get_rollout(kube, namespace, "ro")["status"]
    assert status["canaryRevision"] == name, "a rotation is not a new revision"
    assert status["phase"] == "Paused"
