"""ScalingPolicy end to end: a real Prometheus backfilled with days of a real daily pattern
(NAB's nyc_taxi, taxi demand every 30 minutes) plus a live scrape target, the operator under
KopfRunner, XynergyServices whose kwok Deployments are scaled through the scale subresource.

History is placed so that "now" is just before the steepest rise of a day (the forecast
must raise replicas before that load arrives) or just after a peak, at the steepest fall (it
must lower them, within the behaviour's step limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from kopf.testing import KopfRunner
from kube_support import Kube, run_operator
from lightkube import AsyncClient, KubeConfig
from prometheus import PrometheusServer, ScrapeTarget, Series

from apis.conditions import Condition, check_invariants
from controllers.core.errors import StalledError
from controllers.plugin import main as plugin
from controllers.scalingpolicy.reconciler import XS_KIND
from controllers.scalingpolicy.target import TargetClient

# The first 1,100 half-hours (~23 days) of NAB's nyc_taxi.csv (../shared/data), copied so the
# test runs wherever the repository is cloned; the test reads at most index ~1,060.
TAXI = Path(__file__).parent / "data" / "nyc_taxi_first_1100.csv"
API = "/apis/xynergy.io/v1alpha1"
DAYS = 8
STEP = 60.0


def taxi() -> tuple[np.ndarray, np.ndarray]:
    with TAXI.open() as fh:
        rows = list(csv.DictReader(fh))
    values = np.array([float(r["value"]) for r in rows])
    return np.arange(values.size) * 1800.0, values


def pick(values: np.ndarray, *, rising: bool) -> int:
    """The index (leaving DAYS of history) where the next hour rises (falls) the most."""
    first = DAYS * 48
    change = values[first + 2 : first + 2 + 14 * 48] - values[first : first + 14 * 48]
    return first + int(np.argmax(change) if rising else np.argmin(change))


def history(t: np.ndarray, v: np.ndarray, end: int, now: float) -> list[tuple[float, float]]:
    """DAYS of the series up to index `end`, shifted so `end` is 60 s ago, every minute."""
    grid = np.arange(t[end] - DAYS * 86400, t[end] + 1, STEP)
    values = np.interp(grid, t, v)
    shift = now - 60 - t[end]
    return [(float(g + shift), round(float(x), 2)) for g, x in zip(grid, values, strict=True)]


def scaling_operator(cluster: Path) -> AbstractContextManager[KopfRunner]:
    return run_operator(cluster, kinds=("xynergyservice", "scalingpolicy"))


def create(kube: Kube, path: str, body: dict[str, Any]) -> None:
    resp = kube.create(path, body)
    assert resp.status_code == 201, resp.text


def service(kube: Kube, ns: str, name: str, replicas: int) -> None:
    create(kube, f"{API}/namespaces/{ns}/xynergyservices", {
        "apiVersion": "xynergy.io/v1alpha1", "kind": "XynergyService",
        "metadata": {"name": name},
        "spec": {"image": "reg.example/app:1", "replicas": replicas,
                 "scaling": {"minInstances": 1, "maxInstances": 20}},
    })  # fmt: skip


def policy(
    kube: Kube, ns: str, name: str, url: str, scenario: str, per: float, **spec: Any
) -> None:
    create(kube, f"{API}/namespaces/{ns}/scalingpolicies", {
        "apiVersion": "xynergy.io/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": name if "target" not in spec else spec.pop("target")},
            "metric": {"source": "prometheus", "prometheusUrl": url,
                       "query": f'sum(load{{scenario="{scenario}"}})',
                       "targetPerInstance": per, **spec.pop("metric", {})},
            "mode": "predictive", "interval": "3s", "maxInstances": 20,
            "forecast": {"horizon": "60m", "historyWindow": f"{DAYS * 24}h",
                         "minimumHistory": "48h", "maxErrorPercent": 60, "startupSeconds": 30},
            **spec,
        },
    })  # fmt: skip


def policy_status(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    obj = kube.get(f"{API}/namespaces/{ns}/scalingpolicies/{name}").json()
    status: dict[str, Any] = obj.get("status") or {}
    conditions = [Condition.model_validate(c) for c in status.get("conditions", [])]
    if conditions:
        problems = check_invariants(
            generation=obj["metadata"]["generation"],
            observed_generation=status.get("observedGeneration"),
            conditions=conditions,
        )
        assert problems == [], problems
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def replicas(kube: Kube, ns: str, name: str) -> int | None:
    resp = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    return resp.json()["spec"]["replicas"] if resp.status_code == 200 else None


def check_plugin(ns: str, name: str) -> None:
    """`kubectl xynergy forecast`: the forecast from status, recent load from Prometheus."""
    runner = CliRunner()
    out = runner.invoke(plugin, ["forecast", name, "-n", ns, "-o", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["forecast"]
    assert data["recent"], "recent load read from the policy's Prometheus"
    text = runner.invoke(plugin, ["forecast", name, "-n", ns])
    assert text.exit_code == 0, text.output
    assert "Plan:" in text.output
    assert max(len(line) for line in text.output.splitlines()) <= 80


def until(kube: Kube, what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    kube.wait_for(what, check, timeout=timeout)


def test_replicas_follow_the_forecast_dry_run_changes_nothing_and_an_outage_holds(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str,
    prometheus_factory: Callable[..., PrometheusServer], scrape_target: ScrapeTarget,
) -> None:  # fmt: skip
    t, v = taxi()
    rise, fall = pick(v, rising=True), pick(v, rising=False)
    now = time.time()
    labels = {"job": "load0", "instance": scrape_target.address}
    scrape_target.set("load", float(v[rise]), scenario="rise")
    scrape_target.set("load", float(v[fall]), scenario="fall")
    prom = prometheus_factory(targets=[scrape_target.address], backfill=[
        Series("load", {**labels, "scenario": "rise"}, history(t, v, rise, now)),
        Series("load", {**labels, "scenario": "fall"}, history(t, v, fall, now)),
    ])  # fmt: skip
    per_rise = float(v[rise]) / 2.5  # the load now needs 3 instances; the next hour more
    per_fall = float(v[fall]) / 3.5  # 4 now, fewer soon
    ns = namespace
    with scaling_operator(cluster):
        for name, count in (("rise", 2), ("fall", 10), ("dry", 2)):
            service(kube, ns, name, count)
        until(kube, "Deployments", lambda: replicas(kube, ns, "dry") == 2)
        policy(kube, ns, "rise", prom.url, "rise", per_rise)
        down = {"scaleDown": {"stabilizationWindowSeconds": 0,
                              "policies": [{"type": "Pods", "value": 3, "periodSeconds": 600}]}}  # fmt: skip
        policy(kube, ns, "fall", prom.url, "fall", per_fall, behavior=down)
        policy(kube, ns, "dry", prom.url, "rise", per_rise, dryRun=True)

        reactive = math.ceil(float(v[rise]) / per_rise)
        until(kube, "rise raised above what the load now needs",
              lambda: (replicas(kube, ns, "rise") or 0) > reactive)  # fmt: skip
        s = policy_status(kube, ns, "rise")
        assert s["mode"] == "predictive", s.get("modeReason")
        assert 0 < len(s["forecast"]) <= 24
        assert s["lastScaleTime"]
        check_plugin(ns, "rise")
        # the dry run decided the same plan from the same data, and changed nothing
        until(kube, "dry run plan", lambda: policy_status(kube, ns, "dry").get("desiredInstances")
              == policy_status(kube, ns, "rise")["desiredInstances"])  # fmt: skip
        assert replicas(kube, ns, "dry") == 2
        assert condition(policy_status(kube, ns, "dry"), "Ready")["reason"] == "DryRun"
        # after the peak: lowered, one step of at most 3 per 10 minutes
        until(kube, "fall lowered", lambda: replicas(kube, ns, "fall") == 7)
        assert policy_status(kube, ns, "fall")["lastDecision"]["reason"] == "ScaleDownLimit"

        held = replicas(kube, ns, "rise")
        prom.stop()
        until(kube, "Degraded while Prometheus is down", lambda: condition(
            policy_status(kube, ns, "rise"), "Degraded").get("reason") == "MetricsUnreachable")  # fmt: skip
        s = policy_status(kube, ns, "rise")
        assert condition(s, "Ready")["status"] == "False"
        assert f"holding {held} instances" in condition(s, "Degraded")["message"]
        assert replicas(kube, ns, "rise") == held
        prom.start()
        until(kube, "recovered", lambda: condition(
            policy_status(kube, ns, "rise"), "Ready").get("status") == "True")  # fmt: skip
        assert condition(policy_status(kube, ns, "rise"), "Degraded").get("reason") != (
            "MetricsUnreachable"
        )


class PoissonMeans:
    """Request counts, Poisson at `rate` per second (one count per whole second from `t0`),
    as the 15 s mean a `rate(x[15s])` query reads; `live` keeps a scrape target's gauge on it
    every half second (Prometheus scrapes it every second)."""

    def __init__(self, t0: float, rate: float, seconds: int = 4000, seed: int = 5) -> None:
        counts = np.random.default_rng(seed).poisson(rate, seconds).astype(float)
        self.t0, self.cum = t0, np.concatenate([[0.0], np.cumsum(counts)])

    def at(self, t: float) -> float:
        i = int(t - self.t0)
        return round(float(self.cum[i] - self.cum[i - 15]) / 15, 4)

    @contextlib.contextmanager
    def live(self, target: ScrapeTarget, **labels: str) -> Iterator[None]:
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                target.set("load", self.at(time.time()), **labels)
                stop.wait(0.5)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def test_a_stated_averaging_window_adds_headroom_for_the_per_second_noise(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str,
    prometheus_factory: Callable[..., PrometheusServer], scrape_target: ScrapeTarget,
) -> None:  # fmt: skip
    """Requests at 20/s (Poisson) seen as a 15 s mean, 5 per instance: the mean needs 4
    instances. With `averagingWindowSeconds: 15` the policy reads the query at 5 s steps from
    Prometheus and provisions for the per-second scatter: with no capacity stated the target
    is the limit, exceeded about half the seconds at the mean, and the priced headroom cuts
    that to 0.4 of it (z ~0.84: 20 + 0.84 sqrt(20) = 23.8, 5 instances). The same policy
    without it provisions for the mean."""
    now = time.time()
    load = PoissonMeans(now - 2100, 20.0)
    labels = {"scenario": "noisy"}  # the estimate's warm-up reads the last 1800 s
    backfilled = [(t, load.at(t)) for t in np.arange(now - 2000, now - 2, 1.0)]
    series = Series("load", {"job": "load0", "instance": scrape_target.address, **labels},
                    backfilled)  # fmt: skip
    ns = namespace
    with load.live(scrape_target, **labels):
        prom = prometheus_factory(targets=[scrape_target.address], backfill=[series])
        with scaling_operator(cluster):
            for name in ("plain", "noisy"):
                service(kube, ns, name, 4)
            until(kube, "Deployments", lambda: replicas(kube, ns, "noisy") == 4)
            for name, window in (("plain", None), ("noisy", 15)):
                metric = {"averagingWindowSeconds": window} if window else {}
                policy(kube, ns, name, prom.url, "noisy", 5.0, metric=metric)
            until(kube, "noisy provisioned for the per-second load",
                  lambda: (replicas(kube, ns, "noisy") or 0) >= 5)  # fmt: skip
            s = policy_status(kube, ns, "noisy")
            assert "dispersion headroom" in s["lastDecision"]["message"]
            assert (replicas(kube, ns, "noisy") or 0) <= 6  # priced: at most 1.3 x the demand
            until(kube, "plain decided", lambda: "lastDecision" in policy_status(kube, ns, "plain"))
            plain = policy_status(kube, ns, "plain")
            assert "dispersion headroom" not in plain["lastDecision"]["message"]
            assert (replicas(kube, ns, "plain") or 0) <= 5  # the mean's own scatter at most


def spec_replicas(kube: Kube, ns: str, name: str) -> int | None:
    obj = kube.get(f"{API}/namespaces/{ns}/xynergyservices/{name}").json()
    value = obj["spec"].get("replicas")
    return None if value is None else int(value)


async def _restores(cluster: Path, ns: str) -> None:
    """TargetClient.restore on target "edited" (spec.replicas 9, the policy's last write 6).
    First what settling a scale whose response was lost stands on: a write through the
    scale subresource moves the target's generation by exactly one, and `reread` reads it
    from the apiserver."""
    client = TargetClient(
        AsyncClient(config=KubeConfig.from_file(str(cluster))), XS_KIND,
        limit=asyncio.Semaphore(1),
    )  # fmt: skip
    before = (await client.reread(ns, "edited")).service.metadata.generation
    assert before is not None
    await client.scale(ns, "edited", 10)
    after = (await client.reread(ns, "edited")).service
    assert (after.spec.replicas, after.metadata.generation) == (10, before + 1)
    await client.scale(ns, "edited", 9)
    assert not await client.restore(ns, "edited", expected=6, replicas=None)
    with pytest.raises(StalledError, match=r"spec\.replicas"):
        await client.restore(ns, "edited", expected=9, replicas=-1)


def test_deleting_a_policy_gives_the_target_its_replicas_back_unless_edited_since(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str,
    prometheus_factory: Callable[..., PrometheusServer], scrape_target: ScrapeTarget,
) -> None:  # fmt: skip
    """A reactive policy scales two targets (spec.replicas 2, and unset) to 6; deleting it
    gives each back what it had (2; unset) through the finalizer. A third target a person
    changed after the policy's last write (the policy paused, keeping its record and
    finalizer) keeps that edit; the restore's JSON patch tells a failed `test` op from another 422."""
    scrape_target.set("load", 300.0, scenario="flat")
    prom = prometheus_factory(targets=[scrape_target.address])
    ns = namespace
    path = f"{API}/namespaces/{ns}"
    with scaling_operator(cluster):
        service(kube, ns, "two", 2)
        service(kube, ns, "edited", 2)
        create(kube, f"{path}/xynergyservices", {
            "apiVersion": "xynergy.io/v1alpha1", "kind": "XynergyService",
            "metadata": {"name": "unset"},
            "spec": {"image": "reg.example/app:1", "scaling": {"minInstances": 1, "maxInstances": 20}},
        })  # fmt: skip
        until(kube, "load scraped", lambda: bool(prom.query('sum(load{scenario="flat"})')))
        for name in ("two", "unset", "edited"):
            policy(kube, ns, name, prom.url, "flat", 50.0, mode="reactive")
        for name in ("two", "unset", "edited"):
            until(kube, f"{name} scaled to 6", lambda n=name: spec_replicas(kube, ns, n) == 6)
            until(kube, f"{name} finalizer", lambda n=name: "xynergy.io/finalizer" in (
                kube.get(f"{path}/scalingpolicies/{n}").json()["metadata"].get("finalizers") or []
            ))  # fmt: skip
        merge = {"Content-Type": "application/merge-patch+json"}
        # paused (else it scales the edit back down), then a person's edit of the target
        paused = {"spec": {"paused": True}}
        resp = kube.http.patch(f"{path}/scalingpolicies/edited", json=paused, headers=merge)
        assert resp.status_code == 200, resp.text
        until(kube, "edited paused", lambda: condition(
            policy_status(kube, ns, "edited"), "Ready").get("reason") == "Paused")  # fmt: skip
        # a paused policy keeps its record and finalizer (unpaused, it still knows the count
        # from before it); deleted, it leaves a person's later edit as is
        assert policy_status(kube, ns, "edited")["scaledTarget"]["originalReplicas"] == 2
        assert "xynergy.io/finalizer" in (
            kube.get(f"{path}/scalingpolicies/edited").json()["metadata"].get("finalizers") or []
        )
        edit = {"spec": {"replicas": 9}}
        resp = kube.http.patch(f"{path}/xynergyservices/edited", json=edit, headers=merge)
        assert resp.status_code == 200, resp.text
        # a scale's generation step, then the restore's JSON patch against the apiserver: a
        # failed `test` is "changed since" (False), another refusal is said with its message
        asyncio.run(_restores(cluster, ns))
        assert spec_replicas(kube, ns, "edited") == 9
        for name in ("two", "unset", "edited"):
            assert kube.delete(f"{path}/scalingpolicies/{name}").status_code == 200
        for name in ("two", "unset", "edited"):
            until(kube, f"policy {name} gone", lambda n=name: kube.get(
                f"{path}/scalingpolicies/{n}").status_code == 404)  # fmt: skip
        assert spec_replicas(kube, ns, "two") == 2
        assert spec_replicas(kube, ns, "unset") is None
        assert spec_replicas(kube, ns, "edited") == 9


