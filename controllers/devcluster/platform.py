"""The platform's own workloads for `xynergy dev up`: Prometheus, redis-server, the Firestore
emulator, the CRM, the Slack and Gmail services, the AI router and Internal AI, the Marketing,
ASO and Research engines, the analytics service and the Intelligence Gateway, as local
processes beside the cluster.

kwok Pods run nothing, so the gateway's dev route table points at the local processes (a routes
file) instead of the in-cluster Service URLs. Secrets for dev (the JWT secret users' tokens are
signed with, the gateway-to-service key, Slack's webhook signing secret) are generated once into
`<workdir>/secrets/` (0600) and never printed; `xynergy dev token` signs a token with them.
Components get them from those files at each start, so state.json records the files, not the
values. `sample_secrets` puts the same values in the cluster as the Secrets the samples in
manifests/samples/ read, so `kubectl apply -f manifests/samples/` becomes Ready.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controllers.devcluster.cluster import DevCluster
from controllers.devcluster.fakes import DevFakes
from controllers.devcluster.processes import ClusterError, Probe, free_port, wait_healthy
from controllers.devcluster.prometheus import ScrapeTargets, start_prometheus

__all__ = [
    "DEV_ROUTES",
    "DEV_TENANT",
    "Platform",
    "dev_secrets",
    "route_prefixes",
    "sample_secrets",
    "start_platform",
    "start_prometheus_for",
]

JWT_ISSUER = "xynergy"
JWT_AUDIENCE = "xynergy-api"
DEV_TENANT = "acme"
"""The tenant the README's token is for: the dashboard's alerts in dev go to it."""
_SECRETS = ("jwt-secret", "internal-signing-key", "slack-signing-secret")


@dataclass(frozen=True)
class Platform:
    """Where the platform's dev workloads answer."""

    gateway_url: str
    crm_url: str
    slack_url: str
    gmail_url: str
    redis_url: str
    firestore_host: str | None
    ai_url: str = ""
    prometheus_url: str = ""
    analytics_url: str = ""
    pubsub_host: str | None = None


def _secret_files(workdir: Path) -> dict[str, Path]:
    """The dev secrets' files (name -> path), created once (0600) and reused."""
    folder = workdir / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    out: dict[str, Path] = {}
    for name in _SECRETS:
        path = out[name] = folder / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
    return out


def dev_secrets(workdir: Path) -> dict[str, str]:
    """The dev JWT secret, internal signing key and Slack signing secret, created once (0600)
    and reused."""
    return {name: path.read_text().strip() for name, path in _secret_files(workdir).items()}


# Secret name -> {key: the dev secret it holds}: every Secret a sample's env or Secret volumes
# read (tests/integration/test_crds.py checks the samples need no other). The local processes
# do not take their settings from the samples: they get the same values from the files above.
_SAMPLE_SECRETS = {
    "gateway-internal": {"signing_key": "internal-signing-key"},
    "gateway-jwt": {"secret": "jwt-secret"},
    "slack-app": {"signing_secret": "slack-signing-secret"},
}


def sample_secrets(workdir: Path) -> dict[str, dict[str, str]]:
    """The Secrets (name -> data) the samples read, holding the dev secrets' values (so the
    samples and the local processes agree on keys). OAuth client credentials are not among
    them: they come from the user's Slack app and Google client."""
    values = dev_secrets(workdir)
    return {
        name: {key: values[dev] for key, dev in keys.items()}
        for name, keys in _SAMPLE_SECRETS.items()
    }


