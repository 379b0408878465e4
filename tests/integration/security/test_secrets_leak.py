"""Secrets never leave their Secret (issue 19, item 7): one representative flow per kind of
secret runs with known values, then everything the run produced is searched for them.

The flows, against the session's real cluster, the operator as its own process
(`python -m controllers`, all kinds), a real gateway (in this process, with a real
redis-server) and the fake OAuth provider:

- an OAuthConnection with a known client secret: connected at the fake through the gateway's
  callback, its token expired and refreshed (a service's `TokenReader` asks the operator),
  then deleted (revoked at the fake);
- a XynergyService with an env var from a Secret (`secretKeyRef`), and one naming a key that
  Secret does not have (its refusal must not quote the Secret);
- gateway requests: garbage, wrong-key, `alg: none` and expired bearer tokens, a token in the
  query string, a forged state at the OAuth callback, a good token to a route whose service is
  down, and the good token's successful callback.

The secrets: the OAuth client secret, every code and token the fake issued, the PKCE
verifier, the gateway's JWT secret and internal signing key, the bearer tokens sent, the
Secret's env value. Where they are searched: the operator's whole output, every log record of
this process (gateway, TokenReader, lightkube, uvicorn), every Kubernetes object the cluster
serves a list of (Secrets excepted: they are where secrets belong) with Events and statuses,
the gateway's error bodies, and the `/metrics` text of the operator and the gateway. Each
secret is searched as is, URL-encoded, and base64 (standard and URL-safe alphabets, at each
of the three alignments it can take inside a longer base64 text).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

import httpx
import jwt
import pytest
from fakes.devstack import DevStack, seed
from fakes.oauth import FakeOAuth
from gateway.conftest import free_port, make_jwt, run_redis, serve, wait_for
from kube_support import Kube
from lightkube import AsyncClient, KubeConfig
from test_oauthconnection import browser, expire, secret_data, until
from test_rollout_support import Operator
from test_xynergyservice import create_xs, get_xs, ready_condition

from services.common.auth import AuthSettings
from services.common.oauth_tokens import TokenReader
from services.common.settings import InternalIdentitySettings
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.slack.app import create_app as create_slack_app
from services.slack.settings import SlackSettings
from services.slack.teams import KubeTeamDirectory

pytestmark = pytest.mark.timeout(240)

API = "/apis/xynergy.io/v1alpha1"
RUN = uuid.uuid4().hex
CLIENT_ID = f"leak-client-{RUN[:8]}"
SECRETS = {
    "oauth client secret": f"leak-client-secret-{RUN}",
    "gateway JWT secret": f"leak-jwt-secret-{RUN}",
    "gateway internal signing key": f"leak-internal-key-{RUN}",
    "env secret value": f"leak-db-password-{RUN}",
    "Slack signing secret": f"leak-slack-signing-{RUN}",
}
TEST_CLIENTS = ("httpx", "httpcore")
"""The test's own HTTP clients log the URLs it requests (the callback's code among them);
lightkube's requests carry no secret in their URLs, so nothing of ours hides there."""


def encodings(value: str) -> set[str]:
    """`value` as is, URL-encoded, and base64-encoded as it would appear anywhere inside a
    longer base64 text: for each of the three byte alignments, the characters that depend
    only on `value`'s own bytes."""
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            text = encode(b"\0" * shift + raw).decode().rstrip("=")
            lead = (shift * 8 + 5) // 6  # characters touched by the padding bytes
            tail = ((shift + len(raw)) * 8) % 6 and 1  # a last character mixing in zeros
            forms.add(text[lead : len(text) - tail])
    return {f for f in forms if len(f) >= 8}


def leaks(secrets: dict[str, str], sources: dict[str, str]) -> list[str]:
    """`<secret's label> in <source>` for every secret found in a source (values unprinted)."""
    return [
        f"{label} in {where}"
        for label, value in secrets.items()
        for where, text in sources.items()
        if any(form in text for form in encodings(value))
    ]


def test_encodings_find_a_secret_inside_longer_base64() -> None:
    secret = "s3cr3t-value-0123"
    for prefix in (b"", b"a", b"ab", b"abc"):
        blob = base64.b64encode(prefix + secret.encode() + b"tail").decode()
        assert leaks({"s": secret}, {"blob": blob}) == ["s in blob"], prefix
    assert leaks({"s": secret}, {"url": "x?t=" + quote(secret + "/+", safe="")}) == ["s in url"]
    assert leaks({"s": secret}, {"clean": base64.b64encode(b"other").decode()}) == []


