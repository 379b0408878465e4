"""Rollouts on the Kubernetes backend end to end, many times: how fast a bad canary is rolled
back, and whether a healthy one is ever rolled back or a bad one promoted. Prints, never
asserts.

The same real parts as tests/integration/test_rollout_kubernetes.py: a local cluster (kwok),
the operator in its own process, the gateway (routes from the cluster, weights from the
Rollout's status) with load on it, one stand-in upstream process for the stable revision and
a fresh one per case for the canary, and a real Prometheus scraping the gateway's
per-revision metrics. Each case makes a routed XynergyService and a canary Rollout
(setWeight W, then an analysis step of `--looks` intervals) whose new revision is healthy or
bad: errors +5 pp, p95 latency x1.5, or mixed (+2.5 pp and x1.25). The errors metric counts
the 5xx and all requests of each query step and is judged as a proportion (Fisher's test on
the counts, the power guard on the trials: a canary too small to show `--errors-mde` is
extended, then paused, never promoted).

Figures (targets from issue 13): for bad canaries the time from the canary taking traffic in
the gateway to 100 % back on stable (<= 2 intervals + 10 s), promotions of bad canaries (0),
false rollbacks of healthy ones (0).

    .venv/bin/python bench/rollout_e2e.py                          # 20 bad + 20 healthy
    .venv/bin/python bench/rollout_e2e.py --bad 3 --healthy 2     # a short run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

from kube_support import Kube  # noqa: E402
from prometheus import PrometheusServer  # noqa: E402
from test_rollout_kubernetes import (  # noqa: E402
    ERRORS,
    LATENCY,
    REQUESTS,
    STEP,
    GatewayThread,
    Load,
    Upstream,
)
from test_rollout_support import create_rollout, get_rollout, operator_process  # noqa: E402
from test_xynergyservice import create_xs, wait_ready  # noqa: E402

from controllers.devcluster import DevCluster, ensure_binaries  # noqa: E402
from controllers.devcluster.manifests import apply_files, wait_established  # noqa: E402

KINDS = {"errors": (0.05, 1.0), "latency": (0.0, 1.5), "mixed": (0.025, 1.25), "healthy": (0, 1)}


@dataclass
class Case:
    kind: str
    weight: int
    outcome: str = "timeout"
    seconds: float | None = None
    looks: int | None = None


class Bench:
    def __init__(self, kube: Kube, gateway: GatewayThread, load: Load, args: argparse.Namespace):
        self.kube, self.gateway, self.load = kube, gateway, load
        self.interval, self.looks, self.errors_mde = args.interval, args.looks, args.errors_mde
        self.canaries: dict[str, Upstream] = {}

    def analysis(self) -> dict[str, Any]:
        # errors: 5xx and all requests counted per step, judged as a proportion (Fisher)
        return {
            "interval": f"{self.interval:.0f}s",
            "minimumSamples": 3,
            "metrics": [
                {"name": "errors", "method": "proportion", "query": ERRORS,
                 "denominator": REQUESTS, "tolerancePercent": 0, "absoluteTolerance": 0.01,
                 "minimumDetectable": self.errors_mde, "critical": True},
                {"name": "latency", "query": LATENCY, "tolerancePercent": 10, "critical": True},
            ],
        }  # fmt: skip

    def run(self, case: Case, ns: str) -> Case:
        svc = f"ai-{uuid.uuid4().hex[:6]}"
        prefix = f"/api/v2/{svc}"
        canary = Upstream()
        self.canaries[svc] = canary
        errors, slow = KINDS[case.kind]
        canary.behave(errors=errors, slow=slow)
        create_xs(self.kube, ns, svc, backend="kubernetes", port=8080, routes=[{"prefix": prefix}])
        wait_ready(self.kube, ns, svc)
        self.load.prefix = prefix
        duration = f"{self.interval * self.looks:.0f}s"
        steps = [{"setWeight": case.weight}, {"analysis": {"duration": duration}}]
        create_rollout(self.kube, ns, svc, target=svc, image="reg.example/app:2",
                       strategy={"canary": {"steps": steps}}, analysis=self.analysis())  # fmt: skip
        try:
            return self._follow(case, ns, svc, prefix)
        finally:
            canary.stop()

    def _follow(self, case: Case, ns: str, svc: str, prefix: str) -> Case:
        started: float | None = None
        deadline = time.monotonic() + 30 + self.interval * self.looks * 4
        while time.monotonic() < deadline:
            routes = self.gateway.upstreams(prefix)
            if started is None and len(routes) == 2:
                started = time.monotonic()
            status = get_rollout(self.kube, ns, svc).get("status") or {}
            phase = status.get("phase")
            plain = len(routes) == 1 and routes[0][1] == ""
            if phase in ("RolledBack", "Promoted", "Paused") and (plain or phase == "Paused"):
                case.outcome = phase
                if started is not None:
                    case.seconds = time.monotonic() - started
                runs = status.get("analysisRuns") or []
                case.looks = runs[-1]["look"] if runs else None
                expected = "Promoted" if case.kind == "healthy" else "RolledBack"
                if runs and phase != expected:
                    print(f"  {case.kind} {phase}: {'; '.join(runs[-1].get('evidence') or [])}")
                return case
            time.sleep(0.1)
        return case


def table(cases: list[Case], interval: float) -> None:
    target = 2 * interval + 10
    print(f"\n{'canary':<10}{'weight':>7}{'cases':>7}{'rolled back':>13}{'promoted':>10}"
          f"{'paused':>8}{'timeout':>9}{'median s':>10}{'max s':>8}")  # fmt: skip
    for kind in KINDS:
        for weight in sorted({c.weight for c in cases}):
            group = [c for c in cases if c.kind == kind and c.weight == weight]
            if not group:
                continue
            count = {o: sum(c.outcome == o for c in group) for o in
                     ("RolledBack", "Promoted", "Paused", "timeout")}  # fmt: skip
            times = [c.seconds for c in group if c.outcome == "RolledBack" and c.seconds]
            med = f"{statistics.median(times):.1f}" if times else "-"
            top = f"{max(times):.1f}" if times else "-"
            print(f"{kind:<10}{weight:>6}%{len(group):>7}{count['RolledBack']:>13}"
                  f"{count['Promoted']:>10}{count['Paused']:>8}{count['timeout']:>9}"
                  f"{med:>10}{top:>8}")  # fmt: skip
    bad = [c for c in cases if c.kind != "healthy"]
    healthy = [c for c in cases if c.kind == "healthy"]
    times = [c.seconds for c in bad if c.outcome == "RolledBack" and c.seconds]
    print(f"\nbad canaries: {len(bad)}; rolled back {len(times)}; promoted "
          f"{sum(c.outcome == 'Promoted' for c in bad)} (target 0); time to 100 % stable "
          f"median {statistics.median(times) if times else float('nan'):.1f} s, max "
          f"{max(times) if times else float('nan'):.1f} s (target <= {target:.0f} s: "
          f"{sum(t <= target for t in times)}/{len(bad)} within)")  # fmt: skip
    print(f"healthy canaries: {len(healthy)}; false rollbacks "
          f"{sum(c.outcome == 'RolledBack' for c in healthy)} (target 0); promoted "
          f"{sum(c.outcome == 'Promoted' for c in healthy)}; paused "
          f"{sum(c.outcome == 'Paused' for c in healthy)}")  # fmt: skip


def plan(bad: int, healthy: int, weights: list[int]) -> list[Case]:
    cases = []
    kinds = ["errors", "latency", "mixed"]
    for weight in weights:
        cases += [Case(kinds[i % 3], weight) for i in range(bad)]
        cases += [Case("healthy", weight) for _ in range(healthy)]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bad", type=int, default=10, help="bad canaries per weight")
    parser.add_argument("--healthy", type=int, default=10, help="healthy canaries per weight")
    parser.add_argument("--weights", default="10,50", help="canary weights, percent")
    parser.add_argument("--interval", type=float, default=5.0, help="analysis interval, s")
    parser.add_argument("--looks", type=int, default=2, help="intervals in the analysis step")
    parser.add_argument(
        "--errors-mde",
        type=float,
        default=0.05,
        help="the errors metric's minimumDetectable (rise of the 5xx rate it must be able to "
        "see); 0.05, the bad canaries' own +5 pp: the judge is asked to see what it is judged on",
    )
    args = parser.parse_args()
    cases = plan(args.bad, args.healthy, [int(w) for w in args.weights.split(",")])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dev = DevCluster(workdir=work / "cluster", bindir=ensure_binaries(), nodes=2)
        kubeconfig = dev.start().kubeconfig
        stable = Upstream()
        gateway: GatewayThread | None = None
        try:
            names = apply_files(kubeconfig=kubeconfig, paths=sorted((ROOT / "crds").glob("*.yaml")))
            wait_established(kubeconfig=kubeconfig, names=names)
            kube = Kube.from_kubeconfig(kubeconfig)
            bench_ns = "rollout-bench"
            kube.create("/api/v1/namespaces", {"metadata": {"name": bench_ns}})
            gateway = GatewayThread(kubeconfig, work, lambda url: url)
            bench = Bench(kube, gateway, Load(gateway.url), args)
            gateway.resolve = lambda url: _resolve(url, bench.canaries, stable)
            gateway.start()
            prom = PrometheusServer(work / "prom", targets=[f"127.0.0.1:{gateway.port}"])
            prom.start()
            for thread in bench.load.threads:
                thread.start()
            env = {"XYNERGY_ROLLOUT_PROMETHEUS_URL": prom.url,
                   "XYNERGY_ROLLOUT_QUERY_STEP_SECONDS": str(STEP)}  # fmt: skip
            with operator_process(kubeconfig, work / "operator.log", **env):
                for i, case in enumerate(cases, 1):
                    bench.run(case, bench_ns)
                    print(f"[{i}/{len(cases)}] {case.kind} at {case.weight}%: {case.outcome} "
                          f"{case.seconds or 0:.1f}s look {case.looks}", flush=True)  # fmt: skip
            bench.load.stop.set()
            prom.stop()
        finally:
            if gateway is not None:
                gateway.stop()
            stable.stop()
            dev.stop()
    print(f"\nanalysis interval {args.interval:.0f}s, {args.looks} looks per analysis step, "
          f"errors as a proportion with minimumDetectable {args.errors_mde}")  # fmt: skip
    table(cases, args.interval)


def _resolve(url: str, canaries: dict[str, Upstream], stable: Upstream) -> str:
    """Service URL -> stand-in: `<svc>-ro-<hash>.<ns>...` is that case's canary."""
    host = url.split("//", 1)[-1].split(".", 1)[0]
    svc, _, rest = host.partition("-ro-")
    return canaries[svc].url if rest and svc in canaries else stable.url


if __name__ == "__main__":
    main()
