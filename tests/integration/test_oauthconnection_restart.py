"""What survives an operator restart. A client the provider refused stays refused: the
restarted operator reads the refusal from status.refusedClient and does not send the same
client id and secret again until the client Secret changes. Refreshed Slack tokens the
apiserver refused to store keep the refresh claim while the operator holds them (no other
replica spends the rotated refresh token again); a restart loses them, and the restarted
operator asks for a new authorization saying why. Its own module: no other operator may run
while these run one after the other."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes.oauth import FakeOAuth
from gateway.conftest import wait_for
from kube_support import Kube, run_operator
from lightkube import AsyncClient
from test_oauthconnection import (
    API,
    _condition,
    _env,
    _ready,
    _settings,
    apply_connection,
    browser,
    connection,
    create_client_secret,
    frozen_access_token,
    oauth_operator,
    refresh_not_stored,
    secret_data,
    until,
)
from test_xynergyservice import create_xs, wait_ready

from apis.v1alpha1.oauthconnection import OAuthConnectionStatus, OAuthPhase
from controllers.oauthconnection.reconciler import OAuthConnectionReconciler
from controllers.oauthconnection.secrets import CLAIM_ANNOTATION, UNSTORED_ANNOTATION, SecretStore
from controllers.oauthconnection.settings import OAuthSettings
from controllers.providers.oauth.google import GoogleOAuth
from controllers.providers.oauth.slack import SlackOAuth


def refusals(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    """The ClientRefused Events posted on the connection `name`."""
    selector = f"involvedObject.name={name},reason=ClientRefused"
    resp = kube.get(f"/api/v1/namespaces/{ns}/events", fieldSelector=selector)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def patch_secret(kube: Kube, ns: str, name: str, string_data: dict[str, str]) -> None:
    resp = kube.http.patch(
        f"/api/v1/namespaces/{ns}/secrets/{name}",
        json={"stringData": string_data},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text


async def test_a_refused_client_is_not_sent_again_by_a_restarted_operator(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str
) -> None:
    ns, name = namespace, "acme-gmail"
    create_client_secret(kube, ns, name)
    patch_secret(kube, ns, f"{name}-client", {"client_secret": "not-the-one-google-has"})
    apply_connection(kube, ns, name, "gmail", "http://127.0.0.1:9/callback", client=False)

    def refused(s: dict[str, Any]) -> bool:
        return _ready(s)[1] == "ClientRefused"

    with FakeOAuth(expires_in=3600) as fake:
        with oauth_operator(cluster, fake):
            url = (await until(kube, ns, name, "URL", lambda s: s.get("authorizationURL")))[
                "status"
            ]["authorizationURL"]
            code = parse_qs(urlsplit(browser(url)).query)["code"][0]
            # what the gateway's callback does: the code into the authorization Secret
            patch_secret(kube, ns, f"{name}-oauth-authorization", {"code": code})
            status = (await until(kube, ns, name, "ClientRefused", refused))["status"]
            record = status["refusedClient"]
            assert record["secretName"] == f"{name}-client"
            assert "invalid_client" in record["error"]
            assert "not-the-one-google-has" not in str(status)
            sent = fake.google.calls["token"]
            assert sent == 1

        # the restarted operator's first converge of the stalled connection says so again (a
        # Warning Event per stalled converge): only after it, "not sent again" means something
        warned = len(refusals(kube, ns, name))
        assert warned >= 1

        async def warned_again() -> bool:
            return len(refusals(kube, ns, name)) > warned

        with oauth_operator(cluster, fake):
            await wait_for(
                warned_again, within=60, what="the restarted operator's converge", interval=0.2
            )
            status = connection(kube, ns, name)["status"]
            assert refused(status)
            assert fake.google.calls["token"] == sent  # the same client was not sent again
            assert status["refreshFailures"] == 0  # a refused code exchange is no refresh

            patch_secret(kube, ns, f"{name}-client", {"client_secret": "fake-client-secret"})
            status = (
                await until(kube, ns, name, "Connected", lambda s: s["phase"] == "Connected")
            )["status"]
            assert fake.google.calls["exchange"] == 1  # the kept code, exchanged once fixed
            assert "refusedClient" not in status


CLAIM_SECONDS = 15
"""The refresh claim's lifetime for the operators of the held-tokens test (60 by default);
more than 3 HTTP timeouts (settings.py), so their timeout is 4 s (the fake is local)."""


def claim(kube: Kube, ns: str, secret: str) -> tuple[str, dt.datetime, str]:
    """The token Secret's refresh claim (holder, until) and its tokens-not-stored mark."""
    meta = kube.get(f"/api/v1/namespaces/{ns}/secrets/{secret}").json()["metadata"]
    annotations = meta.get("annotations") or {}
    holder, _, until = annotations.get(CLAIM_ANNOTATION, " ").partition(" ")
    when = dt.datetime.fromisoformat(until.replace("Z", "+00:00")) if until else dt.datetime.min
    return holder, when.replace(tzinfo=dt.UTC), annotations.get(UNSTORED_ANNOTATION, "")


