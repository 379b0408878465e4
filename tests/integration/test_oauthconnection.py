"""OAuthConnection end to end: the real cluster and operator, a real gateway (in this process,
with a real redis-server) and the fake Slack/Google OAuth endpoints.

apply -> authorization URL in status -> the fake provider redirects to the gateway's callback
-> Secret created, Connected -> token expires -> refreshed once under 20 concurrent reads
(and once with two more "replicas" racing the operator) -> invalid_grant -> ReauthRequired ->
delete -> revoked at the fake, Secrets gone; state replay, wrong state, PKCE mismatch and a
foreign tenant's callback refused; no token in any log or Event of the run. A Slack user token
refused at refresh keeps the bot token Connected (Degraded) and is authorized again through the
callback. Refreshed tokens an admission policy keeps out of the Secret leave the stored, still
valid token Ready (Degraded TokensNotStored) until it expires, and are written once allowed;
the token Secret deleted meanwhile is created again with them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from fakes.oauth import FakeOAuth
from gateway.conftest import make_jwt, run_redis, serve, wait_for
from kopf.testing import KopfRunner
from kube_support import Kube, run_operator

from apis.conditions import Condition, check_invariants
from apis.v1alpha1.oauthconnection import REFRESH_REQUESTED_ANNOTATION
from controllers.oauthconnection.reconciler import OAuthConnectionReconciler
from controllers.oauthconnection.secrets import CLAIM_ANNOTATION, UNSTORED_ANNOTATION, SecretStore
from controllers.oauthconnection.settings import OAuthSettings
from controllers.providers.oauth.google import GoogleOAuth
from controllers.providers.oauth.slack import SlackOAuth
from services.common.auth import AuthSettings
from services.common.oauth_tokens import NotConnectedError, TokenReader
from services.common.settings import InternalIdentitySettings
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

pytestmark = pytest.mark.timeout(420)

API = "/apis/xynergy.io/v1alpha1"
SECRET = "oauth-test-jwt-secret-0123456789abcdef"


def _env(fake: FakeOAuth) -> dict[str, str]:
    env = {"XYNERGY_OAUTH_REVOKE_ATTEMPTS": "2"}
    for provider in ("slack", "google"):
        for step, url in fake.endpoints(provider).items():
            env[f"XYNERGY_OAUTH_{provider.upper()}_{step.upper()}_URL"] = url
    return env


def oauth_operator(cluster: Path, fake: FakeOAuth) -> AbstractContextManager[KopfRunner]:
    return run_operator(cluster, kinds=("oauthconnection",), **_env(fake))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOAuth]:
    with FakeOAuth(expires_in=3600) as fake:
        yield fake


@pytest.fixture(scope="module")
def operator(cluster: Path, crds_installed: list[str], fake: FakeOAuth) -> Iterator[KopfRunner]:
    with oauth_operator(cluster, fake) as runner:
        yield runner


@pytest.fixture(scope="module")
async def gateway(
    operator: KopfRunner, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    async with run_redis(tmp_path_factory.mktemp("oauth-redis")) as redis:
        app = create_app(
            GatewaySettings(redis_url=redis.url, log_level="DEBUG"),
            auth_settings=AuthSettings(jwt_secret=SECRET, firebase_enabled=False),  # type: ignore[arg-type]
            internal_settings=InternalIdentitySettings(signing_key="k" * 32),  # type: ignore[arg-type]
        )
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
            yield http


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def bearer(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_jwt(tenant_id=tenant, secret=SECRET)}"}


# -- cluster helpers ----------------------------------------------------------------------


def create_client_secret(kube: Kube, ns: str, name: str) -> None:
    secret = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-client"},
        "stringData": {"client_id": "fake-client-id", "client_secret": "fake-client-secret"},
    }  # fmt: skip
    assert kube.create(f"/api/v1/namespaces/{ns}/secrets", secret).status_code == 201


def apply_connection(
    kube: Kube,
    ns: str,
    name: str,
    provider: str,
    callback: str,
    *,
    client: bool = True,
    **extra: Any,
) -> None:
    """The client Secret `<name>-client` (unless `client` is False), then the connection."""
    if client:
        create_client_secret(kube, ns, name)
    scopes = (
        ["channels:read", "chat:write"]
        if provider == "slack"
        else ["https://www.googleapis.com/auth/gmail.readonly", "email"]
    )
    conn = {
        "apiVersion": "xynergy.io/v1alpha1", "kind": "OAuthConnection", "metadata": {"name": name},
        "spec": {"provider": provider, "clientSecretRef": {"name": f"{name}-client"},
                 "scopes": scopes, "redirectURL": callback, "tenant": "acme",
                 "tokenSecretName": f"{name}-tokens", **extra},
    }  # fmt: skip
    resp = kube.create(f"{API}/namespaces/{ns}/oauthconnections", conn)
    assert resp.status_code == 201, resp.text


def connection(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = kube.get(f"{API}/namespaces/{ns}/oauthconnections/{name}").json()
    status = body.get("status") or {}
    if status:
        problems = check_invariants(
            generation=body["metadata"].get("generation"),
            observed_generation=status.get("observedGeneration"),
            conditions=[Condition.model_validate(c) for c in status.get("conditions", [])],
        )
        assert not problems, problems
    return body


async def until(
    kube: Kube, ns: str, name: str, what: str, check: Any, *, within: float = 60
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def ok() -> bool:
        found.update(connection(kube, ns, name))
        return bool(check(found.get("status") or {}))

    await wait_for(ok, within=within, what=what, interval=0.2)
    return found


def secret_data(kube: Kube, ns: str, name: str) -> dict[str, str] | None:
    resp = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}")
    if resp.status_code == 404:
        return None
    data = resp.json().get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def expire(kube: Kube, ns: str, name: str) -> None:
    """The clock moved past expiry: the Secret says the token expired a minute ago."""
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    patch = {"stringData": {"expires_at": past}}
    resp = kube.http.patch(
        f"/api/v1/namespaces/{ns}/secrets/{name}",
        json=patch,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text


def browser(authorization_url: str) -> str:
    """What a browser does at the provider: approve, follow the 302; the callback URL."""
    resp = httpx.get(authorization_url, follow_redirects=False)
    assert resp.status_code == 302, resp.text
    return resp.headers["location"]


async def callback(gw: httpx.AsyncClient, location: str, tenant: str = "acme") -> httpx.Response:
    parts = urlsplit(location)
    return await gw.get(f"{parts.path}?{parts.query}", headers=bearer(tenant))


def events(kube: Kube, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
    return items


# -- the whole flow -------------------------------------------------------------------------


async def test_slack_connect_refresh_reauth_revoke(
    kube: Kube, namespace: str, fake: FakeOAuth, gateway: httpx.AsyncClient, logs: Any
) -> None:
    ns, name = namespace, "acme-slack"
    cb = str(gateway.base_url).rstrip("/") + "/api/v2/oauth/slack/callback"
    apply_connection(kube, ns, name, "slack", cb, userScopes=["search:read"])
    body = await until(kube, ns, name, "authorization URL", lambda s: s.get("authorizationURL"))
    status = body["status"]
    assert status["phase"] == "PendingAuthorization"
    query = parse_qs(urlsplit(status["authorizationURL"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["user_scope"] == ["search:read"]
    authz = secret_data(kube, ns, f"{name}-oauth-authorization")
    assert authz is not None
    assert authz["code_verifier"] not in str(body)  # the verifier never reaches status

    location = browser(status["authorizationURL"])
    resp = await callback(gateway, location)
    assert resp.status_code == 200, resp.text
    assert resp.json()["phase"] == "Connected"
    assert resp.json()["account"] == {"teamId": "T0FAKETEAM", "userId": "U0FAKEUSER"}
    replay = await callback(gateway, location)
    assert replay.status_code == 400, replay.text
    assert "already used" in replay.json()["message"] or "unknown" in replay.json()["message"]

    secret = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}-tokens").json()
    assert secret["metadata"]["labels"]["xynergy.io/tenant"] == "acme"
    assert secret["metadata"]["labels"]["xynergy.io/provider"] == "slack"
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "OAuthConnection"
    tokens = secret_data(kube, ns, f"{name}-tokens")
    assert tokens is not None
    assert set(tokens) >= {"access_token", "refresh_token", "expires_at", "token_type", "scope"}
    assert tokens["user_access_token"].startswith("xoxe.xoxp-")  # Slack's user token, beside
    assert tokens["user_scope"] == "search:read"
    assert tokens["user_refresh_token"]
    status = (await until(kube, ns, name, "Connected", lambda s: s.get("phase") == "Connected"))[
        "status"
    ]
    assert status["account"]["teamId"] == "T0FAKETEAM"
    assert "authorizationURL" not in status

    # the token expires: 20 concurrent reads from 4 "service processes", one refresh
    readers = [TokenReader() for _ in range(4)]
    before = fake.slack.calls["refresh"]
    expire(kube, ns, f"{name}-tokens")
    got = await asyncio.gather(*(readers[i % 4].tokens("acme", "slack") for i in range(20)))
    assert {t.access_token.get_secret_value() for t in got} == {
        secret_data(kube, ns, f"{name}-tokens")["access_token"]  # type: ignore[index]
    }
    assert got[0].access_token.get_secret_value() != tokens["access_token"]
    assert fake.slack.calls["refresh"] == before + 1
    assert got[0].access_token.get_secret_value() not in repr(got[0])
    assert got[0].user_access_token.get_secret_value() == tokens["user_access_token"]
    assert got[0].user_scopes == ("search:read",)

    # the user removed the app: the refresh gets invalid_refresh_token -> ReauthRequired
    fake.revoke_all("slack")
    expire(kube, ns, f"{name}-tokens")
    status = (
        await until(kube, ns, name, "ReauthRequired", lambda s: s.get("phase") == "ReauthRequired")
    )["status"]
    assert status["authorizationURL"]
    assert secret_data(kube, ns, f"{name}-tokens") is None
    with pytest.raises(NotConnectedError) as err:
        await readers[0].tokens("acme", "slack")
    assert err.value.connection == f"{ns}/{name}"
    assert err.value.authorization_url == status["authorizationURL"]
    assert any(e["reason"] == "ReauthRequired" for e in events(kube, ns))

    # authorize again, then delete: revoked at the fake, Secrets gone
    resp = await callback(gateway, browser(status["authorizationURL"]))
    assert resp.status_code == 200, resp.text
    access = secret_data(kube, ns, f"{name}-tokens")["access_token"]  # type: ignore[index]
    assert kube.delete(f"{API}/namespaces/{ns}/oauthconnections/{name}").status_code == 200
    await wait_for(
        lambda: _gone(kube, f"{API}/namespaces/{ns}/oauthconnections/{name}"),
        within=60,
        what="connection deleted",
    )
    assert access in fake.slack.revoked
    assert secret_data(kube, ns, f"{name}-tokens") is None
    assert secret_data(kube, ns, f"{name}-oauth-authorization") is None
    assert any(e["reason"] == "Revoked" for e in events(kube, ns))
    _no_tokens_anywhere(fake, logs, events(kube, ns))


async def _gone(kube: Kube, path: str) -> bool:
    return kube.get(path).status_code == 404


_TEST_CLIENTS = ("httpx", "httpcore")
"""The test's own HTTP clients (a browser's and a frontend's requests carry the code)."""


