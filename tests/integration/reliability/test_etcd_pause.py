"""etcd paused mid-reconcile (issue 19, item 2): the operator (`python -m controllers`, its
own process) talks to the apiserver through a counting proxy (faults.CountingProxy, every
request recorded as it arrives); specs change and services are created, and once the operator
has started writing for them etcd is SIGSTOPped for a while, then SIGCONTed (faults.paused).

While etcd is paused the apiserver stays up but nothing it must read from or write to etcd
completes: the operator's writes hang, its watches go quiet. It must not turn that into a tight
loop (its requests per second during the pause are bounded, and no request is repeated more
often than its retry backoff allows), must not exit, and every object must converge once etcd
is back, with one Deployment and one Service per XynergyService.

The bounded form pauses etcd once for 10 s, the soak form four times for 35 s: under the
operator's 60 s request timeout (kopf's `networking.request_timeout`), so its requests hang
rather than fail, and under the node monitor grace period of kube-controller-manager (40 s):
a longer pause has it mark the kwok Nodes unreachable and their Pods not Ready, which kwok
never reverts, so the Deployments stay unavailable whatever the operator does (a 75 s pause
showed it).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kube_support import Kube
from test_rollout_support import Operator

from .faults import CountingProxy, paused
from .support import GROUP, Fleet, children_problems, condition, converge, items

# Most requests per second the operator may send while etcd is paused. Hung requests cannot
# multiply; a retry loop without backoff across its ~10 watches and the objects in flight
# would send hundreds.
MAX_REQUESTS_PER_SECOND = 10.0


def max_repeats(seconds: float) -> int:
    """Most times one request (method and path) may be sent during a pause of `seconds`: the
    operator's retry backoff (controllers/core/retry.py: from 0.5 s, doubling, capped at 30 s,
    each wait at least half its base) allows about 8 attempts in the first 64 s and one per
    15 s after; a loop without backoff repeats a request every few milliseconds."""
    return 8 + int(seconds // 15)


PAUSES = [
    pytest.param(10.0, 1, id="ci"),
    pytest.param(35.0, 4, id="soak", marks=pytest.mark.soak),
]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@pytest.fixture
def workdir(cluster: Path) -> Path:
    path = cluster.parent.parent
    if not (path / "state.json").exists():
        pytest.skip("the cluster was not started by the tests: its etcd is not ours to pause")
    return path


@pytest.fixture
def counting_proxy(cluster: Path, workdir: Path) -> Iterator[CountingProxy]:
    server = yaml.safe_load(cluster.read_text())["clusters"][0]["cluster"]["server"]
    own = cluster.with_name("operator.kubeconfig")
    proxy = CountingProxy(server, own if own.exists() else cluster).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def counted_operator(
    cluster: Path, crds_installed: list[str], counting_proxy: CountingProxy, tmp_path: Path
) -> Iterator[Operator]:
    own = cluster.with_name("operator.kubeconfig")
    kubeconfig = counting_proxy.kubeconfig(
        own if own.exists() else cluster, tmp_path / "counted.kubeconfig"
    )
    op = Operator(cluster, tmp_path / "operator.log", KUBECONFIG=str(kubeconfig)).start()
    yield op
    op.stop()


def settle(kube: Kube, fleet: Fleet) -> float:
    """Wait until every object of the fleet has settled; the seconds it took."""
    return converge(kube, fleet, explain=lambda left: why(kube, fleet, left))


def why(kube: Kube, fleet: Fleet, left: list[str]) -> dict[str, str]:
    """The Ready condition of each object not converged."""
    objs = {f"xynergyservices/{o['metadata']['name']}": o
            for o in items(kube, f"{GROUP}/namespaces/{fleet.ns}/xynergyservices")}  # fmt: skip
    out = {}
    for name in left:
        ready = condition(objs.get(name.split(" ")[0], {}), "Ready")
        out[name] = f"{ready.get('status')} {ready.get('reason')}: {ready.get('message')}"
    return out


def during(proxy: CountingProxy, start: float, end: float) -> list[tuple[str, int]]:
    """The requests between two instants, by method and path, most frequent first."""
    seen = collections.Counter(f"{m} {p}" for t, m, p in proxy.requests if start <= t < end)
    return seen.most_common(8)


def writes_since(proxy: CountingProxy, mark: int) -> int:
    return sum(1 for _, method, _ in proxy.requests[mark:] if method in WRITES)


@pytest.mark.parametrize(("seconds", "pauses"), PAUSES)
def test_etcd_paused_mid_reconcile_backs_off_then_converges(
    kube: Kube,
    namespace: str,
    workdir: Path,
    counting_proxy: CountingProxy,
    counted_operator: Operator,
    record_property: pytest.RecordProperty,
    seconds: float,
    pauses: int,
) -> None:
    fleet = Fleet(namespace)
    for i in range(5):
        fleet.add_service(kube, f"svc-{i}")
    settle(kube, fleet)
    rates, convergence = [], []
    for n in range(pauses):
        mark = len(counting_proxy.requests)
        for name in fleet.services[:5]:
            fleet.bump(kube, name, f"reg.example/app:pause-{n}")
        for i in range(5):
            fleet.add_service(kube, f"during-{n}-{i}")
        kube.wait_for(
            "the operator to start writing",
            lambda mark=mark: writes_since(counting_proxy, mark) > 0,  # type: ignore[misc]
        )
        start = time.monotonic()
        with paused(workdir, "etcd"):
            time.sleep(seconds)  # the pause itself: its length is the fault injected
        end = time.monotonic()
        rates.append(round(counting_proxy.rate(start, end), 2))
        middle = (start + end) / 2
        first, second = counting_proxy.rate(start, middle), counting_proxy.rate(middle, end)
        busiest = during(counting_proxy, start, end)
        print(f"pause {n}: {first:.2f}/s then {second:.2f}/s; most sent: {busiest[:3]}")
        assert all(count <= max_repeats(seconds) for _, count in busiest), busiest
        assert counted_operator.proc is not None
        assert counted_operator.proc.poll() is None, "the operator exited while etcd was paused"
        convergence.append(round(settle(kube, fleet), 1))
    print(f"operator requests per second during {seconds:.0f} s etcd pauses: {rates}; "
          f"converged {convergence} s after each")  # fmt: skip
    record_property("requests_per_second", max(rates))
    record_property("max_convergence_seconds", max(convergence))
    record_property("objects", len(fleet.services))
    assert max(rates) <= MAX_REQUESTS_PER_SECOND, rates
    assert children_problems(kube, fleet) == []