# -- what the run produced ------------------------------------------------------------------


@dataclass
class Evidence:
    """Everything the run produced that a secret must not reach."""

    secrets: dict[str, str] = field(default_factory=lambda: dict(SECRETS))
    error_bodies: list[str] = field(default_factory=list)

    def secret(self, label: str, value: str) -> None:
        self.secrets[label] = value

    def answer(self, what: str, resp: httpx.Response, expect: int) -> httpx.Response:
        assert resp.status_code == expect, (what, resp.status_code, resp.text)
        if resp.status_code >= 400:
            self.error_bodies.append(f"{what}: {resp.headers} {resp.text}")
        return resp


def cluster_objects(kube: Kube) -> dict[str, str]:
    """Every object of every listable resource, cluster-wide, as text per resource (Secrets
    excepted); Events and statuses are among them."""
    out = {}
    for gv in _group_versions(kube):
        resp = kube.get(gv)
        if resp.status_code != 200:
            continue
        for res in resp.json()["resources"]:
            name = res["name"]
            if "/" in name or "list" not in res.get("verbs", []) or name == "secrets":
                continue
            listed = kube.get(f"{gv}/{name}")
            if listed.status_code == 200:
                out[f"{gv}/{name}"] = listed.text
    assert any(k.endswith("/events") for k in out), sorted(out)
    return out


def _group_versions(kube: Kube) -> list[str]:
    groups = kube.get("/apis").json()["groups"]
    return ["/api/v1"] + [f"/apis/{v['groupVersion']}" for g in groups for v in g["versions"]]


# -- the parts ------------------------------------------------------------------------------


@pytest.fixture
def fakes() -> Iterator[DevStack]:
    """The fake OAuth provider, wired to the fake Slack API (it accepts exactly the access
    tokens the OAuth fake keeps alive), knowing our client."""
    with DevStack() as stack:
        stack.oauth.slack.clients = {CLIENT_ID: SECRETS["oauth client secret"]}
        seed(stack)
        yield stack


@pytest.fixture
def operator_proc(
    cluster: Path, crds_installed: list[str], fakes: DevStack, tmp_path: Path
) -> Iterator[tuple[Operator, str]]:
    env = {"XYNERGY_OAUTH_REVOKE_ATTEMPTS": "2", "XYNERGY_METRICS_PORT": str(free_port())}
    for provider in ("slack", "google"):
        for step, url in fakes.oauth.endpoints(provider).items():
            env[f"XYNERGY_OAUTH_{provider.upper()}_{step.upper()}_URL"] = url
    op = Operator(cluster, tmp_path / "operator.log", **env).start()
    yield op, f"http://127.0.0.1:{env['XYNERGY_METRICS_PORT']}/metrics"
    op.stop()


@dataclass
class Platform:
    gateway: httpx.AsyncClient
    slack: httpx.AsyncClient


@pytest.fixture
async def platform(
    cluster: Path, fakes: DevStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Platform]:
    """The Slack service behind a gateway, both in this process, on one real redis-server."""
    monkeypatch.setenv("KUBECONFIG", str(cluster))  # the callback's and TokenReader's client
    internal = InternalIdentitySettings(
        signing_key=SECRETS["gateway internal signing key"]  # type: ignore[arg-type]
    )
    kube = AsyncClient(KubeConfig.from_file(cluster))
    async with run_redis(tmp_path) as redis:
        slack_app = create_slack_app(
            SlackSettings(api_url=fakes.slack.base_url, redis_url=redis.url, log_level="DEBUG",
                          signing_secret=SECRETS["Slack signing secret"]),  # type: ignore[arg-type]
            internal_settings=internal,
            tokens=TokenReader(kube),  # type: ignore[arg-type]
            teams=KubeTeamDirectory(kube, cache_seconds=0),
        )  # fmt: skip
        async with serve(slack_app) as slack_url:
            routes = tmp_path / "routes.json"
            routes.write_text(json.dumps({"services": [
                {"name": "crm", "url": "http://127.0.0.1:9", "routes": [{"prefix": "/api/v2/crm"}]},
                {"name": "slack", "url": slack_url, "routes": [{"prefix": "/api/v2/slack"}]},
            ]}))  # fmt: skip
            app = create_app(
                GatewaySettings(redis_url=redis.url, routes_file=routes, log_level="DEBUG"),
                auth_settings=AuthSettings(
                    jwt_secret=SECRETS["gateway JWT secret"],  # type: ignore[arg-type]
                    firebase_enabled=False,
                ),
                internal_settings=internal,
            )
            async with (
                serve(app) as url,
                httpx.AsyncClient(base_url=url, timeout=60) as gw,
                httpx.AsyncClient(base_url=slack_url, timeout=60) as slack,
            ):
                yield Platform(gateway=gw, slack=slack)
    await kube.close()