@dataclass(frozen=True)
class _Start:
    """What every platform component is started with."""

    cluster: DevCluster
    progress: Callable[[str], None]
    timeout: float
    env: dict[str, str]
    """Variables set for every component (on top of the environment of `dev up`)."""
    secret_files: dict[str, Path]
    targets: ScrapeTargets | None = None
    """Where components that serve /metrics are added for Prometheus (None: no Prometheus)."""

    def run(
        self,
        name: str,
        argv: list[str],
        probe: Probe,
        *,
        env: dict[str, str] | None = None,
        secret_files: dict[str, Path] | None = None,
    ) -> None:
        """Start a component (registered with the cluster) and wait for `probe`."""
        proc = self.cluster.add_process(
            name=name,
            argv=argv,
            env=dict(os.environ, **self.env, **(env or {})),
            secret_files={**self.secret_files, **(secret_files or {})},
            probe=probe,
        )
        wait_healthy(proc, timeout=self.timeout)

    def python_service(
        self,
        name: str,
        *,
        title: str,
        env: dict[str, str],
        secret_files: dict[str, Path] | None = None,
        port: int | None = None,
        metrics: bool = False,
    ) -> str:
        """Start `python -m services.<name>` on `port` (a free one) of 127.0.0.1 (its settings
        XYNERGY_<NAME>_HOST and _PORT), wait for its /healthz and return its URL; with
        `metrics`, Prometheus scrapes its /metrics."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        prefix = f"XYNERGY_{name.upper()}_"
        env = {f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port), **env}
        self.progress(f"starting {title} on {url}")
        self.run(
            name,
            [sys.executable, "-m", f"services.{name}"],
            Probe(url=f"{url}/healthz", what="/healthz"),
            env=env,
            secret_files=secret_files,
        )
        if metrics and self.targets is not None:
            self.targets.add(name, f"127.0.0.1:{port}")
        return url


def start_prometheus_for(
    cluster: DevCluster, *, progress: Callable[[str], None]
) -> tuple[str, ScrapeTargets]:
    """Prometheus for the platform, started before the operator so it gets the URL."""
    return start_prometheus(cluster, routes=route_prefixes(), progress=progress)


def start_platform(
    cluster: DevCluster,
    *,
    progress: Callable[[str], None],
    prometheus: tuple[str, ScrapeTargets] | None = None,
    fakes: DevFakes | None = None,
    timeout: float = 120.0,
) -> Platform:
    """Start redis, Firestore (when gcloud is there), the services and the gateway; register
    them with the cluster so `dev down` stops them too (and `dev restart` can restart them).
    With `prometheus` (its URL and targets file), the services with /metrics are scraped and
    the analytics service's anomaly engine reads it. With `fakes` (controllers/devcluster/
    fakes.py), the Slack and Gmail services call the fake APIs and the AI router's chain has
    the fake model before the internal one."""
    files = _secret_files(cluster.workdir)
    prometheus_url, targets = prometheus or ("", None)
    start = _Start(
        cluster=cluster,
        progress=progress,
        timeout=timeout,
        env={"PYTHONUNBUFFERED": "1"},
        secret_files={"XYNERGY_INTERNAL_SIGNING_KEY": files["internal-signing-key"]},
        targets=targets,
    )
    redis_url = _start_redis(start)
    firestore_host = _start_firestore(start)
    crm_url = _start_crm(start, redis_url=redis_url, firestore_host=firestore_host)
    slack_url, gmail_url = _start_connectors(
        start, redis_url=redis_url, slack_secret=files["slack-signing-secret"], fakes=fakes
    )
    ai_url = _start_ai(start, redis_url=redis_url, fake=fakes.ai_provider() if fakes else None)
    pubsub_host = _start_pubsub(start)
    upstreams = {"crm": crm_url, "slack": slack_url, "gmail": gmail_url, "ai": ai_url}
    upstreams |= _start_engines(start, ai_url=ai_url)
    upstreams["analytics"] = _start_analytics(
        start,
        redis_url=redis_url,
        ai_url=ai_url,
        prometheus_url=prometheus_url,
        gmail_url=gmail_url,
        pubsub_host=pubsub_host,
    )
    gateway_url = _start_gateway(
        start, redis_url=redis_url, upstreams=upstreams, jwt_secret=files["jwt-secret"]
    )
    return Platform(
        gateway_url=gateway_url,
        crm_url=crm_url,
        slack_url=slack_url,
        gmail_url=gmail_url,
        redis_url=redis_url,
        firestore_host=firestore_host,
        ai_url=ai_url,
        prometheus_url=prometheus_url,
        analytics_url=upstreams["analytics"],
        pubsub_host=pubsub_host,
    )


def _start_redis(start: _Start) -> str:
    redis = shutil.which("redis-server")
    if redis is None:
        raise ClusterError("redis-server: not installed; run `make deps` (hack/deps/redis.sh)")
    port = free_port()
    folder = start.cluster.workdir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    start.progress(f"starting redis-server on 127.0.0.1:{port}")
    argv = [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(folder)]
    start.run("redis-server", argv, Probe(url=f"redis://127.0.0.1:{port}", what="PONG"))
    return f"redis://127.0.0.1:{port}/0"


def _start_firestore(start: _Start) -> str | None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        start.progress("gcloud not found: the CRM starts without Firestore (its /readyz says so)")
        return None
    host = f"127.0.0.1:{free_port()}"
    start.progress(f"starting the Firestore emulator on {host}")
    start.run(
        "firestore-emulator",
        [gcloud, "emulators", "firestore", "start", f"--host-port={host}", "--quiet"],
        Probe(url=f"http://{host}/", what="the emulator"),
    )
    return host


PUBSUB_PROJECT = "demo-xynergy"
"""The dev Pub/Sub emulator's project (any id works on the emulator)."""


