"""Benchmark: N ScalingPolicies (default 1,000) on one operator against a real Prometheus with
real history, each syncing every 15 s (the API's default `interval`; `--interval 30` for the
runs before it changed) with `capacityPerInstance` and `averagingWindowSeconds: 15` written,
as docs/scalingpolicy.md advises (`--no-sized` leaves them out, as the runs before did: then
no sync reads the recent means). Prints, never asserts.

The local kwok cluster (as `make dev` starts it), a Prometheus backfilled with eight days of
NAB's nyc_taxi demand (one series per scenario, each shifted so the daily pattern is at a
different phase) plus a live scrape target for the load now; N XynergyServices and N
predictive ScalingPolicies (policy i reads scenario i mod 20). After a warm-up (every policy
synced and its model fitted once), a measuring window reports:

- operator CPU (cores, from /proc utime+stime; target <= 0.5 core on average), with the
  warm-up's fit CPU amortized over the hourly refit period beside it;
- operator RSS now and peak (target <= 300 MB);
- sync lateness p99 (the operator's `xynergy_scalingpolicy_sync_lateness_seconds` histogram
  over the window, bucket upper bound; target <= 2 s);
- operator CPU seconds per sync (window CPU over the syncs the lateness histogram counted:
  robust to a loaded machine, unlike lateness) and the load average at the time;
- status writes per second (ScalingPolicy status patches in the apiserver's audit log).

With `--profile OUT` the measuring window is sampled by py-spy (`pip install py-spy`; it must
be on PATH) into OUT as collapsed stacks (flamegraph "raw" format: one stack per line, count
last), to see where the operator's CPU goes.

    .venv/bin/python bench/scalingpolicy_scale.py [--n 1000] [--window 180] [--profile OUT]
        [--interval 15] [--no-sized]
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controllers.devcluster import DevCluster, ensure_binaries, repo_root
from controllers.devcluster.manifests import apply_files, wait_established
from controllers.devcluster.processes import free_port

sys.path.insert(0, str(repo_root() / "tests"))
sys.path.insert(0, str(repo_root() / "tests" / "integration"))
from controller_scale import _create_all, _live, _namespace
from kube_support import Kube, audit_events, audit_lines, writes_by
from prometheus import PrometheusServer, ScrapeTarget, Series

TAXI = repo_root().parent / "shared/data/nab/data/realKnownCause/nyc_taxi.csv"
SCENARIOS = 20
DAYS = 8
STEP = 300.0
API = "/apis/xynergy.io/v1alpha1"
NS = "bench-sp"


def _taxi() -> tuple[np.ndarray, np.ndarray]:
    with TAXI.open() as fh:
        values = np.array([float(r["value"]) for r in csv.DictReader(fh)])
    return np.arange(values.size) * 1800.0, values


def _history(now: float, target: str) -> tuple[list[Series], list[float]]:
    """DAYS of history per scenario ending a minute ago (each at its own phase of the
    pattern), and each scenario's value now."""
    t, v = _taxi()
    series, latest = [], []
    for k in range(SCENARIOS):
        end = int(DAYS * 48 + k * 17)  # 8.5 hours apart: different phases of the day
        grid = np.arange(t[end] - DAYS * 86400, t[end] + 1, STEP)
        values = np.interp(grid, t, v)
        shift = now - 60 - t[end]
        labels = {"job": "load0", "instance": target, "scenario": f"s{k}"}
        samples = [
            (float(g + shift), round(float(x), 2)) for g, x in zip(grid, values, strict=True)
        ]
        series.append(Series("load", labels, samples))
        latest.append(float(values[-1]))
    return series, latest


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": name},
        "spec": {
            "image": "reg.example/app:1",
            "replicas": 2,
            "scaling": {"minInstances": 1, "maxInstances": 20},
        },
    }


def _policy(name: str, scenario: int, per: float, args: argparse.Namespace) -> dict[str, Any]:
    metric: dict[str, Any] = {
        "source": "prometheus",
        "query": f'sum(load{{scenario="s{scenario}"}})',
        "targetPerInstance": per,
    }
    if args.sized:  # as docs/scalingpolicy.md advises: the dispersion headroom reads means
        metric |= {"capacityPerInstance": per / 0.7, "averagingWindowSeconds": 15}
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": name},
            "metric": metric,
            "mode": "predictive",
            "interval": f"{args.interval}s",
            "maxInstances": 20,
            "forecast": {
                "horizon": "30m",
                "historyWindow": f"{DAYS * 24}h",
                "minimumHistory": "48h",
                "maxErrorPercent": 60,
            },
        },
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> tuple[float, float]:
    rows = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(rows["VmRSS"].split()[0]) / 1024, int(rows["VmHWM"].split()[0]) / 1024


