"""Rollout analysis end to end on the Cloud Run backend: a real Prometheus scrapes a live
target exporting a latency gauge per revision (the shape the gateway's per-revision metrics
take), the operator judges every interval with intelligence.canary. A bad canary is rolled
back within 2 analysis intervals with the evidence in a condition and an Event; a healthy one
is promoted through every step; one too noisy to judge is extended (weight one step up) and
paused, never promoted."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.cloudrun import FakeCloudRun
from kube_support import Kube
from prometheus import PrometheusServer, ScrapeTarget
from test_rollout_support import (
    Operator,
    create_rollout,
    events_of,
    operator_process,
    phase_is,
    served,
    wait_rollout,
)
from test_xynergyservice import wait_ready
from test_xynergyservice_cloudrun import create_cloudrun_xs, unique

INTERVAL = 5.0


class Latency:
    """Sets `latency_ms{revision=...}` to a fresh random value every 0.2 s per revision."""

    def __init__(self, target: ScrapeTarget) -> None:
        self.target = target
        self.profiles: dict[str, tuple[float, float]] = {}
        self.stop = threading.Event()
        self.rng = random.Random(7)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            for revision, (mean, sd) in list(self.profiles.items()):
                self.target.set("latency_ms", self.rng.gauss(mean, sd), revision=revision)


@pytest.fixture(scope="module")
def latency(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Latency, str]]:
    with ScrapeTarget() as target:
        server = PrometheusServer(tmp_path_factory.mktemp("prom"), targets=[target.address])
        server.start()
        gen = Latency(target)
        gen.thread.start()
        try:
            yield gen, server.url
        finally:
            gen.stop.set()
            server.stop()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCloudRun]:
    with FakeCloudRun(operation_delay=0.1) as fake:
        yield fake


@pytest.fixture(scope="module")
def analysis_operator(
    cluster: Path,
    crds_installed: list[str],
    fake: FakeCloudRun,
    latency: tuple[Latency, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("rollout-analysis") / "operator.log"
    env = {
        "XYNERGY_CLOUDRUN_ENDPOINT": fake.endpoint,
        "XYNERGY_ROLLOUT_PROMETHEUS_URL": latency[1],
        "XYNERGY_ROLLOUT_QUERY_STEP_SECONDS": "1",
    }
    with operator_process(cluster, log, **env) as op:
        yield op


def start(
    kube: Kube, ns: str, gen: Latency, *, canary: tuple[float, float], tolerance: float
) -> tuple[str, dict[str, Any]]:
    svc = unique("ai")
    create_cloudrun_xs(kube, ns, svc)
    wait_ready(kube, ns, svc)
    gen.profiles[f"{svc}-00001"] = (100.0, 3.0)
    analysis = {
        "interval": f"{INTERVAL:.0f}s",
        "minimumSamples": 3,
        "metrics": [
            {
                "name": "latency",
                "query": 'latency_ms{revision="{{revision}}"}',
                "tolerancePercent": tolerance,
                "critical": True,
            }
        ],
    }
    steps = [
        {"setWeight": 20},
        {"analysis": {"duration": "10s"}},
        {"setWeight": 50},
        {"analysis": {"duration": "10s"}},
    ]
    create_rollout(kube, ns, "ro", target=svc, image="us-docker.pkg.dev/xynergy-test/apps/ai:2",
                   strategy={"canary": {"steps": steps}}, analysis=analysis)  # fmt: skip
    status = wait_rollout(kube, ns, "ro", "canary revision known",
                          lambda s: bool(s.get("canaryRevision")))["status"]  # fmt: skip
    gen.profiles[status["canaryRevision"]] = canary
    return svc, status


def test_bad_canary_rolled_back_within_two_intervals_with_evidence(
    kube: Kube, analysis_operator: Operator, namespace: str, fake: FakeCloudRun,
    latency: tuple[Latency, str],
) -> None:  # fmt: skip
    svc, _ = start(kube, namespace, latency[0], canary=(150.0, 3.0), tolerance=10)
    status = wait_rollout(kube, namespace, "ro", "rolled back", phase_is("RolledBack"),
                          timeout=120)["status"]  # fmt: skip
    assert served(fake, svc) == [(f"{svc}-00001", 100, "")]
    runs = status["analysisRuns"]
    assert runs[-1]["verdict"] == "Failed"
    assert runs[-1]["look"] <= 2, runs
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "AnalysisFailed"
    for token in ("latency: High", "p=", "effect=", "MDE="):
        assert token in stalled["message"]
    analysis = next(c for c in status["conditions"] if c["type"] == "Analysis")
    assert analysis["status"] == "False"
    warnings = [e for e in events_of(kube, namespace, "ro") if e["type"] == "Warning"]
    assert any(e["reason"] == "AnalysisFailed" and "MDE=" in e["message"] for e in warnings)


def test_healthy_canary_promoted_through_every_step(
    kube: Kube, analysis_operator: Operator, namespace: str, latency: tuple[Latency, str],
) -> None:  # fmt: skip
    start(kube, namespace, latency[0], canary=(100.0, 3.0), tolerance=10)
    status = wait_rollout(kube, namespace, "ro", "promoted", phase_is("Promoted"),
                          timeout=150)["status"]  # fmt: skip
    steps = {run["stepIndex"] for run in status["analysisRuns"]}
    assert steps == {1, 3}, status["analysisRuns"]
    assert status["analysisRuns"][-1]["verdict"] == "Successful"


def test_canary_too_noisy_to_judge_is_extended_not_promoted(
    kube: Kube, analysis_operator: Operator, namespace: str, latency: tuple[Latency, str],
) -> None:  # fmt: skip
    # a 0.5 % regression cannot be detected from a few noisy samples: underpowered
    start(kube, namespace, latency[0], canary=(100.0, 30.0), tolerance=0.5)
    status = wait_rollout(kube, namespace, "ro", "paused", phase_is("Paused"), timeout=120)[
        "status"
    ]
    assert status["currentStepIndex"] == 1
    assert status["canaryWeight"] == 50, "extended with the weight raised one step"
    assert status["extendedLooks"] >= 1
    assert all(run["verdict"] != "Successful" for run in status["analysisRuns"])
    reasons = [c["reason"] for c in status["conditions"] if c["type"] == "Reconciling"]
    assert reasons == ["AnalysisUnderpowered"]
