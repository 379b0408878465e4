"""Benchmark: N XynergyServices through the operator vs the same Deployments + Services applied
directly, on the local kwok cluster, in one run.

Prints, per N: time until all are Ready (operator) / Available (direct), the ratio, the
operator's apiserver writes per object (from the audit log), its peak RSS, its writes over an
idle minute, and the 1-minute load average when the pair finished (the figures move with it
on a shared machine). With --repeat R each N runs R pairs and the table shows their medians.
Targets (issue 11): ratio <= 1.5 at N=1000 (stretch 1.2), <= 5 writes per object, peak RSS
<= 150 MB at N=1000 and <= 250 MB at N=3000, 0 idle writes.

    .venv/bin/python bench/controller_scale.py --n 100 1000 [--repeat 3] [--idle-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controllers.devcluster import DevCluster, ensure_binaries, repo_root
from controllers.devcluster.manifests import apply_files, wait_established
from controllers.devcluster.processes import free_port

sys.path.insert(0, str(repo_root() / "tests" / "integration"))
from kube_support import Kube, audit_lines, writes_by

IMAGE = "reg.example/bench:1"
CONCURRENCY = 32


def _xs(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": name},
        "spec": {"image": IMAGE, "profile": "api-service"},
    }


def _direct(name: str) -> list[tuple[str, dict[str, Any]]]:
    labels = {"app.kubernetes.io/name": name, "xynergy.io/service": name}
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"xynergy.io/service": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": IMAGE,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "1Gi"},
                                "limits": {"memory": "1Gi"},
                            },
                        }
                    ]
                },
            },
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"xynergy.io/service": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    return [("deployments", dep), ("services", svc)]


def _create_all(kube: Kube, items: list[tuple[str, dict[str, Any]]]) -> None:
    def one(item: tuple[str, dict[str, Any]]) -> None:
        path, body = item
        for attempt in range(5):
            try:
                resp = kube.create(path, body)
                break
            except httpx.TransportError:  # a kept-alive connection the apiserver had closed
                if attempt == 4:
                    raise
        if resp.status_code == 409 and attempt:
            return  # the first attempt was applied; its response was lost
        if resp.status_code != 201:
            raise RuntimeError(f"create {path} failed: {resp.status_code} {resp.text[:200]}")

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, items))


def _namespace(kube: Kube, name: str) -> None:
    kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
    kube.wait_for(
        f"namespace {name}",
        lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default").status_code == 200,
        timeout=60,
    )


def _count_ready(kube: Kube, path: str, ready: Any) -> int:
    items = kube.get(path).json().get("items", [])
    return sum(1 for o in items if ready(o))


def _dep_available(o: dict[str, Any]) -> bool:
    st = o.get("status", {})
    conds = {c["type"]: c["status"] for c in st.get("conditions", [])}
    return conds.get("Available") == "True" and st.get("readyReplicas") == o["spec"]["replicas"]


def _xs_ready(o: dict[str, Any]) -> bool:
    st = o.get("status") or {}
    conds = {c["type"]: c["status"] for c in st.get("conditions", [])}
    return (
        conds.get("Ready") == "True" and st.get("observedGeneration") == o["metadata"]["generation"]
    )


def _wait_count(kube: Kube, path: str, ready: Any, n: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if _count_ready(kube, path, ready) >= n:
            return time.monotonic() - start
        time.sleep(0.5)
    raise TimeoutError(f"{path}: only {_count_ready(kube, path, ready)}/{n} ready after {timeout}s")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_TICK = os.sysconf("SC_CLK_TCK")
# The processes whose CPU time each phase is charged with (the cluster's, by name, and ours).
CPU_COLUMNS = ("operator", "kube-apiserver", "etcd", "others")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)


def _cpu_by_column(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far per column: the operator, kube-apiserver, etcd, and the rest of the
    cluster (controller-manager, scheduler, kwok) together."""
    out = dict.fromkeys(CPU_COLUMNS, 0.0)
    for name, pid in pids.items():
        out[name if name in out else "others"] += _cpu_seconds(pid)
    return out


