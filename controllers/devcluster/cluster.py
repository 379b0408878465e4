"""A local Kubernetes control plane from upstream binaries: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok (fake Nodes that run Pods).

Used by `xynergy dev up` and by the pytest `cluster` fixture. Everything lives in one work dir:
`pki/` (CA, certs, keys), `kubeconfig/` (one per identity; `admin.kubeconfig` is the user's),
`logs/<component>.log`, `etcd-data/`, and `state.json` (ports, PIDs and how each process was
started) which `dev down`, `dev status` and `dev restart` read from another process. state.json
is replaced atomically (a temp file renamed over it), so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from controllers.devcluster.pki import ClientCert, Pki, generate_pki
from controllers.devcluster.processes import (
    ClusterError,
    ManagedProcess,
    Probe,
    free_port,
    is_alive,
    port_in_use,
    probe_ok,
    spawn,
    stop_process,
    tail,
)

__all__ = ["ClusterError", "ClusterState", "DevCluster", "Progress", "UnknownComponentError"]

Progress = Callable[[str], None]

STAGES_FILE = Path(__file__).with_name("kwok-stages.yaml")
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
_IDENTITIES: dict[str, tuple[str, str | None]] = {
    "admin": ("xynergy-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    "kwok": ("xynergy-kwok", "system:masters"),
    "operator": ("xynergy-operator", "system:masters"),
}
# Metadata-level audit of every write, so tests and benches can count who wrote what, and of
# list/watch requests on Deployments, so a test can see what a controller asks the apiserver
# to stream (the request URI carries its selectors).
_AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: Metadata
  verbs: [list, watch]
  resources: [{group: apps, resources: [deployments]}]
- level: None
"""


class UnknownComponentError(ClusterError):
    """A component name that state.json does not record."""


@dataclass
class ClusterState:
    """What state.json records about a running cluster."""

    workdir: Path
    server: str
    kubeconfig: Path
    ports: dict[str, int]
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def operator_kubeconfig(self) -> Path:
        """Kubeconfig of the operator's own identity (user xynergy-operator)."""
        return self.kubeconfig.with_name("operator.kubeconfig")

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log of write requests (JSON lines)."""
        return self.workdir / "logs" / "audit.log"

    def to_json(self) -> str:
        return json.dumps(
            {
                "server": self.server,
                "kubeconfig": str(self.kubeconfig),
                "ports": self.ports,
                "processes": [p.to_dict() for p in self.processes],
            },
            indent=2,
        )

    def save(self) -> None:
        """Write state.json atomically: a temp file in the same folder renamed over it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.workdir, prefix=".state.", suffix=".json")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(self.to_json())
            os.replace(tmp, self.workdir / "state.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, workdir: Path) -> ClusterState | None:
        path = workdir / "state.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(
            workdir=workdir,
            server=raw["server"],
            kubeconfig=Path(raw["kubeconfig"]),
            ports={k: int(v) for k, v in raw["ports"].items()},
            processes=[ManagedProcess.from_dict(p) for p in raw["processes"]],
        )

    def find(self, name: str) -> ManagedProcess:
        """The recorded process called `name`; UnknownComponentError lists the known ones."""
        for proc in self.processes:
            if proc.name == name:
                return proc
        known = ", ".join(p.name for p in self.processes) or "none"
        raise UnknownComponentError(
            f"unknown component {name!r} in {self.workdir / 'state.json'}; known: {known}"
        )

    def replace(self, proc: ManagedProcess) -> None:
        """Record `proc` in place of the process of the same name (same position)."""
        self.processes = [proc if p.name == proc.name else p for p in self.processes]

    def running(self) -> dict[str, bool]:
        """Component name -> whether its process is alive."""
        return {p.name: is_alive(p.pid, p.start) for p in self.processes}


def _write_kubeconfig(path: Path, *, server: str, ca: Path, client: ClientCert, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "xynergy-dev", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
            }
        ],
        "contexts": [{"name": "xynergy-dev", "context": {"cluster": "xynergy-dev", "user": user}}],
        "current-context": "xynergy-dev",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