def _lateness(metrics_url: str) -> dict[float, float]:
    """The lateness histogram's cumulative bucket counts {le: count}."""
    text = httpx.get(metrics_url, timeout=10).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("xynergy_scalingpolicy_sync_lateness_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def _p99(before: dict[float, float], after: dict[float, float]) -> tuple[float, float]:
    counts = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = counts.get(float("inf"), 0.0)
    for le in sorted(counts):
        if total and counts[le] >= 0.99 * total:
            return le, total
    return float("nan"), total


def _requests(audit: Path, since_line: int) -> collections.Counter[str]:
    """The operator's API requests after `since_line` by verb and resource[/subresource]."""
    verbs = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
    counts: collections.Counter[str] = collections.Counter()
    for e in audit_events(audit, "xynergy-operator", verbs=verbs, since_line=since_line):
        ref = e["objectRef"]
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        counts[f"{e['verb']} {ref.get('resource')}{sub}"] += 1
    return counts


def _profile(pid: int, out: str | None, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the operator for `seconds` into `out` (collapsed stacks), if asked."""
    if out is None:
        return None
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds))]
    return subprocess.Popen([*argv, "--rate", "50", "--format", "raw", "-o", out, "--nonblocking"])


def _ready_services(kube: Kube) -> int:
    items = kube.get(f"{API}/namespaces/{NS}/xynergyservices").json().get("items", [])
    return sum(
        1
        for o in items
        for c in (o.get("status") or {}).get("conditions") or []
        if c.get("type") == "Ready" and c.get("status") == "True"
    )


def _wait(what: str, count: Any, n: int, *, start: float, timeout: float) -> None:
    """Poll `count()` until it reaches `n` (or the timeout: then say how far it got)."""
    while (done := count()) < n:
        if time.monotonic() - start > timeout:
            print(f"  warm-up: only {done}/{n} {what}", file=sys.stderr)
            return
        time.sleep(5)


def _synced(kube: Kube, n: int) -> int:
    items = kube.get(f"{API}/namespaces/{NS}/scalingpolicies").json().get("items", [])
    return sum(1 for o in items if (o.get("status") or {}).get("modelFittedTime"))


def measure(
    args: argparse.Namespace, *, kube: Kube, audit: Path, pid: int, metrics: str, per: list[float]
) -> dict[str, float]:
    n = args.n
    cpu0, start = _cpu_seconds(pid), time.monotonic()
    _create_all(
        kube,
        [(f"{API}/namespaces/{NS}/xynergyservices", _service(f"svc-{i:04d}")) for i in range(n)],
    )
    _create_all(
        kube,
        [
            (
                f"{API}/namespaces/{NS}/scalingpolicies",
                _policy(f"svc-{i:04d}", i % SCENARIOS, per[i % SCENARIOS], args),
            )
            for i in range(n)
        ],
    )
    # Measure the policies' steady state: every model fitted and every service rolled out
    # (2N kwok Pods becoming Ready drive Deployment events and service status writes).
    _wait("fitted", lambda: _synced(kube, n), n, start=start, timeout=args.warmup_timeout)
    _wait(
        "services Ready", lambda: _ready_services(kube), n, start=start, timeout=args.warmup_timeout
    )
    warm_s, warm_cpu = time.monotonic() - start, _cpu_seconds(pid) - cpu0
    print(f"  warm-up {warm_s:.0f} s, {warm_cpu:.0f} CPU-s", file=sys.stderr, flush=True)
    time.sleep(args.interval + 5)  # one interval: every policy on its own slot
    line0, late0 = audit_lines(audit), _lateness(metrics)
    cpu1, t1 = _cpu_seconds(pid), time.monotonic()
    profiler = _profile(pid, args.profile, args.window)
    time.sleep(args.window)
    cpu, wall = _cpu_seconds(pid) - cpu1, time.monotonic() - t1
    load = os.getloadavg()[0]
    if profiler is not None:
        profiler.wait(timeout=60)
    p99, syncs = _p99(late0, _lateness(metrics))
    writes = [
        e
        for e in writes_by(audit, "xynergy-operator", since_line=line0)
        if e["objectRef"].get("resource") == "scalingpolicies"
        and e["objectRef"].get("subresource") == "status"
    ]
    rss, peak = _rss_mb(pid)
    requests = _requests(audit, line0)
    print("  operator API requests /s in the window:", file=sys.stderr)
    for what, count in requests.most_common(12):
        print(f"    {count / wall:7.2f}  {what}", file=sys.stderr)
    return {
        "n": n,
        "cpu": cpu / wall,
        "amortized": cpu / wall + warm_cpu / 3600.0,
        "rss": rss,
        "peak": peak,
        "p99": p99,
        "syncs_s": syncs / wall,
        "cpu_per_sync_ms": 1000 * cpu / syncs if syncs else float("nan"),
        "load": load,
        "writes_s": len(writes) / wall,
        "warm_s": warm_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--window", type=float, default=180.0, help="measuring window, seconds")
    parser.add_argument("--warmup-timeout", type=float, default=3600.0)
    parser.add_argument("--profile", help="py-spy the measuring window into this file")
    parser.add_argument(
        "--interval", type=int, default=15, help="spec.interval, seconds (the API's default: 15)"
    )
    parser.add_argument(
        "--no-sized",
        dest="sized",
        action="store_false",
        help="leave out capacityPerInstance and averagingWindowSeconds (the runs before)",
    )
    args = parser.parse_args()
    bindir = ensure_binaries(progress=lambda line: print(f"  {line}", file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="xynergy-bench-sp-") as tmp, ScrapeTarget() as live:
        series, latest = _history(time.time(), live.address)
        for k, value in enumerate(latest):
            live.set("load", value, scenario=f"s{k}")
        prom = PrometheusServer(Path(tmp) / "prom", targets=[live.address], scrape_seconds=15)
        prom.backfill(series)
        prom.start()
        dev = DevCluster(workdir=Path(tmp) / "cluster", bindir=bindir, nodes=4)
        state = dev.start(progress=lambda m: print(f"  {m}", file=sys.stderr))
        try:
            names = apply_files(
                kubeconfig=state.kubeconfig, paths=sorted((repo_root() / "crds").glob("*.yaml"))
            )
            wait_established(kubeconfig=state.kubeconfig, names=names)
            port, mport = free_port(), free_port()
            env = dict(
                os.environ,
                KUBECONFIG=str(state.operator_kubeconfig),
                XYNERGY_LIVENESS_ENDPOINT=f"http://127.0.0.1:{port}/healthz",
                XYNERGY_METRICS_PORT=str(mport),
                XYNERGY_SCALING_PROMETHEUS_URL=prom.url,
            )
            op = dev.add_process(
                name="operator", argv=[sys.executable, "-m", "controllers"], env=env
            )
            kube = Kube.from_kubeconfig(state.kubeconfig)
            kube.wait_for(
                "operator liveness", lambda: _live(f"http://127.0.0.1:{port}/healthz"), timeout=60
            )
            _namespace(kube, NS)
            per = [max(1.0, v / 4) for v in latest]  # about 4 instances' worth now
            r = measure(
                args,
                kube=kube,
                audit=state.audit_log,
                pid=op.pid,
                metrics=f"http://127.0.0.1:{mport}/metrics",
                per=per,
            )
        finally:
            dev.stop()
            prom.stop()
    print(
        f"\nN={r['n']:.0f} policies, {args.interval} s interval"
        + (", capacityPerInstance and averagingWindowSeconds" if args.sized else "")
        + f", window {args.window:.0f} s "
        f"(warm-up {r['warm_s']:.0f} s)"
    )
    print(
        f"  operator CPU      {r['cpu']:.3f} cores  (with hourly refits amortized "
        f"{r['amortized']:.3f})   target <= 0.5"
    )
    print(f"  operator RSS      {r['rss']:.0f} MB (peak {r['peak']:.0f} MB)   target <= 300")
    print(
        f"  sync lateness p99 <= {r['p99']:g} s over {r['syncs_s']:.1f} syncs/s   target <= 2"
        f"   (load average {r['load']:.2f} on {os.cpu_count()} CPUs)"
    )
    print(f"  CPU per sync      {r['cpu_per_sync_ms']:.1f} ms (operator CPU over syncs)")
    print(
        f"  status writes     {r['writes_s']:.2f} /s   (one per sync would be {r['n'] / args.interval:.1f} /s)"
    )


if __name__ == "__main__":
    main()