def test_managed_fields_tell_the_operators_scale_from_a_persons(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str
) -> None:
    """What settling a scale whose response was lost stands on (review N 1): after the
    operator's write through the scale subresource, `reread` reports spec.replicas owned by
    the operator's field manager (`Target.ours`), also after another spec change (a new
    image); a person's scale to another count takes it over, one to the same count does not;
    and the watch's cache (`TargetCache`) keeps no owners."""
    ns = namespace
    path = f"{API}/namespaces/{ns}/xynergyservices"
    merge = {"Content-Type": "application/merge-patch+json"}
    service(kube, ns, "owned", 2)

    def by_kubectl(sub: str, patch: dict[str, Any]) -> None:
        resp = kube.http.patch(f"{path}/owned{sub}", params={"fieldManager": "kubectl"},
                               json=patch, headers=merge)  # fmt: skip
        assert resp.status_code == 200, resp.text

    async def check() -> None:
        # a client without a default field manager: the scale must name its own
        client = TargetClient(
            AsyncClient(config=KubeConfig.from_file(str(cluster))), XS_KIND,
            limit=asyncio.Semaphore(1),
        )  # fmt: skip
        created = await client.reread(ns, "owned")
        assert created.replicas_managers is not None
        assert not created.ours(2)  # the creator's
        await client.scale(ns, "owned", 5)
        assert (await client.reread(ns, "owned")).ours(5)
        by_kubectl("", {"spec": {"image": "reg.example/app:2"}})  # another spec change
        by_kubectl("/scale", {"spec": {"replicas": 5}})  # the same count: no takeover
        assert (await client.reread(ns, "owned")).ours(5)
        by_kubectl("/scale", {"spec": {"replicas": 7}})
        by_kubectl("/scale", {"spec": {"replicas": 5}})  # a person's 5 now
        seen = await client.reread(ns, "owned")
        assert seen.service.spec.replicas == 5
        assert not seen.ours(5)
        assert seen.replicas_managers == frozenset({"kubectl"})
        client.cache.observe(kube.get(f"{path}/owned").json(), deleted=False)
        cached = client.cache.get(ns, "owned")
        assert cached is not None
        assert cached.replicas_managers is None

    asyncio.run(check())