def good_token() -> str:
    return make_jwt(tenant_id="acme", secret=SECRETS["gateway JWT secret"], roles=["viewer"])


def bad_tokens() -> dict[str, str]:
    now = int(time.time())
    claims = {"user_id": "mallory", "tenant_id": "acme", "iss": "xynergy", "aud": "xynergy-api",
              "iat": now, "exp": now + 600}  # fmt: skip
    return {
        "garbage token": f"garbage-{RUN}",
        "wrong-key token": jwt.encode(claims, f"wrong-key-{RUN}", algorithm="HS256"),
        "alg none token": jwt.encode(claims, None, algorithm="none"),
        "expired token": make_jwt(secret=SECRETS["gateway JWT secret"], ttl=-3600),
    }


# -- the flows ------------------------------------------------------------------------------


def apply_connection(kube: Kube, ns: str, name: str, callback: str) -> None:
    client = {"metadata": {"name": f"{name}-client"},
              "stringData": {"client_id": CLIENT_ID,
                             "client_secret": SECRETS["oauth client secret"]}}  # fmt: skip
    assert kube.create(f"/api/v1/namespaces/{ns}/secrets", client).status_code == 201
    conn = {
        "apiVersion": "xynergy.io/v1alpha1", "kind": "OAuthConnection", "metadata": {"name": name},
        "spec": {"provider": "slack", "clientSecretRef": {"name": f"{name}-client"},
                 "scopes": ["channels:read"], "redirectURL": callback, "tenant": "acme",
                 "tokenSecretName": f"{name}-tokens"},
    }  # fmt: skip
    resp = kube.create(f"{API}/namespaces/{ns}/oauthconnections", conn)
    assert resp.status_code == 201, resp.text


async def oauth_flow(kube: Kube, ns: str, fake: FakeOAuth, p: Platform, ev: Evidence) -> None:
    """Connect through the gateway's callback, use the token (the Slack service lists the fake
    workspace's channels), refresh it through a TokenReader, delete the connection (revoked
    at the fake), and ask the Slack service again (not connected)."""
    name, token, gw = "leak-slack", good_token(), p.gateway
    auth = {"Authorization": f"Bearer {token}"}
    apply_connection(kube, ns, name, str(gw.base_url).rstrip("/") + "/api/v2/oauth/slack/callback")
    status = (await until(kube, ns, name, "an authorization URL",
                          lambda s: s.get("authorizationURL")))["status"]  # fmt: skip
    pending = secret_data(kube, ns, f"{name}-oauth-authorization") or {}
    ev.secret("PKCE code verifier", pending["code_verifier"])
    location = urlsplit(browser(status["authorizationURL"]))
    forged = location.query.replace("state=", f"state=forged-{RUN}", 1)
    ev.answer("forged state", await gw.get(f"{location.path}?{forged}", headers=auth), 400)
    resp = await gw.get(f"{location.path}?{location.query}", headers=auth)
    assert ev.answer("callback", resp, 200).json()["phase"] == "Connected"
    ev.answer("replayed callback", await gw.get(f"{location.path}?{location.query}",
                                                headers=auth), 400)  # fmt: skip
    channels = ev.answer("channels", await gw.get("/api/v2/slack/channels", headers=auth), 200)
    assert "general" in channels.text

    refreshes = fake.slack.calls["refresh"]
    expire(kube, ns, f"{name}-tokens")
    fresh = await TokenReader().tokens("acme", "slack")
    assert fake.slack.calls["refresh"] == refreshes + 1
    assert fresh.access_token.get_secret_value() in fake.issued()

    assert kube.delete(f"{API}/namespaces/{ns}/oauthconnections/{name}").status_code == 200

    async def revoked() -> bool:
        gone = kube.get(f"{API}/namespaces/{ns}/oauthconnections/{name}").status_code == 404
        return gone and fresh.access_token.get_secret_value() in fake.slack.revoked

    await wait_for(revoked, within=60, what="the connection revoked and deleted", interval=0.2)
    ev.answer("not connected", await gw.get("/api/v2/slack/channels", headers=auth), 409)
    forged = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"}
    ev.answer("forged webhook", await p.slack.post("/api/v2/slack/events", content=b"{}",
                                                   headers=forged), 401)  # fmt: skip


