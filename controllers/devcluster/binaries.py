"""Find or build the upstream control-plane binaries (hack/controlplane/build.sh).

The build script owns the versions and the cache; this module runs it, streams its progress
lines to the caller and returns the bin directory.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = ["BINARIES", "BuildError", "ensure_binaries", "repo_root"]

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "helm",
)


class BuildError(RuntimeError):
    """A binary failed to build; the message names it, the command and the log."""


def repo_root() -> Path:
    """The checkout this package runs from (hack/ lives there)."""
    return Path(__file__).resolve().parents[2]


def ensure_binaries(progress: Callable[[str], None] = lambda _line: None) -> Path:
    """Build what is missing or stale and return the directory holding all binaries."""
    script = repo_root() / "hack" / "controlplane" / "build.sh"
    if not script.exists():
        raise BuildError(f"controlplane build: {script} not found")
    proc = subprocess.Popen(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        lines.append(line)
        progress(line)
    if proc.wait() != 0:
        failure = next((ln for ln in lines if ln.startswith("controlplane build:")), None)
        raise BuildError(failure or (lines[-1] if lines else "controlplane build failed"))
    return Path(lines[-1])
