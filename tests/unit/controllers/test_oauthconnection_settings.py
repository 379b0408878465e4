"""XYNERGY_OAUTH_* settings are checked when the operator starts: a refresh claim too short
for the refresh's provider calls is refused naming both settings and the rule; bad settings
are logged once and the operator starts (its other kinds run), reporting each OAuthConnection
InvalidSettings without acting on it; and the check loads no authlib (an operator without
connections never imports it)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from apis.conditions import check_invariants, get_condition
from apis.v1alpha1.oauthconnection import OAuthConnectionStatus, OAuthPhase
from controllers.core import OperatorContext
from controllers.oauthconnection import handlers
from controllers.oauthconnection.misconfigured import MisconfiguredReconciler
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


def test_the_startup_check_logs_each_bad_setting_once_and_lets_the_operator_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No exception (kopf would end the whole operator, every kind with it): one ERROR record
    naming the settings and the rule, and that OAuthConnections are not acted on."""
    monkeypatch.setenv("XYNERGY_OAUTH_REVOKE_ATTEMPTS", "0")
    monkeypatch.setenv("XYNERGY_OAUTH_STATE_TTL_SECONDS", "5")

    with caplog.at_level(logging.INFO, logger="controllers.oauthconnection"):
        check_settings()

    records = [r for r in caplog.records if r.name.startswith("controllers.oauthconnection")]
    assert [r.levelno for r in records] == [logging.ERROR]
    message = records[0].getMessage()
    assert "XYNERGY_OAUTH_REVOKE_ATTEMPTS: Input should be greater than or equal to 1" in message
    assert "XYNERGY_OAUTH_STATE_TTL_SECONDS: Input should be greater than or equal to 60" in message
    assert "InvalidSettings" in message

    caplog.clear()
    monkeypatch.delenv("XYNERGY_OAUTH_REVOKE_ATTEMPTS")
    monkeypatch.delenv("XYNERGY_OAUTH_STATE_TTL_SECONDS")
    with caplog.at_level(logging.INFO, logger="controllers.oauthconnection"):
        check_settings()  # the defaults: 60 s > 3 x 10 s
    assert not caplog.records


def _connection(status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "OAuthConnection",
        "metadata": {"name": "a", "namespace": "default", "uid": "uid-a", "generation": 2},
        "spec": {
            "provider": "slack",
            "clientSecretRef": {"name": "client"},
            "scopes": ["chat:write"],
            "redirectURL": "https://app.example/cb",
            "tenant": "acme",
            "tokenSecretName": "a-tokens",
        },
    }
    if status is not None:
        body["status"] = status
    return body


def _condition(status: OAuthConnectionStatus, type_: str) -> tuple[str, str, str]:
    cond = get_condition(status.conditions, type_)
    assert cond is not None, type_
    return cond.status, cond.reason, cond.message


CONNECTED = {
    "phase": "Connected",
    "expiresAt": "2026-03-01T13:00:00Z",
    "account": {"teamId": "T1"},
    "refreshFailures": 0,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Connected",
            "message": "tokens are current",
            "observedGeneration": 2,
            "lastTransitionTime": "2026-03-01T12:00:00Z",
        },
        {
            "type": "Degraded",
            "status": "True",
            "reason": "UserReauthRequired",
            "message": "no user token",
            "observedGeneration": 2,
            "lastTransitionTime": "2026-03-01T12:00:00Z",
        },
    ],
    "authorizationURL": "https://slack.example/authorize?state=x",
}


async def test_with_bad_settings_each_connection_is_reported_invalid_settings_and_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kind's reconciler, built when the first connection appears, reports it (Ready
    False, Stalled InvalidSettings naming the setting; the Warning Event once) and has
    nothing to act with (no Secret store, no provider). A Connected connection keeps its
    phase and expiry (services use its stored tokens until they expire); no URL is offered
    for an authorization that could not be completed; a deletion waits."""
    monkeypatch.setenv("XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS", "20")
    ctx = cast(OperatorContext, SimpleNamespace())  # nothing of it is used

    rec = handlers._reconciler(ctx)

    assert isinstance(rec, MisconfiguredReconciler)
    assert not hasattr(rec, "store")
    assert not hasattr(rec, "providers")
    now = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
    result = await rec.reconcile(_connection(CONNECTED), now=now, child=None)
    status = result.status
    assert isinstance(status, OAuthConnectionStatus)
    assert status.phase is OAuthPhase.CONNECTED
    assert status.expires_at == dt.datetime(2026, 3, 1, 13, 0, tzinfo=dt.UTC)
    assert status.authorization_url is None
    ready = _condition(status, "Ready")
    assert ready[:2] == ("False", "InvalidSettings")
    assert "XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS (20) must be more than 3 x" in ready[2]
    assert _condition(status, "Stalled")[:2] == ("True", "InvalidSettings")
    assert get_condition(status.conditions, "Degraded") is None
    assert check_invariants(generation=2, observed_generation=2, conditions=status.conditions) == []
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "InvalidSettings")]
    again = await rec.reconcile(
        _connection(status.model_dump(mode="json", by_alias=True, exclude_none=True)),
        now=now,
        child=None,
    )
    assert again.events == ()  # said once

    pending = await rec.reconcile(
        _connection({"phase": "PendingAuthorization", "authorizationURL": "https://x/y"}),
        now=now,
        child=None,
    )
    assert isinstance(pending.status, OAuthConnectionStatus)
    assert pending.status.phase is OAuthPhase.ERROR
    assert pending.status.authorization_url is None
    new = await rec.reconcile(_connection(None), now=now, child=None)
    assert _condition(cast(OAuthConnectionStatus, new.status), "Ready")[1] == "InvalidSettings"

    gone, event = await rec.release(_connection(CONNECTED))
    assert gone is False  # the finalizer stays: nothing revoked, the Secrets kept
    assert event is not None
    assert event.reason == "InvalidSettings"
    held = rec.deletion_status(_connection(CONNECTED))
    assert held is not None
    assert "the deletion waits" in _condition(held, "Stalled")[2]


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
