"""`xynergy dev up` runs the fake providers (tests/fakes/devstack) and wires the platform to
them: a user connects the sample Slack and Gmail OAuthConnections with `kubectl xynergy
connect` and a browser-like redirect, the services call the fake APIs with the stored tokens,
a refresh and a revoke happen at the fake, and the AI routes answer with the fake model.

The heavy form (its own `dev up`, every flow) is soak; test_devcluster.py's `dev up` test
runs `connect_slack` and `ai_answers` as the bounded form in CI.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from kube_support import Kube
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from controllers.devcluster.processes import is_alive

ROOT = Path(__file__).resolve().parents[2]
API = "/apis/xynergy.io/v1alpha1/namespaces/default/oauthconnections"
SECRETS = "/api/v1/namespaces/default/secrets"

pytestmark = pytest.mark.integration


@dataclass
class Dev:
    """A running `dev up`: its environment (XYNERGY_DEV_DIR), gateway and a tenant's auth."""

    env: dict[str, str]
    gateway: str
    auth: dict[str, str]
    kube: Kube


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controllers.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def dev_token(env: dict[str, str], tenant: str = "acme") -> dict[str, str]:
    token = cli("dev", "token", "--tenant", tenant, env=env)
    assert token.returncode == 0, token.stderr
    return {"Authorization": f"Bearer {token.stdout.strip()}"}


