"""XYNERGY_OAUTH_* settings are checked when the operator starts: a refresh claim too short
for the refresh's provider calls is refused naming both settings and the rule, and the check
loads no authlib (an operator without connections never imports it)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import kopf
import pytest

from controllers.oauthconnection import handlers
from controllers.oauthconnection.settings import OAuthSettings, SettingsError

check_settings = cast(Callable[[], None], handlers.check_settings)  # kopf's startup handler

RULE = (
    "XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS ({claim}) must be more than 3 x "
    "XYNERGY_OAUTH_HTTP_TIMEOUT_SECONDS ({timeout}), {floor} s"
)


@pytest.mark.parametrize(
    ("claim", "timeout", "floor"), [("30", "10", "30"), ("20", "10", "30"), ("60", "25", "75")]
)
def test_a_claim_not_above_three_http_timeouts_is_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, claim: str, timeout: str, floor: str
) -> None:
    monkeypatch.setenv("XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS", claim)
    monkeypatch.setenv("XYNERGY_OAUTH_HTTP_TIMEOUT_SECONDS", timeout)

    with pytest.raises(SettingsError) as raised:
        OAuthSettings.load()

    message = str(raised.value)
    assert message.startswith("invalid OAuthConnection settings: ")
    assert RULE.format(claim=claim, timeout=timeout, floor=floor) in message
    assert "two provider calls" in message


@pytest.mark.parametrize(("claim", "timeout"), [("31", "10"), ("60", None), ("15", "4.9")])
def test_a_claim_above_three_http_timeouts_is_taken(
    monkeypatch: pytest.MonkeyPatch, claim: str, timeout: str | None
) -> None:
    monkeypatch.setenv("XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS", claim)
    if timeout is not None:
        monkeypatch.setenv("XYNERGY_OAUTH_HTTP_TIMEOUT_SECONDS", timeout)

    settings = OAuthSettings.load()

    assert settings.refresh_claim_seconds == int(claim)


def test_a_field_out_of_its_range_is_named_by_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XYNERGY_OAUTH_HTTP_TIMEOUT_SECONDS", "0")

    with pytest.raises(SettingsError, match="XYNERGY_OAUTH_HTTP_TIMEOUT_SECONDS: Input should"):
        OAuthSettings.load()


def test_the_startup_check_fails_permanently_so_kopf_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A permanent error: kopf does not retry the startup handler and ends the operator once
    its startup is done (tests/integration/test_oauthconnection_restart.py runs it)."""
    monkeypatch.setenv("XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS", "20")

    with pytest.raises(kopf.PermanentError, match="REFRESH_CLAIM_SECONDS \\(20\\) must be more"):
        check_settings()

    monkeypatch.delenv("XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS")
    check_settings()  # the defaults: 60 s > 3 x 10 s


def test_the_startup_check_imports_no_authlib() -> None:
    script = (
        "import json, sys\n"
        "import controllers.runtime as runtime\n"
        "runtime.load_handlers()\n"
        "from controllers.oauthconnection.handlers import check_settings\n"
        "check_settings()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'authlib')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
