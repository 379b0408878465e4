"""The fake providers `xynergy dev up` runs (tests/fakes/devstack: Slack's and Google's OAuth
endpoints, the Slack Web API, the Gmail API and an OpenAI-compatible chat API, in one local
process), and the settings that point the operator, the services and the samples at them.

Only `dev up` wires them: every production default still names the real provider. A setting
the user exported for `dev up` (a real provider's URL, `OPENAI_API_KEY`, ...) wins over the
fake's. The fakes live in the source tree's tests/; without them (an installed copy) `dev up`
says so and runs without.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controllers.devcluster.binaries import repo_root
from controllers.devcluster.cluster import DevCluster
from controllers.devcluster.manifests import create_secrets
from controllers.devcluster.processes import Probe, free_port, wait_healthy

__all__ = ["FAKE_CLIENT", "DevFakes", "start_fakes"]

FAKE_CLIENT = {"client_id": "fake-client-id", "client_secret": "fake-client-secret"}
"""The OAuth client the fake providers know (tests/fakes/devstack), not a real app's."""
_CLIENT_SECRETS = ("slack-oauth-client", "google-oauth-client")
"""The Secrets manifests/samples/oauthconnection-*.yaml read the client from."""
_EXTERNAL_KEYS = ("ABACUS_API_KEY", "OPENAI_API_KEY")


@dataclass(frozen=True)
class DevFakes:
    """Where the fakes answer."""

    oauth: str
    """Root of both OAuth providers (/slack/..., /google/...)."""
    slack_api: str
    gmail_api: str
    openai: str
    """OpenAI-compatible base URL (ends in /v1)."""

    def operator_env(self) -> dict[str, str]:
        """XYNERGY_OAUTH_<PROVIDER>_<STEP>_URL for the operator."""
        urls = {
            "SLACK_AUTHORIZE": f"{self.oauth}/slack/oauth/v2/authorize",
            "SLACK_TOKEN": f"{self.oauth}/slack/api/oauth.v2.access",
            "SLACK_REVOKE": f"{self.oauth}/slack/api/auth.revoke",
            "GOOGLE_AUTHORIZE": f"{self.oauth}/google/o/oauth2/v2/auth",
            "GOOGLE_TOKEN": f"{self.oauth}/google/token",
            "GOOGLE_REVOKE": f"{self.oauth}/google/revoke",
        }
        return unset({f"XYNERGY_OAUTH_{step}_URL": url for step, url in urls.items()})

    def slack_env(self) -> dict[str, str]:
        return unset({"XYNERGY_SLACK_API_URL": self.slack_api})

    def gmail_env(self) -> dict[str, str]:
        return unset({"XYNERGY_GMAIL_API_URL": self.gmail_api})

    def ai_provider(self) -> dict[str, str] | None:
        """The fake as a provider of the AI router's chain, when no external model key is
        configured (a real provider's answers are never mixed with the fake's)."""
        if any(os.environ.get(key) for key in _EXTERNAL_KEYS):
            return None
        return {"name": "fake-openai", "base_url": self.openai}


def unset(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of `env` the environment of `dev up` does not set already."""
    return {name: value for name, value in env.items() if name not in os.environ}


def start_fakes(
    cluster: DevCluster, *, progress: Callable[[str], None], timeout: float = 60.0
) -> DevFakes | None:
    """Start the fakes (registered with the cluster, so `dev down` stops them) and create the
    OAuth client Secrets the samples read (a user's own Secret is kept). None without tests/."""
    tests = repo_root() / "tests"
    if not (tests / "fakes" / "devstack").is_dir():
        progress(f"{tests}/fakes not found: no fake Slack, Gmail or model provider in dev")
        return None
    ports = {name: free_port() for name in ("oauth", "slack", "gmail", "openai")}
    fakes = DevFakes(
        oauth=f"http://127.0.0.1:{ports['oauth']}",
        slack_api=f"http://127.0.0.1:{ports['slack']}/api/",
        gmail_api=f"http://127.0.0.1:{ports['gmail']}/",
        openai=f"http://127.0.0.1:{ports['openai']}/v1",
    )
    progress(f"starting the fake OAuth providers, Slack, Gmail and model APIs ({fakes.oauth})")
    argv = [sys.executable, "-m", "fakes.devstack"]
    argv += [f"--{name}-port={port}" for name, port in ports.items()]
    path = os.pathsep.join(p for p in (str(tests), os.environ.get("PYTHONPATH", "")) if p)
    proc = cluster.add_process(
        name="fakes",
        argv=argv,
        env=dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1"),
        probe=Probe(url=f"{fakes.openai}/models", what="the fakes"),
    )
    wait_healthy(proc, timeout=timeout)
    made = create_secrets(
        kubeconfig=cluster.kubeconfig,
        namespace="default",
        secrets=dict.fromkeys(_CLIENT_SECRETS, FAKE_CLIENT),
    )
    if made:
        progress(f"created the fake providers' OAuth client Secrets: {', '.join(made)}")
    return fakes
