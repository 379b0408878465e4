"""XYNERGY_OAUTH_* settings are checked when the operator starts: a refresh claim too short
for the refresh's provider calls is refused naming both settings and the rule; bad settings
are logged once and the operator starts (its other kinds run), reporting each OAuthConnection
InvalidSettings without acting on it; and the check loads no authlib (an operator without
connections never imports it)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference, Status
from lightkube.resources.core_v1 import Secret

from apis.conditions import check_invariants, get_condition
from apis.v1alpha1.oauthconnection import OAuthConnectionStatus, OAuthPhase
from controllers.core import OperatorContext
from controllers.oauthconnection import handlers
from controllers.oauthconnection.misconfigured import MisconfiguredReconciler
from controllers.oauthconnection.secrets import SecretStore
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
    client = ReadOnlyApiserver({"a-tokens": _secret("a-tokens", owner="uid-a")})
    ctx = cast(OperatorContext, SimpleNamespace(client=client, api_limit=asyncio.Semaphore(1)))

    rec = handlers._reconciler(ctx)

    assert isinstance(rec, MisconfiguredReconciler)
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
    assert pending.status.phase is OAuthPhase.PENDING_AUTHORIZATION  # not Error: no tokens
    assert pending.status.authorization_url is None
    assert "the connection has no tokens" in _condition(pending.status, "Stalled")[2]
    reauth = await rec.reconcile(_connection({"phase": "ReauthRequired"}), now=now, child=None)
    assert cast(OAuthConnectionStatus, reauth.status).phase is OAuthPhase.REAUTH_REQUIRED
    new = await rec.reconcile(_connection(None), now=now, child=None)
    new_status = cast(OAuthConnectionStatus, new.status)
    assert _condition(new_status, "Ready")[1] == "InvalidSettings"
    assert new_status.phase is OAuthPhase.PENDING_AUTHORIZATION
    assert "the connection has no tokens" in _condition(new_status, "Ready")[2]
    assert "has no tokens" not in _condition(status, "Ready")[2]  # Connected: it has

    gone, event = await rec.release(_connection(CONNECTED))
    assert gone is False  # the finalizer stays: nothing revoked, the Secrets kept
    assert event is not None
    assert event.reason == "InvalidSettings"
    held = rec.deletion_status(_connection(CONNECTED))
    assert held is not None
    assert "the deletion waits" in _condition(held, "Stalled")[2]
    assert client.reads == ["a-tokens"]  # the deletion's one read; nothing written


def _secret(name: str, *, owner: str | None, access_token: str = "xoxe.xoxb-1") -> Secret:
    refs = [
        OwnerReference(
            apiVersion="xynergy.io/v1alpha1", kind="OAuthConnection", name="a", uid=owner,
            controller=True,
        )
    ] if owner is not None else None  # fmt: skip
    data = {"access_token": access_token, "refresh_token": "xoxe-1"} if access_token else {}
    return Secret(
        metadata=ObjectMeta(name=name, namespace="default", ownerReferences=refs),
        data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    )


@dataclass
class ReadOnlyApiserver:
    """lightkube's `get` over a dict, and nothing else: any write fails the test (no
    `create`, `patch`, `replace` or `delete`)."""

    secrets: dict[str, Secret] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)
    failing: int | None = None

    async def get(self, res: Any, name: str, *, namespace: str) -> Secret:
        self.reads.append(name)
        if self.failing is not None:
            raise ApiError(status=Status(code=self.failing, message="etcd timed out"))
        if name not in self.secrets:
            raise ApiError(status=Status(code=404, message="not found"))
        return self.secrets[name]


def _deleting(status: dict[str, Any] | None, **spec: Any) -> dict[str, Any]:
    body = _connection(status)
    body["metadata"] |= {
        "deletionTimestamp": "2026-03-01T12:30:00Z",
        "finalizers": ["xynergy.io/finalizer"],
    }
    body["spec"] |= spec
    return body


def _misconfigured(client: ReadOnlyApiserver) -> MisconfiguredReconciler:
    ctx = cast(OperatorContext, SimpleNamespace(client=client, api_limit=asyncio.Semaphore(1)))
    return MisconfiguredReconciler(
        "invalid OAuthConnection settings: X", holds_tokens=SecretStore(ctx.client).holds_tokens
    )


@pytest.mark.parametrize(
    ("secrets", "status"),
    [
        ({}, {"phase": "PendingAuthorization"}),  # never connected: no token Secret
        ({}, None),  # never converged
        ({"a-tokens": _secret("a-tokens", owner="uid-a", access_token="")}, None),
        ({"a-tokens": _secret("a-tokens", owner="someone-else")}, CONNECTED),  # not ours
    ],
    ids=["pending", "new", "no-access-token", "not-owned"],
)
async def test_with_bad_settings_a_deletion_with_nothing_to_revoke_is_let_go(
    secrets: dict[str, Secret], status: dict[str, Any] | None
) -> None:
    """Nothing to revoke (no access token in a token Secret this connection owns): the
    finalizer goes at once, no Event; only a read was made. Before, it was held forever (a
    namespace holding one stayed Terminating)."""
    client = ReadOnlyApiserver(secrets)

    gone, event = await _misconfigured(client).release(_deleting(status))

    assert (gone, event) == (True, None)
    assert client.reads == ["a-tokens"]


async def test_with_bad_settings_revoke_on_delete_false_lets_the_deletion_go() -> None:
    """`spec.revokeOnDelete: false` (also set while the deletion waits): nothing is to be
    revoked, so it is let go without reading anything; with tokens and revokeOnDelete it
    waits, and a read that fails waits too."""
    client = ReadOnlyApiserver({"a-tokens": _secret("a-tokens", owner="uid-a")})
    rec = _misconfigured(client)

    assert (await rec.release(_deleting(CONNECTED)))[0] is False
    assert await rec.release(_deleting(CONNECTED, revokeOnDelete=False)) == (True, None)
    assert client.reads == ["a-tokens"]
    client.failing = 503
    gone, event = await rec.release(_deleting(CONNECTED))
    assert gone is False
    assert event is not None
    assert event.reason == "InvalidSettings"


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