def connect(dev: Dev, sample: str, provider: str) -> dict[str, object]:
    """Apply manifests/samples/<sample>, run `kubectl xynergy connect`, play the browser (the
    fake provider approves and redirects) and the frontend (it hands code and state to the
    gateway's callback with the user's token); the command's JSON result."""
    obj = yaml.safe_load((ROOT / "manifests" / "samples" / sample).read_text())
    name = obj["metadata"]["name"]
    resp = dev.kube.create(API, obj)
    assert resp.status_code == 201, resp.text
    plugin = Path(sys.executable).with_name("kubectl-xynergy")
    env = dict(dev.env, KUBECONFIG=str(dev.kube.kubeconfig))
    waiting = subprocess.Popen(
        [str(plugin), "connect", name, "--timeout", "60", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert waiting.stderr is not None
        lines = iter(waiting.stderr.readline, "")
        url = next(line.strip() for line in lines if line.startswith("http"))
        assert urlsplit(url).path.startswith(f"/{'google' if provider == 'gmail' else 'slack'}/")
        approved = httpx.get(url, follow_redirects=False, timeout=10)
        assert approved.status_code == 302, approved.text
        location = urlsplit(approved.headers["location"])
        assert location.geturl().startswith(obj["spec"]["redirectURL"]), "sent back to the app"
        callback = f"{dev.gateway}/api/v2/oauth/{provider}/callback?{location.query}"
        done = httpx.get(callback, headers=dev.auth, timeout=60)
        assert done.status_code == 200, done.text
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    result: dict[str, object] = json.loads(out)
    return result


def ai_answers(dev: Dev) -> dict[str, object]:
    """A chat completion through the gateway and the AI router (no external key set)."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello dev"}]}
    resp = httpx.post(
        f"{dev.gateway}/api/v1/ai/chat/completions", json=body, headers=dev.auth, timeout=60
    )
    assert resp.status_code == 200, resp.text
    answer: dict[str, object] = resp.json()
    return answer


def secret_value(kube: Kube, name: str, key: str) -> str:
    data = kube.get(f"{SECRETS}/{name}").json()["data"]
    return base64.b64decode(data[key]).decode()


# -- the heavy form: its own dev up, every flow ---------------------------------------------


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, bindir: Path) -> Iterator[Dev]:
    workdir = tmp_path_factory.mktemp("dev-fakes") / "dev"
    env = dict(os.environ, XYNERGY_DEV_DIR=str(workdir), PYTHONUNBUFFERED="1")
    for name in ("KUBECONFIG", "OPENAI_API_KEY", "ABACUS_API_KEY"):
        env.pop(name, None)
    up = cli("dev", "up", "--nodes", "1", env=env)
    try:
        assert up.returncode == 0, up.stderr
        gateway = next(
            line.split()[1] for line in up.stdout.splitlines() if line.startswith("gateway:")
        )
        kubeconfig = workdir / "kubeconfig" / "admin.kubeconfig"
        kube = Kube.from_kubeconfig(kubeconfig)
        running = Dev(env, gateway, dev_token(env), kube)
        yield running
        running.kube.http.close()
    finally:
        state = json.loads((workdir / "state.json").read_text()) if workdir.exists() else {}
        down = cli("dev", "down", env=env)
        assert down.returncode == 0, down.stderr
        assert not any(is_alive(p["pid"], p["start"]) for p in state.get("processes", []))


@pytest.mark.soak
def test_slack_connect_refresh_and_revoke_against_the_fakes(dev: Dev) -> None:
    result = connect(dev, "oauthconnection-slack.yaml", "slack")
    assert result["phase"] == "Connected"
    channels = httpx.get(f"{dev.gateway}/api/v2/slack/channels", headers=dev.auth, timeout=30)
    assert channels.status_code == 200, channels.text
    assert "general" in [c["name"] for c in channels.json()["channels"]]

    # the token expires: the Slack service's next call waits for the operator's refresh at
    # the fake and goes through with the new token
    first = secret_value(dev.kube, "acme-slack-tokens", "access_token")
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    expired = dev.kube.http.patch(
        f"{SECRETS}/acme-slack-tokens",
        content=json.dumps({"stringData": {"expires_at": past}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert expired.status_code == 200, expired.text
    again = httpx.get(f"{dev.gateway}/api/v2/slack/channels", headers=dev.auth, timeout=60)
    assert again.status_code == 200, again.text
    assert secret_value(dev.kube, "acme-slack-tokens", "access_token") != first
    token = secret_value(dev.kube, "acme-slack-tokens", "access_token")
    slack_api = _environ_of(dev, "slack")["XYNERGY_SLACK_API_URL"]
    client = WebClient(token=token, base_url=slack_api)
    assert client.conversations_list()["ok"]

    # delete: revoked at the fake (the token no longer opens the workspace), Secret gone
    assert dev.kube.delete(f"{API}/acme-slack").status_code == 200
    dev.kube.wait_for(
        "the token Secret to go",
        lambda: dev.kube.get(f"{SECRETS}/acme-slack-tokens").status_code == 404,
        timeout=60,
    )
    with pytest.raises(SlackApiError, match="invalid_auth"):
        client.conversations_list()


@pytest.mark.soak
def test_gmail_connects_and_lists_the_fake_inbox(dev: Dev) -> None:
    assert connect(dev, "oauthconnection-gmail.yaml", "gmail")["phase"] == "Connected"
    listed = httpx.get(f"{dev.gateway}/api/v2/gmail/messages", headers=dev.auth, timeout=30)
    assert listed.status_code == 200, listed.text
    subjects = [m["subject"] for m in listed.json()["messages"]]
    assert "Welcome to the fake inbox" in subjects


@pytest.mark.soak
def test_ai_and_engines_answer_with_the_fake_model(dev: Dev) -> None:
    answer = ai_answers(dev)
    assert answer["choices"][0]["message"]["content"] == "fake-openai says: hello dev"  # type: ignore[index]
    brief = {"product": "Xynergy", "audience": "ops", "goal": "signups", "channels": ["email"]}
    campaign = httpx.post(
        f"{dev.gateway}/api/v1/marketing/campaigns", json=brief, headers=dev.auth, timeout=60
    )
    assert campaign.status_code == 200, campaign.text
    assert campaign.json()["ai"]["provider"] == "fake-openai"
    task = {"question": "Why do canary releases reduce risk?"}
    research = httpx.post(
        f"{dev.gateway}/api/v1/research/tasks", json=task, headers=dev.auth, timeout=120
    )
    assert research.status_code == 200, research.text


def _environ_of(dev: Dev, name: str) -> dict[str, str]:
    state = json.loads((Path(dev.env["XYNERGY_DEV_DIR"]) / "state.json").read_text())
    pid = next(p["pid"] for p in state["processes"] if p["name"] == name)
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(i.decode().split("=", 1) for i in raw if b"=" in i)