async def gateway_requests(gw: httpx.AsyncClient, ev: Evidence) -> None:
    """Refused tokens (in the header and in the query string) and a good one to a service
    that is down; every error body is kept."""
    for label, token in bad_tokens().items():
        ev.secret(label, token)
        headers = {"Authorization": f"Bearer {token}"}
        ev.answer(label, await gw.get("/api/v2/crm/contacts", headers=headers), 401)
        ev.answer(f"{label} at the callback", await gw.get(
            "/api/v2/oauth/slack/callback?code=c&state=s", headers=headers), 401)  # fmt: skip
    token = good_token()
    ev.secret("good bearer token", token)
    ev.answer("token in the query", await gw.get(f"/api/v2/crm/contacts?access_token={token}"), 401)
    down = await gw.get("/api/v2/crm/contacts", headers={"Authorization": f"Bearer {token}"})
    assert down.status_code >= 500, down.text
    ev.answer("service down", down, down.status_code)


def start_env_services(kube: Kube, ns: str) -> None:
    secret = {"metadata": {"name": "db"}, "stringData": {"password": SECRETS["env secret value"]}}
    assert kube.create(f"/api/v1/namespaces/{ns}/secrets", secret).status_code == 201
    for name, key in (("with-secret", "password"), ("wrong-key", "no-such-key")):
        env = [{"name": "DB_PASSWORD", "secretKeyRef": {"name": "db", "key": key}}]
        create_xs(kube, ns, name, env=env)


async def env_services_settled(kube: Kube, ns: str) -> None:
    async def settled() -> bool:
        ok = ready_condition(get_xs(kube, ns, "with-secret")).get("status") == "True"
        refused = ready_condition(get_xs(kube, ns, "wrong-key"))
        return ok and refused.get("status") == "False" and "no-such-key" in refused["message"]

    await wait_for(settled, within=90, what="one service Ready, one refused", interval=0.3)


# -- the test -------------------------------------------------------------------------------


async def test_no_secret_in_logs_events_objects_error_bodies_or_metrics(
    kube: Kube,
    namespace: str,
    fakes: DevStack,
    operator_proc: tuple[Operator, str],
    platform: Platform,
    caplog: pytest.LogCaptureFixture,
    record_property: pytest.RecordProperty,
) -> None:
    caplog.set_level(logging.DEBUG)
    operator, operator_metrics = operator_proc
    ev = Evidence()
    start_env_services(kube, namespace)
    await gateway_requests(platform.gateway, ev)
    await oauth_flow(kube, namespace, fakes.oauth, platform, ev)
    await env_services_settled(kube, namespace)
    for i, value in enumerate(fakes.oauth.issued()):
        ev.secret(f"code or token #{i} the fake issued", value)

    records = [r for r in caplog.records if r.name.split(".")[0] not in TEST_CLIENTS]
    loggers = {r.name.split(".")[0] + "." + r.name.split(".")[-1] for r in records}
    assert any(r.name.startswith("xynergy.gateway") for r in records), loggers
    operator_log = operator.log.read_text()
    assert "OAuthConnection" in operator_log or "oauthconnection" in operator_log
    sources = {
        "operator output": operator_log,
        "this process's logs": "\n".join(
            f"{r.name} {r.getMessage()} {r.__dict__}" for r in records
        ),
        "error bodies": "\n".join(ev.error_bodies),
        "operator /metrics": (await platform.gateway.get(operator_metrics)).text,
        "gateway /metrics": (await platform.gateway.get("/metrics")).text,
        "Slack service /metrics": (await platform.slack.get("/metrics")).text,
        **cluster_objects(kube),
    }
    assert "xynergy_gateway" in sources["gateway /metrics"]
    assert len(ev.secrets) > len(SECRETS) + 8  # the fake's codes and tokens are among them
    size = sum(len(text) for text in sources.values())
    print(f"{len(ev.secrets)} secrets searched in {len(sources)} sources ({size} characters)")
    found = leaks(ev.secrets, sources)
    record_property("secrets_searched", len(ev.secrets))
    record_property("sources_searched", len(sources))
    record_property("leaks", len(found))
    assert not found, "\n".join(found)