def _cpu_per_object(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return {k: 1000 * (after[k] - before[k]) / n for k in CPU_COLUMNS}


def _profiler(pid: int, out: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the operator (collapsed stacks, one line per stack with its count)."""
    if out is None:
        return None
    argv = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
    argv += ["--rate", "50", "--nonblocking"]
    spy = Path(sys.executable).with_name("py-spy")
    argv[0] = str(spy) if spy.exists() else argv[0]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        proc.wait(timeout=60)


def run(
    n: int,
    *,
    kube: Kube,
    audit: Path,
    pids: dict[str, int],
    idle_seconds: int,
    rep: int = 0,
    profile: Path | None = None,
) -> dict[str, float]:
    direct_ns, xs_ns = f"direct-{n}-{rep}", f"xs-{n}-{rep}"
    _namespace(kube, direct_ns)
    _namespace(kube, xs_ns)

    items: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        for kind, body in _direct(f"svc-{i:04d}"):
            prefix = "/apis/apps/v1" if kind == "deployments" else "/api/v1"
            items.append((f"{prefix}/namespaces/{direct_ns}/{kind}", body))
    cpu0, start = _cpu_by_column(pids), time.monotonic()
    _create_all(kube, items)
    _wait_count(kube, f"/apis/apps/v1/namespaces/{direct_ns}/deployments", _dep_available, n, 1800)
    direct_s = time.monotonic() - start
    direct_cpu = _cpu_per_object(cpu0, _cpu_by_column(pids), n)

    line0 = audit_lines(audit)
    xs_path = f"/apis/xynergy.io/v1alpha1/namespaces/{xs_ns}/xynergyservices"
    spy = _profiler(pids["operator"], profile and profile.with_suffix(f".{n}-{rep}.txt"))
    cpu0, start = _cpu_by_column(pids), time.monotonic()
    _create_all(kube, [(xs_path, _xs(f"svc-{i:04d}")) for i in range(n)])
    _wait_count(kube, xs_path, _xs_ready, n, 1800)
    operator_s = time.monotonic() - start
    operator_cpu = _cpu_per_object(cpu0, _cpu_by_column(pids), n)
    _stop_profiler(spy)
    time.sleep(3)
    events = writes_by(audit, "xynergy-operator", since_line=line0)
    writes = len(events)
    kinds = Counter(
        f"{e['verb']} {e['objectRef'].get('resource')}"
        + (f"/{e['objectRef']['subresource']}" if e["objectRef"].get("subresource") else "")
        for e in events
    )
    print(
        f"  N={n} operator writes by kind: {dict(kinds.most_common())}", file=sys.stderr, flush=True
    )

    time.sleep(5)
    line1 = audit_lines(audit)
    time.sleep(idle_seconds + 2)
    idle_writes = len(writes_by(audit, "xynergy-operator", since_line=line1))
    return {
        "n": n,
        "direct_s": direct_s,
        "operator_s": operator_s,
        "ratio": operator_s / direct_s,
        "writes_per_object": writes / n,
        "peak_rss_mb": _peak_rss_mb(pids["operator"]),
        "idle_writes": idle_writes,
        "load1": os.getloadavg()[0],
        **{f"direct_cpu_{k}": v for k, v in direct_cpu.items()},
        **{f"operator_cpu_{k}": v for k, v in operator_cpu.items()},
    }


def median_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per column, the median of the repeats of one N."""
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="pairs per N (median shown)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the operator during each operator phase: collapsed stacks to "
        "PROFILE.<n>-<rep>.txt",
    )
    args = parser.parse_args()

    bindir = ensure_binaries(progress=lambda line: print(f"  {line}", file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="xynergy-bench-") as tmp:
        dev = DevCluster(workdir=Path(tmp), bindir=bindir, nodes=args.nodes)
        state = dev.start(progress=lambda m: print(f"  {m}", file=sys.stderr))
        try:
            names = apply_files(
                kubeconfig=state.kubeconfig, paths=sorted((repo_root() / "crds").glob("*.yaml"))
            )
            wait_established(kubeconfig=state.kubeconfig, names=names)
            port = free_port()
            env = dict(
                os.environ,
                KUBECONFIG=str(state.operator_kubeconfig),
                XYNERGY_LIVENESS_ENDPOINT=f"http://127.0.0.1:{port}/healthz",
            )
            op = dev.add_process(  # stopped with the cluster, whatever happens
                name="operator", argv=[sys.executable, "-m", "controllers"], env=env
            )
            kube = Kube.from_kubeconfig(state.kubeconfig)
            kube.wait_for(
                "operator liveness",
                lambda: _live(f"http://127.0.0.1:{port}/healthz"),
                timeout=60,
            )
            pids = {p.name: p.pid for p in state.processes} | {"operator": op.pid}
            rows = [
                median_row(
                    [
                        run(
                            n,
                            kube=kube,
                            audit=state.audit_log,
                            pids=pids,
                            idle_seconds=args.idle_seconds,
                            rep=rep,
                            profile=args.profile,
                        )
                        for rep in range(args.repeat)
                    ]
                )
                for n in args.n
            ]
        finally:
            dev.stop()
    print(
        f"\n{'N':>6} {'direct s':>9} {'operator s':>11} {'ratio':>6} {'writes/obj':>11} "
        f"{'peak RSS MB':>12} {'idle writes':>12} {'load 1m':>8}"
    )
    for r in rows:
        print(
            f"{r['n']:>6.0f} {r['direct_s']:>9.1f} {r['operator_s']:>11.1f} {r['ratio']:>6.2f} "
            f"{r['writes_per_object']:>11.2f} {r['peak_rss_mb']:>12.0f} {r['idle_writes']:>12.0f} "
            f"{r['load1']:>8.1f}"
        )
    print(
        "targets: ratio <= 1.5 at N=1000 (stretch 1.2), writes/obj <= 5, peak RSS <= 150 MB at "
        "N=1000 and <= 250 MB at N=3000, idle writes 0"
    )
    print(f"pairs per N: {args.repeat} (median); peak RSS is the operator's lifetime high mark")
    _print_cpu(rows)


def _print_cpu(rows: list[dict[str, float]]) -> None:
    """CPU ms per object of each process during each phase: what the load on a shared machine
    moves least (the wall-clock ratio moves with everyone else's work)."""
    print("\nCPU ms per object during each phase (from /proc/<pid>/stat)")
    print(f"{'N':>6} {'phase':>9} " + " ".join(f"{c:>15}" for c in CPU_COLUMNS) + f" {'sum':>8}")
    for r in rows:
        for phase in ("direct", "operator"):
            cells = [r[f"{phase}_cpu_{c}"] for c in CPU_COLUMNS]
            print(
                f"{r['n']:>6.0f} {phase:>9} "
                + " ".join(f"{v:>15.1f}" for v in cells)
                + f" {sum(cells):>8.1f}"
            )


def _live(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