async def test_rotated_tokens_held_in_memory_keep_the_claim_and_a_restart_says_they_were_lost(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str
) -> None:
    ns, name = namespace, "acme-slack"
    secret = f"{name}-tokens"
    apply_connection(kube, ns, name, "slack", "http://127.0.0.1:9/callback")
    env = {
        "XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS": str(CLAIM_SECONDS),
        "XYNERGY_OAUTH_HTTP_TIMEOUT_SECONDS": "4",
    }

    with FakeOAuth(expires_in=3600) as fake, contextlib.ExitStack() as policy:
        with run_operator(cluster, kinds=("oauthconnection",), **_env(fake), **env):
            url = (await until(kube, ns, name, "URL", lambda s: s.get("authorizationURL")))[
                "status"
            ]["authorizationURL"]
            code = parse_qs(urlsplit(browser(url)).query)["code"][0]
            patch_secret(kube, ns, f"{name}-oauth-authorization", {"code": code})
            await until(kube, ns, name, "Connected", lambda s: s.get("phase") == "Connected")
            spent = (secret_data(kube, ns, secret) or {})["refresh_token"]
            assert spent.startswith("xoxe-1-")  # Slack's token rotation

            policy.enter_context(frozen_access_token(kube, ns, secret))
            await refresh_not_stored(kube, ns, name, secret)  # due (300 s lead), valid 200 s
            assert fake.slack.calls["refresh"] == 1
            assert fake.slack.refresh.get(spent) is None  # the stored refresh token is spent
            holder, first_until, mark = claim(kube, ns, secret)
            assert holder
            assert mark  # a time, no token
            assert not [t for t in fake.issued() if t in mark]

            async def renewed() -> bool:  # past the first claim's end, still claimed by it
                held_by, held_until, _ = claim(kube, ns, secret)
                now = dt.datetime.now(dt.UTC)
                return now > first_until and held_by == holder and held_until > now

            await wait_for(renewed, within=3 * CLAIM_SECONDS, what="the claim renewed")

            # another replica converging now finds the claim held: it sends nothing
            settings = OAuthSettings(**_settings(fake))  # type: ignore[arg-type]
            providers = {
                "slack": SlackOAuth(settings.endpoints("slack")),
                "google": GoogleOAuth(settings.endpoints("google")),
            }
            other = OAuthConnectionReconciler(
                SecretStore(AsyncClient()), providers, settings=settings
            )
            result = await other.reconcile(
                connection(kube, ns, name), now=dt.datetime.now(dt.UTC), child=None
            )
            assert isinstance(result.status, OAuthConnectionStatus)
            assert result.status.phase is OAuthPhase.REFRESHING
            assert fake.slack.calls["refresh"] == 1
            assert (secret_data(kube, ns, secret) or {})["refresh_token"] == spent

        # the operator stopped: the tokens it held are gone; writes are allowed again
        policy.close()
        with run_operator(cluster, kinds=("oauthconnection",), **_env(fake), **env):

            def reauth(s: dict[str, Any]) -> bool:
                return s.get("phase") == "ReauthRequired"

            status = (
                await until(kube, ns, name, "ReauthRequired", reauth, within=4 * CLAIM_SECONDS)
            )["status"]
            stalled = _condition(status, "Stalled")
            assert stalled[:2] == ("True", "AuthorizationFailed")
            assert "the provider refused the refresh token (invalid_refresh_token)" in stalled[2]
            assert f"already used by a refresh at {mark}" in stalled[2]
            assert f"could not be written to Secret {secret} and were lost" in stalled[2]
            assert status["authorizationURL"]
            assert fake.slack.calls["refresh"] == 2  # the spent token, sent once
            assert status["refreshFailures"] == 1
            assert secret_data(kube, ns, secret) is None  # the dead tokens deleted
            body = connection(kube, ns, name)
            assert not [t for t in fake.issued() if t in str(body)]


