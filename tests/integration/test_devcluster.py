"""The local control plane is a real Kubernetes: Deployments roll out on kwok nodes, the garbage
collector works, CEL validation is enforced, `xynergy dev up/down` cleans up after itself and
`xynergy dev restart` brings back one component as it was started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from kube_support import Kube
from test_devcluster_fakes import Dev, ai_answers, connect

from controllers.devcluster import ClusterError, ClusterState, DevCluster
from controllers.devcluster.processes import (
    ManagedProcess,
    Probe,
    free_port,
    http_ok,
    is_alive,
    port_in_use,
    spawn,
)

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    },
}


def test_deployment_becomes_available_and_gc_removes_pods(kube: Kube, namespace: str) -> None:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    assert kube.create(base, DEPLOYMENT).status_code == 201

    def available() -> bool:
        dep = kube.get(f"{base}/web").json()
        status = dep.get("status", {})
        conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return status.get("readyReplicas") == 3 and conds.get("Available") == "True"

    kube.wait_for("Deployment web Available with 3 ready replicas", available, timeout=90)

    rs = kube.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets").json()["items"]
    assert len(rs) == 1, "the controller-manager created one ReplicaSet"
    pods = kube.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector="app=web").json()
    assert len(pods["items"]) == 3
    for pod in pods["items"]:
        assert pod["spec"]["nodeName"].startswith("kwok-node-"), "the scheduler bound it"
        assert pod["status"]["phase"] == "Running"
        assert pod["status"].get("podIP"), "kwok gave it an IP"

    resp = kube.delete(f"{base}/web", propagationPolicy="Background")
    assert resp.status_code == 200

    def pods_gone() -> bool:
        left = kube.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector="app=web").json()
        return not left["items"]

    kube.wait_for("the garbage collector to delete the Pods", pods_gone, timeout=90)


CEL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.xynergy.io"},
    "spec": {
        "group": "test.xynergy.io",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "min": {"type": "integer"},
                                    "max": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.min <= self.max",
                                        "message": "min must be <= max",
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_cel_validation_is_enforced(kube: Kube, namespace: str) -> None:
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    resp = kube.create(crds, CEL_CRD)
    assert resp.status_code in (201, 409), resp.text

    def established() -> bool:
        got = kube.get(f"{crds}/widgets.test.xynergy.io").json()
        conds = (got.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    kube.wait_for("the Widget CRD to be Established", established)
    base = f"/apis/test.xynergy.io/v1/namespaces/{namespace}/widgets"

    def widget(name: str, lo: int, hi: int) -> dict[str, object]:
        return {
            "apiVersion": "test.xynergy.io/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"min": lo, "max": hi},
        }

    kube.wait_for("the Widget endpoint", lambda: kube.get(base).status_code == 200)
    ok = kube.create(base, widget("good", 1, 2))
    assert ok.status_code == 201, ok.text
    bad = kube.create(base, widget("bad", 3, 2))
    assert bad.status_code == 422
    assert "min must be <= max" in bad.json()["message"]


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controllers.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_dev_up_twice_then_down_leaves_nothing_running(tmp_path: Path, bindir: Path) -> None:
    env = dict(os.environ, XYNERGY_DEV_DIR=str(tmp_path / "dev"), PYTHONUNBUFFERED="1")
    env.pop("KUBECONFIG", None)
    up = _run("dev", "up", "--nodes", "1", env=env)
    assert up.returncode == 0, up.stderr
    assert "kubectl --kubeconfig" in up.stdout
    state = json.loads((tmp_path / "dev" / "state.json").read_text())
    procs = state["processes"]
    assert {p["name"] for p in procs} >= {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "operator",
        "redis-server",
        "firestore-emulator",
        "crm",
        "gateway",
        "prometheus",
        "slack",
        "gmail",
        "internal_ai",
        "ai",
        "marketing",
        "aso",
        "research",
        "analytics",
        "fakes",
    }
    assert all(is_alive(p["pid"], p["start"]) for p in procs)
    by_name = {p["name"]: p for p in procs}

    # a frontend's call: a dev token, through the gateway, to the CRM on the Firestore emulator
    gateway = next(
        line.split()[1] for line in up.stdout.splitlines() if line.startswith("gateway:")
    )
    token = _run("dev", "token", "--tenant", "acme", env=env)
    assert token.returncode == 0, token.stderr
    auth = {"Authorization": f"Bearer {token.stdout.strip()}"}
    created = httpx.post(
        f"{gateway}/api/v2/crm/contacts",
        json={"name": "Ada Lovelace", "email": "ada@example.com"},
        headers={**auth, "Idempotency-Key": "first"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    listed = httpx.get(f"{gateway}/api/v2/crm/contacts", headers=auth, timeout=30).json()
    assert [c["name"] for c in listed["items"]] == ["Ada Lovelace"]
    assert httpx.get(f"{gateway}/api/v2/crm/contacts", timeout=30).status_code == 401
    _check_platform_wiring(up.stdout, by_name, auth=auth, gateway=gateway, env=env)
    _check_fakes_wiring(up.stdout, auth=auth, gateway=gateway, env=env)

    again = _run("dev", "up", env=env)
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert json.loads((tmp_path / "dev" / "state.json").read_text()) == state

    status = _run("dev", "status", env=env)
    assert status.returncode == 0
    assert "kube-apiserver" in status.stdout

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    down = _run("dev", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert not any(is_alive(p["pid"], p["start"]) for p in procs)
    assert bystander.poll() is None, "down stopped a process dev up did not start"
    bystander.kill()
    bystander.wait()
    for port in state["ports"].values():
        assert not port_in_use(port), f"port {port} still in use"
    assert _run("dev", "status", env=env).returncode == 1


def _check_platform_wiring(
    out: str, procs: dict[str, Any], *, auth: dict[str, str], gateway: str, env: dict[str, str]
) -> None:
    """Prometheus scrapes the gateway and its traffic is labelled by upstream; the operator
    and analytics read that Prometheus; the gateway streams the dashboard's topics and routes
    its panels; the samples' Secrets exist."""
    prometheus = next(
        line.split()[1] for line in out.splitlines() if line.startswith("prometheus:")
    )
    assert _environ(procs["operator"]["pid"])["XYNERGY_SCALING_PROMETHEUS_URL"] == prometheus
    assert _environ(procs["analytics"]["pid"])["XYNERGY_ANALYTICS_PROMETHEUS_URL"] == prometheus
    topics = json.loads(_environ(procs["gateway"]["pid"])["XYNERGY_GATEWAY_STREAM_TOPICS"])
    assert {"platform-status", "anomaly-alerts"} <= set(topics)

    def crm_traffic_scraped() -> bool:
        query = 'xynergy_gateway_requests_total{service="crm",component="gateway"}'
        got = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10)
        return bool(got.json()["data"]["result"])

    _wait_for("Prometheus to scrape the gateway's CRM traffic", crm_traffic_scraped, timeout=60)
    panels = httpx.get(f"{gateway}/api/v1/dashboard/panels", headers=auth, timeout=30)
    assert panels.status_code == 200, panels.text
    kube = Kube.from_kubeconfig(Path(out.split("kubeconfig: ", 1)[1].split()[0]))
    for name in ("gateway-internal", "gateway-jwt", "slack-app"):
        assert kube.get(f"/api/v1/namespaces/default/secrets/{name}").status_code == 200, name
    kube.http.close()