class DevCluster:
    """Start and stop one local control plane in `workdir` from binaries in `bindir`."""

    def __init__(
        self,
        *,
        workdir: Path,
        bindir: Path,
        nodes: int = 2,
        apiserver_port: int | None = None,
        fsync: bool = False,
        start_timeout: float = 90.0,
    ) -> None:
        self.workdir = workdir.resolve()
        self.bindir = bindir
        self.nodes = nodes
        self.apiserver_port = apiserver_port
        self.fsync = fsync
        self.start_timeout = start_timeout
        self.logs = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig" / "admin.kubeconfig"
        self.state: ClusterState | None = None

    # -- public API -------------------------------------------------------------------------------

    def start(self, progress: Progress = lambda _msg: None) -> ClusterState:
        """Start every component and wait until the cluster can run Pods.

        On any failure, stops what it had already started and raises ClusterError.
        """
        existing = ClusterState.load(self.workdir)
        if existing and any(existing.running().values()):
            raise ClusterError(
                f"a cluster is already running from {self.workdir} (server {existing.server}); "
                "run `xynergy dev down` first"
            )
        self._prepare_workdir()
        started = time.monotonic()
        try:
            self.state = self._start_components(progress)
            progress(f"cluster ready in {time.monotonic() - started:.1f}s")
            return self.state
        except BaseException:
            self.stop()
            raise

    def add_process(
        self,
        *,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        secret_files: dict[str, Path] | None = None,
        probe: Probe | None = None,
    ) -> ManagedProcess:
        """Start another process (e.g. the operator) that `stop()` will stop with the cluster
        (`spawn` says what the arguments mean)."""
        if self.state is None:
            raise ClusterError(f"{name}: the cluster is not started")
        proc = spawn(
            name=name,
            argv=argv,
            log=self.logs / f"{name}.log",
            env=env,
            secret_files=secret_files,
            probe=probe,
        )
        self.state.processes.append(proc)
        self._save()
        return proc

    def stop(self) -> None:
        """Stop everything this cluster started, newest first; keeps logs, drops etcd data.

        state.json wins over what this object remembers: `dev restart` may have replaced a
        process from another command since."""
        state = self._current_state()
        if state is not None:
            for proc in reversed(state.processes):
                stop_process(proc)
        (self.workdir / "state.json").unlink(missing_ok=True)
        shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)
        self.state = None

    def _current_state(self) -> ClusterState | None:
        """state.json, with this object's own handles on the processes it still records (so
        the ones this process started are reaped)."""
        disk = ClusterState.load(self.workdir)
        if disk is None or self.state is None:
            return disk or self.state
        mine = {(p.pid, p.start): p for p in self.state.processes}
        disk.processes = [mine.get((p.pid, p.start), p) for p in disk.processes]
        return disk

    # -- steps -------------------------------------------------------------------------------------

    def _prepare_workdir(self) -> None:
        for sub in ("pki", "kubeconfig", "etcd-data"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for old in self.logs.glob("*.log"):
            old.unlink()

    def _binary(self, name: str) -> str:
        path = self.bindir / name
        if not os.access(path, os.X_OK):
            raise ClusterError(
                f"{name}: binary missing at {path}; build it with hack/controlplane/build.sh"
            )
        return str(path)

    def _pick_ports(self) -> dict[str, int]:
        ports = {
            "etcd": free_port(),
            "etcd-peer": free_port(),
            "kube-apiserver": self.apiserver_port or free_port(),
            "kube-controller-manager": free_port(),
            "kube-scheduler": free_port(),
            "kwok": free_port(),
        }
        for component, port in ports.items():
            if port_in_use(port):
                name = component.removesuffix("-peer")
                raise ClusterError(
                    f"{name}: port {port} is already in use; log: {self.logs / (name + '.log')}"
                )
        return ports

    def _start_components(self, progress: Progress) -> ClusterState:
        bins = {
            n: self._binary(n)
            for n in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
        }
        progress("generating certificates and keys")
        pki = generate_pki(directory=self.workdir / "pki", clients=_IDENTITIES)
        ports = self._pick_ports()
        server = f"https://127.0.0.1:{ports['kube-apiserver']}"
        kubeconfigs = {
            stem: _write_kubeconfig(
                self.workdir / "kubeconfig" / f"{stem}.kubeconfig",
                server=server,
                ca=pki.ca_cert,
                client=client,
                user=stem,
            )
            for stem, client in pki.clients.items()
        }
        state = ClusterState(
            workdir=self.workdir, server=server, kubeconfig=kubeconfigs["admin"], ports=ports
        )
        self.state = state

        progress(f"starting etcd on 127.0.0.1:{ports['etcd']}")
        etcd = Probe(url=f"http://127.0.0.1:{ports['etcd']}/health", what="etcd /health")
        self._spawn("etcd", self._etcd_argv(bins["etcd"], ports), etcd)
        self._wait("etcd", lambda: probe_ok(etcd), what=etcd.what)

        progress(f"starting kube-apiserver on {server}")
        admin = pki.clients["admin"]
        apiserver = Probe(
            url=f"{server}/readyz",
            what="kube-apiserver /readyz",
            ca=pki.ca_cert,
            cert=admin.cert,
            key=admin.key,
        )
        self._spawn(
            "kube-apiserver", self._apiserver_argv(bins["kube-apiserver"], pki, ports), apiserver
        )
        self._wait("kube-apiserver", lambda: probe_ok(apiserver), what=apiserver.what)
        ctx = _client_ssl(pki.ca_cert, admin)

        progress("starting kube-controller-manager, kube-scheduler and kwok")
        self._spawn(
            "kube-controller-manager",
            self._kcm_argv(bins["kube-controller-manager"], pki, kubeconfigs, ports),
            _self_signed_healthz(ports["kube-controller-manager"]),
        )
        self._spawn(
            "kube-scheduler",
            [
                bins["kube-scheduler"],
                f"--kubeconfig={kubeconfigs['scheduler']}",
                f"--authentication-kubeconfig={kubeconfigs['scheduler']}",
                f"--authorization-kubeconfig={kubeconfigs['scheduler']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['kube-scheduler']}",
                "--leader-elect=false",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
            _self_signed_healthz(ports["kube-scheduler"]),
        )
        self._spawn(
            "kwok",
            [
                bins["kwok"],
                f"--kubeconfig={kubeconfigs['kwok']}",
                f"--config={STAGES_FILE}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector="
                f"{KWOK_NODE_ANNOTATION[0]}={KWOK_NODE_ANNOTATION[1]}",
                "--node-ip=127.0.0.1",
                "--cidr=10.244.0.0/16",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{ports['kwok']}",
            ],
            Probe(url=f"http://127.0.0.1:{ports['kwok']}/healthz", what="kwok /healthz"),
        )

        progress(f"registering {self.nodes} kwok node(s)")
        api = _Api(server, ctx)
        try:
            for i in range(self.nodes):
                api.create_node(f"kwok-node-{i}")
            self._wait(
                "kube-controller-manager",
                lambda: api.exists("/api/v1/namespaces/default/serviceaccounts/default"),
                what="the default ServiceAccount",
            )
            self._wait("kwok", lambda: api.ready_nodes() >= self.nodes, what="Ready kwok nodes")
        finally:
            api.close()
        return state

    # -- argv --------------------------------------------------------------------------------------

    def _etcd_argv(self, binary: str, ports: dict[str, int]) -> list[str]:
        client = f"http://127.0.0.1:{ports['etcd']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        argv = [
            binary,
            "--name=default",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--log-level=warn",
        ]
        if not self.fsync:
            argv.append("--unsafe-no-fsync")
        return argv

    def _apiserver_argv(self, binary: str, pki: Pki, ports: dict[str, int]) -> list[str]:
        policy = self.workdir / "pki" / "audit-policy.yaml"
        policy.write_text(_AUDIT_POLICY)
        return [
            binary,
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['kube-apiserver']}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/16",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
            "DefaultStorageClass,ResourceQuota,MutatingAdmissionWebhook,"
            "ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.logs / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-mode=batch",
            "--audit-log-batch-max-wait=1s",
            "--audit-log-maxsize=200",
        ]

    def _kcm_argv(
        self, binary: str, pki: Pki, kubeconfigs: dict[str, Path], ports: dict[str, int]
    ) -> list[str]:
        kcfg = kubeconfigs["controller-manager"]
        return [
            binary,
            f"--kubeconfig={kcfg}",
            f"--authentication-kubeconfig={kcfg}",
            f"--authorization-kubeconfig={kcfg}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-controller-manager']}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--root-ca-file={pki.ca_cert}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--controllers=*,-node-ipam-controller",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--concurrent-deployment-syncs=20",
            "--concurrent-replicaset-syncs=20",
            "--concurrent-gc-syncs=40",
        ]

    # -- helpers -----------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], probe: Probe) -> None:
        """Start a component; `probe` is how `dev restart` tells it is healthy again (at first
        start the cluster-level waits in `_start_components` say more)."""
        assert self.state is not None
        proc = spawn(name=name, argv=argv, log=self.logs / f"{name}.log", probe=probe)
        self.state.processes.append(proc)
        self._save()

    def _save(self) -> None:
        assert self.state is not None
        self.state.save()

    def _check_alive(self) -> None:
        assert self.state is not None
        for proc in self.state.processes:
            code = proc.exit_code()
            if code is not None:
                last = tail(proc.log, 3).replace("\n", " | ")
                raise ClusterError(
                    f"{proc.name} exited with code {code} during start; log: {proc.log}"
                    + (f" (last lines: {last})" if last else "")
                )

    def _wait(self, component: str, ready: Callable[[], bool], *, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if ready():
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise ClusterError(
            f"{component}: timed out after {self.start_timeout:.0f}s waiting for {what}; "
            f"log: {self.logs / (component + '.log')}"
        )


def _self_signed_healthz(port: int) -> Probe:
    """controller-manager and scheduler serve /healthz to anyone, with a certificate they sign
    themselves (no --tls-cert-file), so it cannot be verified."""
    return Probe(url=f"https://127.0.0.1:{port}/healthz", what="/healthz", verify=False)


def _client_ssl(ca: Path, client: ClientCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


class _Api:
    """The few raw API calls the bootstrap needs, before any client library is configured."""

    def __init__(self, server: str, ctx: ssl.SSLContext) -> None:
        self._http = httpx.Client(base_url=server, verify=ctx, timeout=5.0)

    def close(self) -> None:
        self._http.close()

    def exists(self, path: str) -> bool:
        return self._http.get(path).status_code == 200

    def create_node(self, name: str) -> None:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {
                    KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1],
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
        }
        resp = self._http.post("/api/v1/nodes", json=body)
        if resp.status_code not in (201, 409):
            raise ClusterError(f"kwok: creating node {name} failed: {resp.text[:200]}")

    def ready_nodes(self) -> int:
        resp = self._http.get("/api/v1/nodes")
        if resp.status_code != 200:
            return 0
        count = 0
        for node in resp.json().get("items", []):
            for cond in node.get("status", {}).get("conditions", []) or []:
                if cond.get("type") == "Ready" and cond.get("status") == "True":
                    count += 1
        return count