async def test_bad_oauth_settings_leave_the_operator_running_and_connections_untouched(
    kube: Kube,
    cluster: Path,
    crds_installed: list[str],
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS not above 3 x XYNERGY_OAUTH_HTTP_TIMEOUT_SECONDS:
    the operator starts and logs it once, naming both settings and the rule; a XynergyService
    beside it becomes Ready; the OAuthConnection is Ready False, Stalled InvalidSettings,
    and nothing is sent to the provider nor written to its Secrets (its expired token is not
    refreshed); deleting it waits, the token Secret kept, nothing revoked."""
    ns, name = namespace, "acme-slack"
    secret = f"{name}-tokens"
    apply_connection(kube, ns, name, "slack", "http://127.0.0.1:9/callback")
    uid = connection(kube, ns, name)["metadata"]["uid"]
    owner = {"apiVersion": "xynergy.io/v1alpha1", "kind": "OAuthConnection", "name": name,
             "uid": uid, "controller": True}  # fmt: skip
    tokens = {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret, "ownerReferences": [owner],
                     "labels": {"xynergy.io/oauth-connection": name}},
        "stringData": {"access_token": "xoxe.xoxb-stored", "refresh_token": "xoxe-1-stored",
                       "expires_at": "2000-01-01T00:00:00Z", "issued_at": "1999-12-31T12:00:00Z",
                       "token_type": "bot", "scope": "chat:write"},
    }  # fmt: skip
    assert kube.create(f"/api/v1/namespaces/{ns}/secrets", tokens).status_code == 201
    version = kube.get(f"/api/v1/namespaces/{ns}/secrets/{secret}").json()["metadata"]

    def invalid(s: dict[str, Any]) -> bool:
        return _ready(s)[:2] == ("False", "InvalidSettings")

    with (
        FakeOAuth(expires_in=3600) as fake,
        caplog.at_level(logging.INFO),
        run_operator(
            cluster,
            kinds=("oauthconnection", "xynergyservice"),
            **_env(fake),
            XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS="20",
        ),
    ):
        create_xs(kube, ns, "web")
        status = (await until(kube, ns, name, "InvalidSettings", invalid))["status"]
        message = _ready(status)[2]
        assert (
            "XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS (20) must be more than 3 x "
            "XYNERGY_OAUTH_HTTP_TIMEOUT_SECONDS (10), 30 s"
        ) in message
        assert _condition(status, "Stalled")[:2] == ("True", "InvalidSettings")
        assert "authorizationURL" not in status
        await asyncio.to_thread(wait_ready, kube, ns, "web")  # the other kinds run

        kube.delete(f"{API}/namespaces/{ns}/oauthconnections/{name}")

        def held(s: dict[str, Any]) -> bool:
            return "the deletion waits" in _condition(s, "Stalled")[2]

        await until(kube, ns, name, "the deletion held", held)
        assert dict(fake.slack.calls) == {}  # no exchange, refresh or revoke
        now = kube.get(f"/api/v1/namespaces/{ns}/secrets/{secret}").json()["metadata"]
        assert now["resourceVersion"] == version["resourceVersion"]  # untouched
        gone = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}-oauth-authorization")
        assert gone.status_code == 404  # no authorization state made
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("controllers.oauthconnection") and r.levelno >= logging.ERROR
    ]
    assert len(errors) == 1, errors  # logged once, at start
    assert "XYNERGY_OAUTH_REFRESH_CLAIM_SECONDS (20) must be more than 3 x" in errors[0]
    assert not [r for r in caplog.records if "xoxe" in r.getMessage()]
    # let it go by hand (what the message offers); the namespace can then be deleted
    resp = kube.http.patch(
        f"{API}/namespaces/{ns}/oauthconnections/{name}",
        json={"metadata": {"finalizers": None}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text
