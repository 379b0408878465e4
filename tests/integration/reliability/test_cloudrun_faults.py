"""Cloud Run faults (issue 19 item 3): the operator (`python -m controllers`, the real
google-cloud-run client inside) against the fake Cloud Run Admin API v2 while a seeded share of
its requests answer 429/503, operations are slow and some fail half-way (the revision created,
the operation ended 13 INTERNAL). Every XynergyService converges (Ready at its generation), the
fake holds exactly one revision per distinct template (none deployed twice) and the operator's
request count stays within a bounded budget per service (no tight loop).

The seed is random and in the failure message; XYNERGY_CHAOS_SEED replays a run. Each run
prints its row of the reliability report (`pytest -s`).
"""

from __future__ import annotations

import collections
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.cloudrun import FakeCloudRun
from google.cloud import run_v2
from kube_support import Kube
from test_rollout_support import operator_process
from test_xynergyservice import get_xs, wait_ready
from test_xynergyservice_cloudrun import PROJECT, REGION, create_cloudrun_xs

from .support import GROUP, Fleet, converge, items

IMAGE = "us-docker.pkg.dev/xynergy-test/apps/ai"
# Requests one service may cost while converging under these faults: a create or update, its
# operation polls (the provider's interval grows 1.5x to 5 s), the reads around them and the
# client's retries of the 20% that fail. A retry loop without backoff spends far more.
REQUEST_BUDGET_PER_SERVICE = 40
# The fleet's requests per second to the fake per service, averaged over the faults (measured:
# 0.2-0.5): a tight loop of even one service runs at hundreds per second.
RATE_BOUND_PER_SERVICE = 2.0


@dataclass(frozen=True)
class Size:
    services: int
    operation_delay: float
    half_way: int
    """Operations that fail half-way in each wave (the first ones that deploy a revision)."""
    waves: int
    """Wave 1 creates the services; each later wave gives every service a new image."""
    bump_every: int = 4
    """Every n-th service gets a second image while its first rollout is in flight."""
    error_rate: float = 0.2


SIZES = [
    pytest.param(Size(services=20, operation_delay=2.0, half_way=3, waves=2), id="ci"),
    pytest.param(Size(services=200, operation_delay=8.0, half_way=30, waves=4), id="soak",
                 marks=pytest.mark.soak),
]  # fmt: skip


@contextmanager
def cloudrun_operator(
    kube: Kube, cluster: Path, namespace: str, log: Path
) -> Iterator[FakeCloudRun]:
    """A fake Cloud Run of this test's own and an operator process that watches only
    `namespace` and talks to it (every request the fake counts is this operator's). On the
    way out the services are deleted while the operator still runs (their finalizers)."""
    with (
        FakeCloudRun(operation_delay=0.1) as fake,
        operator_process(
            cluster, log, XYNERGY_CLOUDRUN_ENDPOINT=fake.endpoint, XYNERGY_NAMESPACE=namespace
        ),
    ):
        try:
            yield fake
        finally:
            fake.error_rate(0)
            fake.slow_operations(0.1)
            delete_all(kube, namespace)
    assert not fake.crashes, fake.crashes[0]


def delete_all(kube: Kube, namespace: str) -> None:
    path = f"{GROUP}/namespaces/{namespace}/xynergyservices"
    assert kube.delete(path).status_code == 200
    kube.wait_for("the services to be finalized", lambda: not items(kube, path), timeout=60)


def duplicates(fake: FakeCloudRun, service: str) -> list[str]:
    """Revisions of `service` whose configuration another of its revisions already has."""
    parent = f"projects/{PROJECT}/locations/{REGION}/services/{service}/revisions/"
    seen: dict[bytes, str] = {}
    out = []
    with fake.state.lock:
        templates = {n: t for n, t in fake.state.revision_templates.items() if n.startswith(parent)}
    for name, template in sorted(templates.items()):
        config = run_v2.RevisionTemplate(template, revision="")
        key = run_v2.RevisionTemplate.serialize(config)
        if key in seen:
            out.append(f"{name.rpartition('/')[2]} repeats {seen[key]}")
        seen.setdefault(key, name.rpartition("/")[2])
    return out


def test_operation_failed_half_way_is_redeployed_without_a_new_revision(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str, tmp_path: Path
) -> None:
    with cloudrun_operator(kube, cluster, namespace, tmp_path / "operator.log") as fake:
        fake.fail_operations_half_way(1)
        create_cloudrun_xs(kube, namespace, "half", image=f"{IMAGE}:1")
        obj = wait_ready(kube, namespace, "half", timeout=45)
        assert not fake.state.interruptions, "the half-way failure was never hit"
        assert obj["status"]["latestReadyRevision"] == "half-00001"
        assert fake.revisions_of(PROJECT, REGION, "half") == ["half-00001"]