def _pubsub_emulator() -> str | None:
    """gcloud, when its Pub/Sub emulator component is installed (hack/deps/
    gcloud-emulators.sh: `<sdk root>/platform/pubsub-emulator`), else None."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    sdk_root = Path(gcloud).resolve().parents[1]
    return gcloud if (sdk_root / "platform" / "pubsub-emulator").is_dir() else None


def _start_pubsub(start: _Start) -> str | None:
    """gcloud's Pub/Sub emulator (data in the workdir) for the analytics ingest, when it is
    installed; else None, said in the progress."""
    gcloud = _pubsub_emulator()
    if gcloud is None:
        start.progress(
            "gcloud's Pub/Sub emulator is not installed (hack/deps/gcloud-emulators.sh): "
            "analytics ingests from the Redis bus only"
        )
        return None
    host = f"127.0.0.1:{free_port()}"
    data = start.cluster.workdir / "pubsub"
    data.mkdir(parents=True, exist_ok=True)
    start.progress(f"starting the Pub/Sub emulator on {host} (project {PUBSUB_PROJECT})")
    argv = [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={host}"]
    argv += [f"--project={PUBSUB_PROJECT}", f"--data-dir={data}", "--quiet"]
    start.run("pubsub-emulator", argv, Probe(url=f"http://{host}/", what="the emulator"))
    return host


def _start_crm(start: _Start, *, redis_url: str, firestore_host: str | None) -> str:
    env = {
        "XYNERGY_CRM_REDIS_URL": redis_url,
        "XYNERGY_CRM_PROJECT_ID": "demo-xynergy",
    }
    if firestore_host:
        env["FIRESTORE_EMULATOR_HOST"] = firestore_host
    return start.python_service("crm", title="the CRM", env=env, metrics=True)


def _start_connectors(
    start: _Start, *, redis_url: str, slack_secret: Path, fakes: DevFakes | None
) -> tuple[str, str]:
    """The Slack and Gmail services; they read OAuthConnections (and their token Secrets)
    with the admin kubeconfig and call the fake APIs when there are `fakes`. Slack's webhook
    signing secret is XYNERGY_SLACK_SIGNING_SECRET from the environment of `dev up` (a real
    Slack app's), else the generated dev one."""
    kube = {"KUBECONFIG": str(start.cluster.kubeconfig)}
    own = "XYNERGY_SLACK_SIGNING_SECRET" in os.environ
    slack = start.python_service(
        "slack",
        title="the Slack service",
        env={**kube, "XYNERGY_SLACK_REDIS_URL": redis_url, **(fakes.slack_env() if fakes else {})},
        secret_files=None if own else {"XYNERGY_SLACK_SIGNING_SECRET": slack_secret},
        metrics=True,
    )
    gmail = start.python_service(
        "gmail",
        title="the Gmail service",
        env={**kube, "XYNERGY_GMAIL_REDIS_URL": redis_url, **(fakes.gmail_env() if fakes else {})},
        metrics=True,
    )
    return slack, gmail


def _start_ai(start: _Start, *, redis_url: str, fake: dict[str, str] | None) -> str:
    """The Internal AI service (the packaged all-MiniLM-L6-v2 model), then the AI router with
    the default chain (Abacus and OpenAI when ABACUS_API_KEY / OPENAI_API_KEY are set in the
    environment of `dev up`, else the `fake` model provider; the internal service last)."""
    from services.ai.settings import default_providers

    internal = start.python_service("internal_ai", title="the Internal AI service", env={})
    chain = [p.model_dump(mode="json", exclude={"api_key"}) for p in default_providers()]
    chain[-1]["base_url"] = f"{internal}/v1"
    if fake is not None:
        chain.insert(-1, fake)
    env = {
        "XYNERGY_AI_REDIS_URL": redis_url,
        "XYNERGY_AI_PROVIDERS": json.dumps(chain),
        "XYNERGY_AI_SEMANTIC_EMBEDDINGS_URL": f"{internal}/v1",
    }
    return start.python_service("ai", title="the AI router", env=env, metrics=True)


def _start_engines(start: _Start, *, ai_url: str) -> dict[str, str]:
    """The Marketing, ASO and Research engines, calling the AI router."""
    return {
        name: start.python_service(
            name, title=f"the {title} engine", env={f"XYNERGY_{name.upper()}_AI_URL": ai_url}
        )
        for name, title in (("marketing", "Marketing"), ("aso", "ASO"), ("research", "Research"))
    }


def _start_analytics(
    start: _Start,
    *,
    redis_url: str,
    ai_url: str,
    prometheus_url: str,
    gmail_url: str,
    pubsub_host: str | None = None,
) -> str:
    """The analytics service: DuckDB in the workdir, the event bus, the AI router's ledger and
    the cluster's XynergyServices, ScalingPolicies and Rollouts (admin kubeconfig); its anomaly
    engine watches the dev services' traffic through the gateway in Prometheus (alerts for
    DEV_TENANT); reports are delivered through the dev Gmail service. With the Pub/Sub
    emulator (`pubsub_host`) it also ingests the 7 consolidated topics there (created on its
    start), malformed messages going to `analytics-dead-letters`."""
    env = {
        "KUBECONFIG": str(start.cluster.kubeconfig),
        "XYNERGY_ANALYTICS_REDIS_URL": redis_url,
        "XYNERGY_ANALYTICS_AI_URL": ai_url,
        "XYNERGY_ANALYTICS_DUCKDB_PATH": str(start.cluster.workdir / "analytics.duckdb"),
        "XYNERGY_ANALYTICS_PROMETHEUS_URL": prometheus_url,
        "XYNERGY_ANALYTICS_ANOMALY_SERVICES": json.dumps(sorted(DEV_ROUTES)),
        "XYNERGY_ANALYTICS_ANOMALY_TENANT": DEV_TENANT,
        "XYNERGY_ANALYTICS_REPORTS_GMAIL_URL": gmail_url,
    }
    if pubsub_host:
        env["PUBSUB_EMULATOR_HOST"] = pubsub_host
        env["XYNERGY_ANALYTICS_PUBSUB_PROJECT"] = PUBSUB_PROJECT
        env["XYNERGY_ANALYTICS_PUBSUB_DEAD_LETTER_TOPIC"] = "analytics-dead-letters"
    return start.python_service("analytics", title="the analytics service", env=env, metrics=True)


# The analytics contract's prefixes; the gateway proxies /api/... only, so each is also
# reached as /api/v1<prefix> (an alias the gateway rewrites to the prefix upstream).
_ANALYTICS = ("/phase3", "/bigquery", "/pubsub", "/container", "/monitoring")

DEV_ROUTES: dict[str, list[dict[str, Any]]] = {
    "crm": [{"prefix": "/api/v2/crm"}],
    # Slack's Events API cannot send a token: its webhook is public (signed by Slack instead)
    "slack": [{"prefix": "/api/v2/slack"}, {"prefix": "/api/v2/slack/events", "public": True}],
    "gmail": [{"prefix": "/api/v2/gmail", "aliases": ["/api/v2/email"]}],
    "ai": [{"prefix": "/api/v1/ai", "timeoutSeconds": 120}],
    "marketing": [{"prefix": "/api/v1/marketing", "timeoutSeconds": 120}],
    "aso": [{"prefix": "/api/v1/aso", "timeoutSeconds": 120}],
    "research": [{"prefix": "/api/v1/research", "timeoutSeconds": 300}],
    "analytics": [
        *({"prefix": p, "aliases": [f"/api/v1{p}"], "timeoutSeconds": 120} for p in _ANALYTICS),
        # the Platform Dashboard: the page and its static files carry no data (public); the
        # panels go through the gateway's auth (the longest prefix wins)
        {"prefix": "/dashboard", "aliases": ["/api/v1/dashboard"], "public": True},
        {"prefix": "/dashboard/panels", "aliases": ["/api/v1/dashboard/panels"]},
        # reports (PDF and CSV, delivered by Gmail), schedules and the compliance report: the
        # service serves these under /api/v1 itself
        {"prefix": "/api/v1/reports", "timeoutSeconds": 120},
        {"prefix": "/api/v1/schedules"},
        {"prefix": "/api/v1/security"},
    ],
}
"""The dev gateway's routes per upstream (the XynergyService `spec.routes` shape)."""

STREAM_TOPICS = [
    "slack-messages",
    "email-updates",
    "crm-changes",
    "platform-status",
    "anomaly-alerts",
]
"""What the gateway's socket.io stream serves: the connectors', the CRM's and the dashboard's."""


def route_prefixes() -> dict[str, list[str]]:
    """Upstream -> the prefixes the gateway labels its request metrics with."""
    return {name: [str(r["prefix"]) for r in routes] for name, routes in DEV_ROUTES.items()}


def _start_gateway(
    start: _Start, *, redis_url: str, upstreams: dict[str, str], jwt_secret: Path
) -> str:
    routes = start.cluster.workdir / "gateway-routes.json"
    table = {
        "services": [
            {"name": name, "url": url, "routes": DEV_ROUTES[name]}
            for name, url in upstreams.items()
        ]
    }
    routes.write_text(json.dumps(table, indent=2))
    port = free_port()
    own = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]  # the dashboard's page
    env = {
        "KUBECONFIG": str(start.cluster.kubeconfig),  # the OAuth callback reads the connection
        "XYNERGY_GATEWAY_REDIS_URL": redis_url,
        "XYNERGY_GATEWAY_ROUTE_SOURCE": "file",
        "XYNERGY_GATEWAY_ROUTES_FILE": str(routes),
        "XYNERGY_GATEWAY_CORS_ORIGINS": json.dumps(
            ["http://localhost:3000", "http://localhost:5173", *own]
        ),
        "XYNERGY_GATEWAY_STREAM_TOPICS": json.dumps(STREAM_TOPICS),
        "XYNERGY_AUTH_JWT_ISSUER": JWT_ISSUER,
        "XYNERGY_AUTH_JWT_AUDIENCE": JWT_AUDIENCE,
        "XYNERGY_AUTH_FIREBASE_ENABLED": "false",
    }
    return start.python_service(
        "gateway",
        title="the Intelligence Gateway",
        env=env,
        secret_files={"XYNERGY_AUTH_JWT_SECRET": jwt_secret},
        port=port,
        metrics=True,
    )
