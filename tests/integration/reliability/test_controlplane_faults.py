"""Control-plane faults under a running operator (`python -m controllers`, its own process):

- its watch streams cut and the apiserver unreachable for it (a TCP fault injector between
  them, faults.ApiProxy) while specs change: it keeps running, retries with backoff (its
  connection attempts per second during the outage are counted and bounded) and converges
  every change made meanwhile once the apiserver is back;
- the real kube-apiserver process restarted mid-reconcile (as `xynergy dev restart` does it):
  every object converges with exactly one Deployment and Service each.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kube_support import Kube
from test_rollout_support import Operator

from controllers.devcluster.restart import restart_component

from .faults import ApiProxy
from .support import Fleet, children_problems, converge, unsettled

# Most connection attempts per second the operator may make while the apiserver is away. It
# watches about ten resources: reconnecting each at kopf's 0.1 s watch backoff alone would be
# about 100 a second; with its growing error backoffs (1, 2, 3, 5, 8 s ...) a 30 s outage
# measured 21, 9, 11, 0, 9, 0, 2, 9, 0, 0, 0, 1, 9, ... attempts in its successive seconds.
MAX_ATTEMPTS_PER_SECOND = 10.0

OUTAGES = [
    pytest.param(12.0, 1, id="ci"),
    pytest.param(60.0, 3, id="soak", marks=pytest.mark.soak),
]


@pytest.fixture
def proxy(cluster: Path) -> Iterator[ApiProxy]:
    server = yaml.safe_load(cluster.read_text())["clusters"][0]["cluster"]["server"]
    host, _, port = server.removeprefix("https://").rpartition(":")
    p = ApiProxy(host, int(port)).start()
    yield p
    p.stop()


@pytest.fixture
def proxied_operator(
    cluster: Path, crds_installed: list[str], proxy: ApiProxy, tmp_path: Path
) -> Iterator[Operator]:
    own = cluster.with_name("operator.kubeconfig")
    kubeconfig = proxy.kubeconfig(own if own.exists() else cluster, tmp_path / "proxied.kubeconfig")
    op = Operator(cluster, tmp_path / "operator.log", KUBECONFIG=str(kubeconfig)).start()
    yield op
    op.stop()


@pytest.mark.parametrize(("seconds", "outages"), OUTAGES)
def test_cut_watches_and_unreachable_apiserver_back_off_then_converge(
    kube: Kube,
    namespace: str,
    proxy: ApiProxy,
    proxied_operator: Operator,
    seconds: float,
    outages: int,
) -> None:
    fleet = Fleet(namespace)
    for i in range(5):
        fleet.add_service(kube, f"svc-{i}")
    converge(kube, fleet)
    rates = []
    for n in range(outages):
        start = time.monotonic()
        with proxy.outage():
            for name in fleet.services[:3]:  # changes the operator cannot see yet
                fleet.bump(kube, name, f"reg.example/app:outage-{n}")
            fleet.add_service(kube, f"during-{n}")
            time.sleep(seconds)  # the outage itself: its length is the fault injected
        end = time.monotonic()
        rates.append(proxy.rate(start, end))
        middle = (start + end) / 2
        # backing off: the second half of an outage sees fewer attempts than the first
        assert proxy.rate(middle, end) < proxy.rate(start, middle), proxy.attempts
        assert proxied_operator.proc is not None
        assert proxied_operator.proc.poll() is None, "the operator exited during the outage"
        converge(kube, fleet)
    print(f"connection attempts per second during {seconds:.0f} s outages: {rates}")
    assert max(rates) <= MAX_ATTEMPTS_PER_SECOND, rates
    assert children_problems(kube, fleet) == []


def test_apiserver_restarted_mid_reconcile(
    kube: Kube, cluster: Path, namespace: str, proxy: ApiProxy, proxied_operator: Operator
) -> None:
    workdir = cluster.parent.parent
    if not (workdir / "state.json").exists():
        pytest.skip("the cluster was not started by the tests: its apiserver is not ours")
    fleet = Fleet(namespace)
    for i in range(15):
        fleet.add_service(kube, f"svc-{i:02d}")
    kube.wait_for("the operator to start reconciling", lambda: len(unsettled(kube, fleet)) < 15)
    start = time.monotonic()
    restarted = restart_component(workdir, "kube-apiserver")
    end = time.monotonic()
    rate, storm = proxy.rate(start, end), proxy.rate(start, end, refused=True)
    print(
        f"connection attempts per second while the apiserver restarted: {rate:.1f} "
        f"({storm:.1f} refused)"
    )
    assert restarted.was_running
    timeline = [round(t - start, 2) for t in proxy.attempts if t >= start]
    # bounded: the attempts a down apiserver saw (reconnecting once it is back is no storm)
    assert storm <= MAX_ATTEMPTS_PER_SECOND, timeline
    converge(kube, fleet)
    assert children_problems(kube, fleet) == []
    assert proxied_operator.proc is not None
    assert proxied_operator.proc.poll() is None