@pytest.mark.parametrize("size", SIZES)
def test_cloudrun_faults_converge_without_duplicates_or_a_tight_loop(
    kube: Kube,
    cluster: Path,
    crds_installed: list[str],
    namespace: str,
    tmp_path: Path,
    size: Size,
) -> None:
    seed = int(os.environ.get("XYNERGY_CHAOS_SEED") or random.randrange(1 << 30))
    fleet = Fleet(namespace, services=[f"cr-{i:03d}" for i in range(size.services)])
    with cloudrun_operator(kube, cluster, namespace, tmp_path / "operator.log") as fake:
        try:
            run = converge_under_faults(kube, fake, fleet, size, seed=seed)
        except AssertionError as exc:
            raise AssertionError(
                f"chaos seed {seed} (XYNERGY_CHAOS_SEED replays it): {exc}"
            ) from exc
        assert sum(fake.random_errors.values()) > 0, "no request failed: the faults were off"
        dups = {name: d for name in fleet.services if (d := duplicates(fake, name))}
        assert dups == {}, f"revisions deployed twice (seed {seed})"
        check_revisions(kube, fake, fleet)
    print(run.row(size, seed=seed, errors=dict(fake.random_errors)))
    assert len(run.requests) <= REQUEST_BUDGET_PER_SERVICE * size.services * size.waves, (
        f"{len(run.requests)} requests for {size.services} services: a loop without backoff"
    )
    assert run.rate <= RATE_BOUND_PER_SERVICE * size.services, (
        f"{run.rate:.1f} requests/s during the faults (seed {seed})"
    )


@dataclass(frozen=True)
class Run:
    """What one run under faults measured."""

    requests: list[float]
    """When the fake received each request, while the faults were on."""
    waves: list[float]
    """Seconds each wave took to converge."""

    @property
    def rate(self) -> float:
        return len(self.requests) / max(sum(self.waves), 1e-9)

    def row(self, size: Size, *, seed: int, errors: dict[int, int]) -> str:
        """This run's row of the reliability report."""
        scenario = (
            f"cloudrun faults ({size.services} services x {size.waves} waves, "
            f"{size.error_rate:.0%} 429/503, operations {size.operation_delay:g} s, "
            f"{size.half_way} failed half-way per wave, seed {seed})"
        )
        return (
            f"\nreliability row | {scenario} | runs 1 | converged {size.services}/"
            f"{size.services} | lost 0 | duplicates 0 | max convergence {max(self.waves):.1f} s"
            f" | requests/s {self.rate:.1f} (peak {peak_per_second(self.requests)}) | "
            f"requests/service/wave {len(self.requests) / size.services / size.waves:.1f} | "
            f"errors injected {errors}"
        )


def converge_under_faults(
    kube: Kube, fake: FakeCloudRun, fleet: Fleet, size: Size, *, seed: int
) -> Run:
    """Turn the faults on, put the fleet in flight wave after wave, each converged before the
    next, then turn the random errors off."""
    fake.error_rate(size.error_rate, seed=seed)
    fake.slow_operations(size.operation_delay)
    start, waves = time.monotonic(), []
    for wave in range(1, size.waves + 1):
        began = time.monotonic()
        fake.fail_operations_half_way(size.half_way)
        put_in_flight(kube, fleet, size, wave=wave)
        converge(kube, fleet, timeout=45 + size.services * size.operation_delay / 4)
        assert not fake.state.interruptions, f"not every half-way failure of wave {wave} was hit"
        waves.append(time.monotonic() - began)
    end = time.monotonic()
    fake.error_rate(0)
    return Run([t for t, _rpc, _code in list(fake.log) if start <= t < end], waves)


def put_in_flight(kube: Kube, fleet: Fleet, size: Size, *, wave: int) -> None:
    """Wave 1 creates the services (every n-th gets a second image while the first is
    deploying); a later wave gives each service a new image."""
    if wave > 1:
        for name in fleet.services:
            fleet.bump(kube, name, f"{IMAGE}:w{wave}")
        return
    for name in fleet.services:
        create_cloudrun_xs(kube, fleet.ns, name, image=f"{IMAGE}:1")
    for name in fleet.services[:: size.bump_every]:
        fleet.bump(kube, name, f"{IMAGE}:2")


def check_revisions(kube: Kube, fake: FakeCloudRun, fleet: Fleet) -> None:
    """Each service serves the revision of its generation, with its image; the fake has no
    revision beyond one per image the spec named."""
    for name in fleet.services:
        obj = get_xs(kube, fleet.ns, name)
        gen = obj["metadata"]["generation"]
        assert obj["status"]["latestReadyRevision"] == f"{name}-{gen:05d}", obj["status"]
        full = f"projects/{PROJECT}/locations/{REGION}/services/{name}"
        service = fake.state.get_service(full)
        assert service.template.containers[0].image == obj["spec"]["image"]
        assert len(fake.revisions_of(PROJECT, REGION, name)) <= gen, name


def peak_per_second(times: list[float]) -> int:
    """The most requests in one whole second (by the second since the first)."""
    if not times:
        return 0
    buckets = collections.Counter(int(t - times[0]) for t in times)
    return max(buckets.values())