def _no_tokens_anywhere(fake: FakeOAuth, logs: Any, evts: list[dict[str, Any]]) -> None:
    """Every log record of the operator and the gateway (kopf, ours, uvicorn, lightkube's and
    authlib's HTTP client) and every Event: no code or token the fake issued."""
    records = [r for r in logs.records if r.name.split(".")[0] not in _TEST_CLIENTS]
    assert any(r.name.startswith("kopf") for r in records)
    text = "\n".join(f"{r.name} {r.getMessage()} {getattr(r, 'fields', '')}" for r in records)
    haystack = text + repr(evts)
    leaked = [t for t in fake.issued() if t in haystack]
    assert not leaked, f"{len(leaked)} issued codes/tokens appear in logs or Events"


# -- refusals, two replicas, an unreachable revoke ----------------------------------------------


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_gmail_refusals_replicas_and_unreachable_revoke(
    kube: Kube, namespace: str, fake: FakeOAuth, gateway: httpx.AsyncClient, logs: Any
) -> None:
    ns, name = namespace, "acme-gmail"
    cb = str(gateway.base_url).rstrip("/") + "/api/v2/oauth/gmail/callback"
    apply_connection(kube, ns, name, "gmail", cb)
    url = (await until(kube, ns, name, "URL", lambda s: s.get("authorizationURL")))["status"][
        "authorizationURL"
    ]
    location = browser(url)
    state = parse_qs(urlsplit(location).query)["state"][0]

    wrong = _with_query(location, state=state.rsplit(".", 1)[0] + ".not-the-nonce")
    resp = await callback(gateway, wrong)
    assert resp.status_code == 400
    assert "does not match" in resp.json()["message"]
    foreign = await callback(gateway, location, tenant="globex")
    assert foreign.status_code == 403, foreign.text
    anonymous = await gateway.get(urlsplit(location).path + "?" + urlsplit(location).query)
    assert anonymous.status_code == 401

    # PKCE: a code obtained with another challenge is refused by the provider at the exchange
    tampered = browser(_with_query(url, code_challenge="A" * 43))
    resp = await callback(gateway, tampered)
    assert resp.status_code == 400, resp.text
    assert "invalid_grant" in resp.json()["message"]
    status = connection(kube, ns, name)["status"]
    assert status["phase"] == "PendingAuthorization"
    assert status["authorizationURL"] != url  # a new state for a new attempt
    assert resp.json()["authorizationURL"] == status["authorizationURL"]  # the refusal says so

    resp = await callback(gateway, browser(status["authorizationURL"]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["account"]["email"] == "someone@example.com"

    # two more replicas race the operator for one due refresh: one refresh in all
    settings = OAuthSettings(**{k: v for k, v in _settings(fake).items()})
    providers = {
        "slack": SlackOAuth(settings.endpoints("slack")),
        "google": GoogleOAuth(settings.endpoints("google")),
    }
    from lightkube import AsyncClient

    replicas = [
        OAuthConnectionReconciler(SecretStore(AsyncClient()), providers, settings=settings)
        for _ in range(2)
    ]
    before = fake.google.calls["refresh"]
    expire(kube, ns, f"{name}-tokens")
    body = connection(kube, ns, name)
    now = dt.datetime.now(dt.UTC)
    await asyncio.gather(*(r.reconcile(body, now=now, child=None) for r in replicas))
    await until(kube, ns, name, "refreshed", lambda s: s.get("phase") == "Connected")
    await wait_for(
        lambda: _fresh(kube, ns, f"{name}-tokens"), within=30, what="fresh token in the Secret"
    )
    assert fake.google.calls["refresh"] == before + 1

    # the provider cannot be reached on delete: a Warning, and the Secrets go anyway
    fake.fail("google", "revoke", [503] * 20)
    assert kube.delete(f"{API}/namespaces/{ns}/oauthconnections/{name}").status_code == 200
    await wait_for(
        lambda: _gone(kube, f"{API}/namespaces/{ns}/oauthconnections/{name}"),
        within=90,
        what="connection deleted despite the provider being down",
    )
    assert any(e["reason"] == "RevokeFailed" and e["type"] == "Warning" for e in events(kube, ns))
    assert secret_data(kube, ns, f"{name}-tokens") is None
    fake.google.faults.clear()
    _no_tokens_anywhere(fake, logs, events(kube, ns))


async def test_a_client_refused_at_refresh_stalls_until_its_secret_is_fixed(
    kube: Kube, namespace: str, fake: FakeOAuth, gateway: httpx.AsyncClient
) -> None:
    ns, name = namespace, "acme-slack"
    cb = str(gateway.base_url).rstrip("/") + "/api/v2/oauth/slack/callback"
    apply_connection(kube, ns, name, "slack", cb)
    url = (await until(kube, ns, name, "URL", lambda s: s.get("authorizationURL")))["status"][
        "authorizationURL"
    ]
    resp = await callback(gateway, browser(url))
    assert resp.status_code == 200, resp.text
    client = f"/api/v1/namespaces/{ns}/secrets/{name}-client"
    labels = kube.get(client).json()["metadata"].get("labels") or {}
    assert labels.get("xynergy.io/oauth-client") == "true"

    def client_secret(value: str) -> None:
        resp = kube.http.patch(
            client,
            json={"stringData": {"client_secret": value}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert resp.status_code == 200, resp.text

    client_secret("rotated-at-slack-not-here")
    expire(kube, ns, f"{name}-tokens")
    status = (
        await until(kube, ns, name, "ClientRefused", lambda s: _ready(s)[1] == "ClientRefused")
    )["status"]
    assert status["phase"] == "Error"
    message = _ready(status)[2]
    assert f"Secret {name}-client (keys client_id and client_secret)" in message
    assert "rotated-at-slack-not-here" not in message
    assert secret_data(kube, ns, f"{name}-tokens") is not None  # the tokens are kept
    refreshes = fake.slack.calls["refresh"]

    # fixed: the client Secret's watch converges the connection (the resync is 10 min away)
    client_secret("fake-client-secret")
    await until(kube, ns, name, "Connected again", lambda s: s.get("phase") == "Connected")
    assert fake.slack.calls["refresh"] == refreshes + 1


async def test_a_client_secret_created_after_the_connection_is_used_at_once(
    kube: Kube, namespace: str, gateway: httpx.AsyncClient
) -> None:
    ns, name = namespace, "acme-late"
    cb = str(gateway.base_url).rstrip("/") + "/api/v2/oauth/slack/callback"
    apply_connection(kube, ns, name, "slack", cb, client=False)
    status = (
        await until(kube, ns, name, "stalled", lambda s: _ready(s)[1] == "ClientSecretMissing")
    )["status"]  # its next resync is 10 minutes away
    assert f"Secret {name}-client not found" in _ready(status)[2]

    create_client_secret(kube, ns, name)  # unlabelled: only the watch of its name sees it

    status = (await until(kube, ns, name, "URL", lambda s: s.get("authorizationURL")))["status"]
    assert status["phase"] == "PendingAuthorization"
    client = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}-client").json()
    assert client["metadata"]["labels"]["xynergy.io/oauth-client"] == "true"


def _ready(status: dict[str, Any]) -> tuple[str, str, str]:
    for cond in status.get("conditions") or []:
        if cond["type"] == "Ready":
            return cond["status"], cond.get("reason", ""), cond.get("message", "")
    return "", "", ""


def _settings(fake: FakeOAuth) -> dict[str, str]:
    out = {}
    for provider in ("slack", "google"):
        for step, url in fake.endpoints(provider).items():
            out[f"{provider}_{step}_url"] = url
    return out


async def _fresh(kube: Kube, ns: str, name: str) -> bool:
    data = secret_data(kube, ns, name) or {}
    expires = data.get("expires_at", "")
    return bool(expires) and dt.datetime.fromisoformat(expires.replace("Z", "+00:00")) > (
        dt.datetime.now(dt.UTC)
    )


async def test_a_refused_slack_user_token_keeps_the_bot_token_and_is_authorized_again(
    kube: Kube,
    namespace: str,
    fake: FakeOAuth,
    gateway: httpx.AsyncClient,
    logs: pytest.LogCaptureFixture,
) -> None:
    ns, name = namespace, "acme-slack"
    cb = str(gateway.base_url).rstrip("/") + "/api/v2/oauth/slack/callback"
    apply_connection(kube, ns, name, "slack", cb, userScopes=["search:read"])
    url = (await until(kube, ns, name, "URL", lambda s: s.get("authorizationURL")))["status"][
        "authorizationURL"
    ]
    assert (await callback(gateway, browser(url))).status_code == 200
    before = secret_data(kube, ns, f"{name}-tokens") or {}
    assert before["user_access_token"].startswith("xoxe.xoxp-")

    # the user token's grant dies at Slack, and the user token is due for a refresh
    fake.slack.revoke_grant(fake.slack.refresh[before["user_refresh_token"]])
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    resp = kube.http.patch(
        f"/api/v1/namespaces/{ns}/secrets/{name}-tokens",
        json={"stringData": {"user_expires_at": past}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text

    def user_lost(s: dict[str, Any]) -> bool:
        return _condition(s, "Degraded")[1] == "UserReauthRequired"

    status = (await until(kube, ns, name, "UserReauthRequired", user_lost))["status"]
    assert status["phase"] == "Connected"
    assert _ready(status)[0] == "True"
    assert "the bot token still works" in _condition(status, "Degraded")[2]
    lost = [e for e in events(kube, ns) if e["reason"] == "UserReauthRequired"]
    assert [e["type"] for e in lost] == ["Warning"]
    assert "refused the user token's refresh token (invalid_refresh_token)" in lost[0]["message"]
    after = secret_data(kube, ns, f"{name}-tokens") or {}
    assert after["access_token"] == before["access_token"]  # the bot token is kept
    assert after["user_access_token"] == ""
    url = status["authorizationURL"]

    resp = await callback(gateway, browser(url))  # answered once the code is exchanged

    assert resp.status_code == 200, resp.text
    again = secret_data(kube, ns, f"{name}-tokens") or {}
    assert again["user_access_token"].startswith("xoxe.xoxp-")
    assert again["user_access_token"] != before["user_access_token"]
    status = connection(kube, ns, name)["status"]
    assert status["phase"] == "Connected"
    assert _condition(status, "Degraded") == ("", "", "")
    assert "authorizationURL" not in status
    _no_tokens_anywhere(fake, logs, events(kube, ns))


def _condition(status: dict[str, Any], type_: str) -> tuple[str, str, str]:
    for cond in status.get("conditions") or []:
        if cond["type"] == type_:
            return cond["status"], cond.get("reason", ""), cond.get("message", "")
    return "", "", ""


# -- refreshed tokens the apiserver will not store -----------------------------------------------

ADMISSION = "/apis/admissionregistration.k8s.io/v1"


@contextmanager
def frozen_access_token(kube: Kube, ns: str, secret: str) -> Iterator[str]:
    """A ValidatingAdmissionPolicy refusing any change of `secret`'s `access_token` (its other
    keys and its metadata stay writable: the test's own edits, the operator's claim); yields
    the binding's path, whose deletion lifts it. Enforced once a dry run is refused."""
    name = f"oauth-frozen-{uuid.uuid4().hex[:8]}"
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
            "resources": ["secrets"]}  # fmt: skip
    same = (
        "!has(oldObject.data) || !('access_token' in oldObject.data) || (has(object.data)"
        " && 'access_token' in object.data"
        " && object.data['access_token'] == oldObject.data['access_token'])"
    )
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [rule]},
                 "validations": [{"expression": same,
                                  "message": "this test keeps the access token as it is"}]},
    }  # fmt: skip
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {
                     "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                     "resourceRules": [{**rule, "resourceNames": [secret]}]}},
    }  # fmt: skip
    policies, bindings = (
        f"{ADMISSION}/validatingadmissionpolicies",
        (f"{ADMISSION}/validatingadmissionpolicybindings"),
    )
    assert kube.create(policies, policy).status_code == 201
    assert kube.create(bindings, binding).status_code == 201
    try:

        def refused() -> bool:
            resp = kube.http.patch(
                f"/api/v1/namespaces/{ns}/secrets/{secret}",
                params={"dryRun": "All"},
                json={"stringData": {"access_token": "dry-run"}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
            return resp.status_code != 200 and "keeps the access token" in resp.text

        kube.wait_for("the admission policy enforced", refused, timeout=60)
        yield f"{bindings}/{name}"
    finally:
        kube.delete(f"{bindings}/{name}")
        kube.delete(f"{policies}/{name}")


def _patch_tokens(kube: Kube, ns: str, name: str, **data: str) -> None:
    resp = kube.http.patch(
        f"/api/v1/namespaces/{ns}/secrets/{name}",
        json={"stringData": data},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text


def _when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def connect_gmail(kube: Kube, ns: str, name: str) -> None:
    """A Gmail connection authorized in the fake's browser and Connected: the code put into
    the authorization Secret, as the gateway's callback does."""
    apply_connection(kube, ns, name, "gmail", "http://127.0.0.1:9/callback")
    url = (await until(kube, ns, name, "URL", lambda s: s.get("authorizationURL")))["status"][
        "authorizationURL"
    ]
    code = parse_qs(urlsplit(browser(url)).query)["code"][0]
    _patch_tokens(kube, ns, f"{name}-oauth-authorization", code=code)
    await until(kube, ns, name, "Connected", lambda s: s.get("phase") == "Connected")


async def refresh_not_stored(
    kube: Kube, ns: str, name: str, secret: str
) -> tuple[str, dict[str, Any]]:
    """Make the stored access token due for a refresh (300 s before expiry) while still valid
    for 200 s, and wait until the refreshed tokens are held, not stored (the caller freezes
    the Secret's token first: `frozen_access_token`). Returns (the stored token's expiry, the
    connection's status then)."""
    now = dt.datetime.now(dt.UTC)
    valid_until = _rfc3339(now + dt.timedelta(seconds=200))
    _patch_tokens(
        kube, ns, secret, expires_at=valid_until, issued_at=_rfc3339(now - dt.timedelta(hours=1))
    )

    def not_stored(s: dict[str, Any]) -> bool:
        return _condition(s, "Degraded")[1] == "TokensNotStored"

    found = await until(kube, ns, name, "Degraded TokensNotStored", not_stored)
    return valid_until, found["status"]


async def test_refreshed_tokens_the_apiserver_refuses_keep_the_stored_token_ready(
    kube: Kube,
    namespace: str,
    fake: FakeOAuth,
    operator: KopfRunner,
    logs: pytest.LogCaptureFixture,
) -> None:
    ns, name = namespace, "acme-gmail"
    secret = f"{name}-tokens"
    await connect_gmail(kube, ns, name)
    stored = (secret_data(kube, ns, secret) or {})["access_token"]
    refreshes = fake.google.calls["refresh"]

    with frozen_access_token(kube, ns, secret) as binding:
        valid_until, status = await refresh_not_stored(kube, ns, name, secret)

        assert fake.google.calls["refresh"] == refreshes + 1
        assert (secret_data(kube, ns, secret) or {})["access_token"] == stored
        assert status["phase"] == "Connected"
        assert _ready(status)[:2] == ("True", "Connected")  # services keep the stored token
        assert f"the stored access token is valid until {valid_until}" in _ready(status)[2]
        assert _condition(status, "Reconciling") == ("", "", "")
        message = _condition(status, "Degraded")[2]
        assert f"writing Secret {secret} failed: " in message
        # our words name the Secret once, then the apiserver's answer (which names it too)
        assert message.count(f"writing Secret {secret}") == 1
        assert "keeps the access token as it is" in message  # the apiserver's refusal
        assert "retried with backoff" in message
        assert _when(status["expiresAt"]) == _when(valid_until)  # the stored token's
        assert status.get("refreshFailures", 0) == 0  # the refresh itself worked
        warned = [e for e in events(kube, ns) if e["reason"] == "TokensNotStored"]
        assert [e["type"] for e in warned] == ["Warning"]

        expire(kube, ns, secret)  # the stored token expired before the write got through

        def expired(s: dict[str, Any]) -> bool:
            return _ready(s)[:2] == ("False", "TokensNotStored")

        status = (await until(kube, ns, name, "Ready False", expired))["status"]
        assert _condition(status, "Reconciling")[:2] == ("True", "TokensNotStored")
        assert _condition(status, "Degraded") == ("", "", "")
        # a reader asks for a refresh, a user labels the Secret: the held tokens' write keeps both
        meta = {"annotations": {REFRESH_REQUESTED_ANNOTATION: _rfc3339(dt.datetime.now(dt.UTC))},
                "labels": {"example.com/team": "mail"}}  # fmt: skip
        resp = kube.http.patch(
            f"/api/v1/namespaces/{ns}/secrets/{secret}",
            json={"metadata": meta},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert resp.status_code == 200, resp.text
        assert kube.delete(binding).status_code == 200

    def stored_now(s: dict[str, Any]) -> bool:
        return _ready(s)[0] == "True" and _condition(s, "Degraded") == ("", "", "")

    # written at the next retry of the backoff (at most 60 s) once the policy is gone
    status = (await until(kube, ns, name, "the tokens stored", stored_now, within=120))["status"]
    data = secret_data(kube, ns, secret) or {}
    assert data["access_token"] != stored
    assert data["access_token"] in fake.google.access  # the one the provider issued then
    assert fake.google.calls["refresh"] == refreshes + 1  # held, not fetched again
    assert status.get("refreshFailures", 0) == 0
    stored_meta = kube.get(f"/api/v1/namespaces/{ns}/secrets/{secret}").json()["metadata"]
    annotations = stored_meta.get("annotations") or {}
    assert (
        annotations.get(REFRESH_REQUESTED_ANNOTATION)
        == meta["annotations"][REFRESH_REQUESTED_ANNOTATION]
    )
    assert stored_meta["labels"]["example.com/team"] == "mail"
    assert stored_meta["labels"]["xynergy.io/oauth-connection"] == name
    assert not {CLAIM_ANNOTATION, UNSTORED_ANNOTATION} & set(annotations)  # stored: let go
    body = connection(kube, ns, name)
    leaked = [t for t in fake.issued() if t in str(body)]
    assert not leaked, f"{len(leaked)} issued codes/tokens appear in the connection"
    _no_tokens_anywhere(fake, logs, events(kube, ns))


async def test_a_token_secret_deleted_while_refreshed_tokens_are_held_is_created_with_them(
    kube: Kube,
    namespace: str,
    fake: FakeOAuth,
    operator: KopfRunner,
    logs: pytest.LogCaptureFixture,
) -> None:
    """Refreshed tokens are held in memory (an admission policy refuses their write); the user
    deletes the token Secret meanwhile; the policy goes. The held tokens' write, a merge patch,
    got 404 at every retry; now the Secret is created again with them, owned and labelled as
    the first write made it, and the connection is Connected (no Degraded), the provider not
    asked again, no token in logs, Events or the connection."""
    ns, name = namespace, "acme-gmail-gone"
    secret = f"{name}-tokens"
    await connect_gmail(kube, ns, name)
    first = kube.get(f"/api/v1/namespaces/{ns}/secrets/{secret}").json()["metadata"]
    stored = (secret_data(kube, ns, secret) or {})["access_token"]
    refreshes = fake.google.calls["refresh"]

    with frozen_access_token(kube, ns, secret) as binding:
        await refresh_not_stored(kube, ns, name, secret)
        assert fake.google.calls["refresh"] == refreshes + 1
        assert kube.delete(f"/api/v1/namespaces/{ns}/secrets/{secret}").status_code == 200
        assert kube.delete(binding).status_code == 200

    def stored_again(s: dict[str, Any]) -> bool:
        return (
            _ready(s)[:2] == ("True", "Connected")
            and _condition(s, "Degraded") == ("", "", "")
            and (secret_data(kube, ns, secret) or {}).get("access_token", stored) != stored
        )

    status = (await until(kube, ns, name, "the Secret made again", stored_again, within=120))[
        "status"
    ]
    data = secret_data(kube, ns, secret) or {}
    assert data["access_token"] in fake.google.access  # the held one the provider issued
    assert data["refresh_token"]
    assert fake.google.calls["refresh"] == refreshes + 1  # held, not fetched again
    assert status["phase"] == "Connected"
    assert _when(status["expiresAt"]) == _when(data["expires_at"])
    made = kube.get(f"/api/v1/namespaces/{ns}/secrets/{secret}").json()["metadata"]
    assert made["uid"] != first["uid"]  # a new Secret
    uid = connection(kube, ns, name)["metadata"]["uid"]
    assert [(r["kind"], r["uid"], r.get("controller")) for r in made["ownerReferences"]] == [
        ("OAuthConnection", uid, True)
    ]
    assert made["labels"] == first["labels"]
    assert not {CLAIM_ANNOTATION, UNSTORED_ANNOTATION} & set(made.get("annotations") or {})
    body = connection(kube, ns, name)
    leaked = [t for t in fake.issued() if t in str(body)]
    assert not leaked, f"{len(leaked)} issued codes/tokens appear in the connection"
    _no_tokens_anywhere(fake, logs, events(kube, ns))