def _check_fakes_wiring(
    out: str, *, auth: dict[str, str], gateway: str, env: dict[str, str]
) -> None:
    """The sample Slack connection connects at the fake provider (kubectl xynergy connect, the
    gateway's callback), the Slack service lists the fake workspace with its token, and the AI
    route answers with the fake model (test_devcluster_fakes.py has the long form)."""
    kube = Kube.from_kubeconfig(Path(out.split("kubeconfig: ", 1)[1].split()[0]))
    dev = Dev(env=env, gateway=gateway, auth=auth, kube=kube)
    assert connect(dev, "oauthconnection-slack.yaml", "slack")["phase"] == "Connected"
    channels = httpx.get(f"{gateway}/api/v2/slack/channels", headers=auth, timeout=30)
    assert channels.status_code == 200, channels.text
    assert "general" in [c["name"] for c in channels.json()["channels"]]
    choice = ai_answers(dev)["choices"][0]  # type: ignore[index]
    assert choice["message"]["content"] == "fake-openai says: hello dev"
    kube.http.close()


def test_port_taken_names_component_and_starts_nothing(tmp_path: Path, bindir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        dev = DevCluster(workdir=tmp_path, bindir=bindir, apiserver_port=port)
        with pytest.raises(ClusterError, match=rf"kube-apiserver: port {port} is already in use"):
            dev.start()
    assert not (tmp_path / "state.json").exists()


def test_component_exiting_during_start_stops_the_others(tmp_path: Path, bindir: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kwok"):
        (fake_bin / name).symlink_to(bindir / name)
    broken = fake_bin / "kube-scheduler"
    broken.write_text("#!/bin/sh\necho 'scheduler: cannot start' >&2\nexit 3\n")
    broken.chmod(0o755)
    dev = DevCluster(workdir=tmp_path / "work", bindir=fake_bin, nodes=1)
    with pytest.raises(ClusterError) as err:
        dev.start()
    message = str(err.value)
    assert "kube-scheduler exited with code 3" in message
    assert str(tmp_path / "work" / "logs" / "kube-scheduler.log") in message
    assert "cannot start" in message
    # everything it had started is gone
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(fake_bin) not in out


def test_missing_go_toolchain_is_one_clear_line(tmp_path: Path) -> None:
    script = Path(__file__).parents[2] / "hack" / "controlplane" / "build.sh"
    bash = shutil.which("bash")
    assert bash
    path = ":".join(d for d in ("/usr/bin", "/bin") if not (Path(d) / "go").exists())
    env = {"PATH": path, "XYNERGY_CACHE": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run([bash, str(script)], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 2
    assert "the Go toolchain is missing" in done.stderr


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _recorded(workdir: Path, name: str) -> dict[str, Any]:
    state = json.loads((workdir / "state.json").read_text())
    return next(p for p in state["processes"] if p["name"] == name)


def _web_state(workdir: Path, names: tuple[str, ...]) -> dict[str, ManagedProcess]:
    """A state.json with one small HTTP server per name (probe: GET / answers 200), each
    started with an environment change and a secret read from a file."""
    secret = workdir / "secret"
    secret.write_text("not-in-state\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1", WEB_MARK="recorded")
    env.pop("KUBECONFIG", None)
    state = ClusterState(workdir=workdir, server="", kubeconfig=workdir / "none", ports={})
    for name in names:
        port = free_port()
        state.processes.append(
            spawn(
                name=name,
                argv=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                log=workdir / "logs" / f"{name}.log",
                env=env,
                cwd=workdir,
                secret_files={"WEB_SECRET": secret},
                probe=Probe(url=f"http://127.0.0.1:{port}/", what="GET /"),
            )
        )
    state.save()
    return {p.name: p for p in state.processes}


def _wait_for(what: str, check: Any, *, timeout: float = 30.0) -> None:
    """Kube.wait_for without a cluster (it never uses its client)."""
    Kube.wait_for(None, what, check, timeout=timeout)  # type: ignore[arg-type]


def _wait_dead(proc: ManagedProcess) -> None:
    _wait_for(f"pid {proc.pid} to exit", lambda: not is_alive(proc.pid, proc.start))


def _binds(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def _url(proc: ManagedProcess) -> str:
    assert proc.launch is not None
    assert proc.launch.probe is not None
    return proc.launch.probe.url


def _answers(proc: ManagedProcess) -> bool:
    try:
        return http_ok(_url(proc))
    except httpx.HTTPError:
        return False


def test_restart_brings_back_exactly_the_component_killed_by_hand(tmp_path: Path) -> None:
    procs = _web_state(tmp_path, ("web", "other"))
    web, other = procs["web"], procs["other"]
    assert web.launch is not None
    _wait_for("both servers to answer", lambda: _answers(web) and _answers(other))
    env = dict(os.environ, XYNERGY_DEV_DIR=str(tmp_path))
    os.killpg(web.pid, signal.SIGKILL)  # by hand, as a user would
    _wait_dead(web)

    status = _run("dev", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert (
        f"web: not running (recorded pid {web.pid} exited); restart with `xynergy dev restart web`"
    ) in status.stdout

    restart = _run("dev", "restart", "web", env=env)
    assert restart.returncode == 0, restart.stderr
    new = _recorded(tmp_path, "web")
    assert new["pid"] != web.pid
    assert is_alive(new["pid"], new["start"])
    assert http_ok(_url(web)), "restart waited until it answered"
    assert _cmdline(new["pid"]) == list(web.launch.argv)
    started_with = _environ(new["pid"])
    assert started_with["WEB_MARK"] == "recorded"
    assert started_with["WEB_SECRET"] == "not-in-state"
    assert "KUBECONFIG" not in started_with
    assert Path(f"/proc/{new['pid']}/cwd").resolve() == tmp_path.resolve()
    assert web.log.read_text().count("Serving HTTP") == 2, "the same log, appended"
    assert "not-in-state" not in (tmp_path / "state.json").read_text()
    assert _recorded(tmp_path, "other")["pid"] == other.pid, "the other one untouched"
    assert is_alive(other.pid, other.start)
    status = _run("dev", "status", env=env)
    assert f"web                      pid {new['pid']:<8} running" in status.stdout

    # a running component: the recorded process (and only it) is stopped, then started again
    again = _run("dev", "restart", "web", env=env)
    assert again.returncode == 0, again.stderr
    assert not is_alive(new["pid"], new["start"])
    newer = _recorded(tmp_path, "web")
    assert newer["pid"] not in (new["pid"], web.pid)
    assert is_alive(newer["pid"], newer["start"])
    assert is_alive(other.pid, other.start)

    DevCluster(workdir=tmp_path, bindir=tmp_path).stop()  # what `dev down` does
    assert not is_alive(newer["pid"], newer["start"]), "down stops the restarted process"
    assert not is_alive(other.pid, other.start)


def test_restart_refuses_a_port_held_by_a_process_it_did_not_start(tmp_path: Path) -> None:
    web = _web_state(tmp_path, ("web",))["web"]
    _wait_for("the server to answer", lambda: _answers(web))
    port = int(_url(web).split(":")[2].rstrip("/"))
    os.killpg(web.pid, signal.SIGKILL)
    _wait_dead(web)
    env = dict(os.environ, XYNERGY_DEV_DIR=str(tmp_path))
    with socket.socket() as sock:  # someone started their own server on its port by hand
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # the killed server's socket closes a moment after its pid is gone (CI saw EADDRINUSE)
        _wait_for(f"port {port} to be released", lambda: _binds(sock, port))
        sock.listen(1)
        restart = _run("dev", "restart", "web", env=env)
    assert restart.returncode == 1
    assert f"web: port {port} is in use by a process `dev up` did not start" in restart.stderr
    assert _recorded(tmp_path, "web")["pid"] == web.pid, "nothing was started or recorded"


def _token_call(env: dict[str, str], gateway: str) -> httpx.Response:
    token = _run("dev", "token", "--tenant", "acme", env=env)
    assert token.returncode == 0, token.stderr
    auth = {"Authorization": f"Bearer {token.stdout.strip()}"}
    return httpx.get(f"{gateway}/api/v2/crm/contacts", headers=auth, timeout=30)


def _restart(
    name: str, env: dict[str, str], workdir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`dev restart name`: the recorded process before and after, checked to differ."""
    old = _recorded(workdir, name)
    done = _run("dev", "restart", name, env=env)
    assert done.returncode == 0, done.stderr
    new = _recorded(workdir, name)
    assert new["pid"] != old["pid"]
    assert is_alive(new["pid"], new["start"])
    assert not is_alive(old["pid"], old["start"])
    status = _run("dev", "status", env=env)
    assert f"{name:<24} pid {new['pid']:<8} running" in status.stdout


def test_dev_restart_brings_back_a_component_killed_by_hand(tmp_path: Path, bindir: Path) -> None:
    workdir = tmp_path / "dev"
    env = dict(os.environ, XYNERGY_DEV_DIR=str(workdir), PYTHONUNBUFFERED="1")
    env.pop("KUBECONFIG", None)
    up = _run("dev", "up", "--nodes", "1", env=env)
    assert up.returncode == 0, up.stderr
    started = json.loads((workdir / "state.json").read_text())["processes"]
    try:
        gateway = next(
            line.split()[1] for line in up.stdout.splitlines() if line.startswith("gateway:")
        )
        crm = _recorded(workdir, "crm")
        os.killpg(crm["pid"], signal.SIGKILL)
        _wait_for("the CRM to exit", lambda: not is_alive(crm["pid"], crm["start"]))
        status = _run("dev", "status", env=env)
        assert (
            f"crm: not running (recorded pid {crm['pid']} exited); "
            "restart with `xynergy dev restart crm`"
        ) in status.stdout

        _restart("crm", env, workdir)
        assert _token_call(env, gateway).status_code == 200, "the gateway reaches the new CRM"
        # a running one, started with a secret from a file: tokens still verify after
        _restart("gateway", env, workdir)
        assert _token_call(env, gateway).status_code == 200
        # a control-plane component whose probe is https with its own certificate
        _restart("kube-scheduler", env, workdir)
        final = json.loads((workdir / "state.json").read_text())["processes"]
    finally:
        down = _run("dev", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert len(final) == len(started)
    assert not any(is_alive(p["pid"], p["start"]) for p in final), "down stops restarted ones"
