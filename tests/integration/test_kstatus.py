"""Flux / kstatus: the real sigs.k8s.io/cli-utils kstatus library (hack/kstatus, a small Go
program built with the machine's Go) reads every kind in every state as Flux's health checks
and `kstatus`-based tools do. Over the objects captured from the local cluster
(tests/data/health) and over the live objects test_argocd_health.py builds; the library's
verdict must also agree with the operator's own summary (`apis.conditions.kstatus`).

The binary is built once into .cache/kstatus/<hash of go.mod, go.sum and the sources>/.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_argocd_health import (  # noqa: F401 (the live objects' fixtures)
    CAPTURED,
    DATA,
    KINDS,
    Live,
    full_operator,
    live,
    providers,
)

from apis.conditions import Condition, kstatus
from controllers.devcluster import repo_root

SOURCE = repo_root() / "hack" / "kstatus"

EXPECTED = {
    "XynergyService": {"ready": "Current", "scaling": "Current", "reconciling": "InProgress",
                       "stalled": "Failed", "paused": "InProgress", "unobserved": "InProgress"},
    "ScalingPolicy": {"ready": "Current", "stalled": "Failed", "paused": "Current",
                      "held": "InProgress", "unobserved": "InProgress"},
    "Rollout": {"paused": "InProgress", "promoted": "Current", "pending": "InProgress",
                "stalled": "Failed", "unobserved": "InProgress"},
    "OAuthConnection": {"pending": "Failed", "connected": "Current", "degraded": "Current",
                        "client-missing": "Current", "stalled": "Failed",
                        "unobserved": "InProgress"},
}  # fmt: skip
"""kstatus: Stalled=True -> Failed; an unobserved generation, Reconciling=True or Ready not True
-> InProgress; Ready=True -> Current, also while scaling (Ready Scaling) or Degraded (kstatus
reads no Degraded condition). A person's task (authorize at the URL) is Failed."""


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted([*SOURCE.glob("go.*"), *SOURCE.glob("*.go")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def kstatus_bin() -> Path:
    """hack/kstatus built (or reused) under .cache/kstatus/<fingerprint>/."""
    cache = Path(os.environ.get("XYNERGY_CACHE", repo_root() / ".cache"))
    binary = cache / "kstatus" / _fingerprint() / "kstatus"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: hack/kstatus needs the machine's Go (README prerequisites)")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    partial = binary.with_suffix(".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    build = subprocess.run(
        [go, "build", "-trimpath", "-o", str(partial), "."],
        cwd=SOURCE, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    partial.rename(binary)
    return binary


def verdicts(binary: Path, objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The library's verdict per object, in order (the objects sent as one `kind: List`)."""
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    run = subprocess.run([binary], input=doc, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def ours(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    return kstatus(
        generation=obj["metadata"].get("generation"),
        observed_generation=status.get("observedGeneration"),
        conditions=[Condition.model_validate(c) for c in status.get("conditions") or []],
    ).value


def check(binary: Path, found: dict[tuple[str, str], dict[str, Any]]) -> None:
    keys = list(found)
    got = verdicts(binary, [found[k] for k in keys])
    assert [(v["kind"], v["name"]) for v in got] == [
        (k[0], found[k]["metadata"]["name"]) for k in keys
    ]
    table = {k: v["status"] for k, v in zip(keys, got, strict=True)}
    assert table == {k: EXPECTED[k[0]][k[1]] for k in keys}
    assert table == {k: ours(found[k]) for k in keys}, "the operator's own summary disagrees"


def test_captured_objects(kstatus_bin: Path) -> None:
    found = {
        (kind, state): yaml.safe_load((DATA / kind / f"{state}.yaml").read_text())
        for kind in KINDS
        for state in EXPECTED[kind]
    }
    check(kstatus_bin, found)


def test_live_objects(kstatus_bin: Path, live: Live) -> None:  # noqa: F811 (the fixture)
    check(kstatus_bin, {(k, s): live.get(k, s) for k, states in CAPTURED.items() for s in states})


def test_bad_input_names_the_problem(kstatus_bin: Path) -> None:
    run = subprocess.run([kstatus_bin], input="{not json", capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.startswith("kstatus: ")
