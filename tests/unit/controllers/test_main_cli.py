"""`python -m controllers` parses its command line before starting anything."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"KUBECONFIG": "/nonexistent", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "controllers", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_help_describes_the_operator_and_starts_nothing() -> None:
    out = _run("--help")
    assert out.returncode == 0, out.stderr
    assert "usage: python -m controllers" in out.stdout
    assert "XYNERGY_" in out.stdout
    assert "kopf" not in out.stderr.lower()  # no operator log lines: nothing was started


@pytest.mark.parametrize("arg", ["--bogus", "extra"])
def test_an_unknown_argument_is_an_error(arg: str) -> None:
    out = _run(arg)
    assert out.returncode == 2
    assert "unrecognized arguments" in out.stderr
