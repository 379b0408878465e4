"""`python -m services.<name>` as a container starts it: each service listens on Cloud Run's
``PORT`` when it has no port variable of its own, and a bad setting stops the start with one
line naming the variable (exit 2), not a traceback. Real processes, real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from controllers.devcluster.processes import free_port

pytestmark = pytest.mark.integration

KEY = "k" * 40  # the gateway's internal signing key; any 32+ characters
SERVICES = ("slack", "gmail", "analytics", "marketing", "aso", "research")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XYNERGY_") and k != "PORT"}
    return {**env, "XYNERGY_INTERNAL_SIGNING_KEY": KEY, **extra}


def _healthy(url: str, proc: subprocess.Popen[bytes], *, timeout: float = 60.0) -> int:
    """The first answer of GET url (its status), polling until the process serves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before serving")
        try:
            return httpx.get(url, timeout=1.0).status_code
        except httpx.TransportError:
            time.sleep(0.1)  # nothing to wait on but the socket itself
    raise AssertionError(f"{url} did not answer in {timeout} s")


@pytest.mark.parametrize("name", SERVICES)
def test_it_listens_on_cloud_runs_port(name: str) -> None:
    port = free_port()
    env = _env(PORT=str(port), **{f"XYNERGY_{name.upper()}_HOST": "127.0.0.1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert _healthy(f"http://127.0.0.1:{port}/healthz", proc) == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _start_fails(name: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"services.{name}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.strip().splitlines()[-1]


def test_a_port_that_is_not_one_is_named() -> None:
    line = _start_fails("slack", _env(PORT="99999"))
    assert line == "slack: settings error: PORT: expected a TCP port (1-65535), got '99999'"
    line = _start_fails("crm", _env(XYNERGY_CRM_PORT="http"))
    assert line.startswith("crm: settings error: XYNERGY_CRM_PORT: expected a TCP port")


def test_a_missing_key_is_named_without_its_value() -> None:
    env = _env(PORT=str(free_port()), XYNERGY_INTERNAL_SIGNING_KEY="short")
    line = _start_fails("analytics", env)
    assert line.startswith(
        "analytics: settings error: XYNERGY_INTERNAL_SIGNING_KEY / "
        "XYNERGY_INTERNAL_SIGNING_KEY_FILE: a key of at least 32 characters is required"
    )
    assert "short" not in line


def test_a_setting_out_of_its_range_is_named_without_its_value() -> None:
    line = _start_fails("slack", _env(XYNERGY_SLACK_TEAMS_CACHE_SECONDS="-57"))
    assert line.startswith("slack: settings error: XYNERGY_SLACK_TEAMS_CACHE_SECONDS: ")
    assert "greater than or equal to 0" in line
    assert "-57" not in line


def test_the_crm_without_credentials_says_what_to_set() -> None:
    env = {
        k: v
        for k, v in _env(XYNERGY_CRM_HOST="127.0.0.1").items()
        if k not in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")
    }
    env["GOOGLE_APPLICATION_CREDENTIALS"] = "/nonexistent/xynergy-key.json"
    line = _start_fails("crm", env)
    assert line.startswith("crm: settings error: Firestore: no usable Application Default")
    assert "/nonexistent/xynergy-key.json" in line  # the library's reason, on the same line
    assert "FIRESTORE_EMULATOR_HOST" in line
