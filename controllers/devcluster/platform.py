"""The platform's own workloads for `xynergy dev up`: redis-server, the Firestore emulator, the
CRM and the Intelligence Gateway, as local processes beside the cluster.

kwok Pods run nothing, so the gateway's dev route table points at the local processes (a routes
file) instead of the in-cluster Service URLs. Secrets for dev (the JWT secret users' tokens are
signed with, the gateway-to-service key) are generated once into `<workdir>/secrets/` (0600) and
never printed; `xynergy dev token` signs a token with them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controllers.devcluster.cluster import DevCluster
from controllers.devcluster.processes import ClusterError, free_port, http_ok, wait_until_ready

__all__ = ["Platform", "dev_secrets", "start_platform"]

JWT_ISSUER = "xynergy"
JWT_AUDIENCE = "xynergy-api"


@dataclass(frozen=True)
class Platform:
    """Where the platform's dev workloads answer."""

    gateway_url: str
    crm_url: str
    redis_url: str
    firestore_host: str | None


def dev_secrets(workdir: Path) -> dict[str, str]:
    """The dev JWT secret and internal signing key, created once (0600) and reused."""
    folder = workdir / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    out: dict[str, str] = {}
    for name in ("jwt-secret", "internal-signing-key"):
        path = folder / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        out[name] = path.read_text().strip()
    return out


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def start_platform(
    cluster: DevCluster, *, progress: Callable[[str], None], timeout: float = 120.0
) -> Platform:
    """Start redis, Firestore (when gcloud is there), the CRM and the gateway; register them
    with the cluster so `dev down` stops them too."""
    workdir = cluster.workdir
    keys = dev_secrets(workdir)
    base_env = dict(os.environ, PYTHONUNBUFFERED="1")
    base_env["XYNERGY_INTERNAL_SIGNING_KEY"] = keys["internal-signing-key"]

    redis = shutil.which("redis-server")
    if redis is None:
        raise ClusterError("redis-server: not installed; run `make deps` (hack/deps/redis.sh)")
    redis_port = free_port()
    redis_dir = workdir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    progress(f"starting redis-server on 127.0.0.1:{redis_port}")
    proc = cluster.add_process(
        name="redis-server",
        argv=[
            redis,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(redis_dir),
        ],
    )
    wait_until_ready(proc, lambda: _redis_ping(redis_port), what="PONG", timeout=timeout)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"

    firestore_host: str | None = None
    gcloud = shutil.which("gcloud")
    if gcloud is not None:
        fs_port = free_port()
        firestore_host = f"127.0.0.1:{fs_port}"
        progress(f"starting the Firestore emulator on {firestore_host}")
        proc = cluster.add_process(
            name="firestore-emulator",
            argv=[
                gcloud,
                "emulators",
                "firestore",
                "start",
                f"--host-port={firestore_host}",
                "--quiet",
            ],
        )
        wait_until_ready(
            proc,
            lambda: http_ok(f"http://{firestore_host}/"),
            what="the emulator",
            timeout=timeout,
        )
    else:
        progress("gcloud not found: the CRM starts without Firestore (its /readyz says so)")

    crm_port = free_port()
    crm_env = dict(
        base_env,
        XYNERGY_CRM_HOST="127.0.0.1",
        XYNERGY_CRM_PORT=str(crm_port),
        XYNERGY_CRM_REDIS_URL=redis_url,
        XYNERGY_CRM_PROJECT_ID="demo-xynergy",
    )
    if firestore_host:
        crm_env["FIRESTORE_EMULATOR_HOST"] = firestore_host
    progress(f"starting the CRM on 127.0.0.1:{crm_port}")
    proc = cluster.add_process(name="crm", argv=[sys.executable, "-m", "services.crm"], env=crm_env)
    crm_url = f"http://127.0.0.1:{crm_port}"
    wait_until_ready(proc, lambda: http_ok(f"{crm_url}/healthz"), what="/healthz", timeout=timeout)

    routes = workdir / "gateway-routes.json"
    routes.write_text(
        json.dumps(
            {
                "services": [
                    {"name": "crm", "url": crm_url, "routes": [{"prefix": "/api/v2/crm"}]},
                ]
            },
            indent=2,
        )
    )
    gw_port = free_port()
    gw_env = dict(
        base_env,
        XYNERGY_GATEWAY_HOST="127.0.0.1",
        XYNERGY_GATEWAY_PORT=str(gw_port),
        XYNERGY_GATEWAY_REDIS_URL=redis_url,
        XYNERGY_GATEWAY_ROUTE_SOURCE="file",
        XYNERGY_GATEWAY_ROUTES_FILE=str(routes),
        XYNERGY_GATEWAY_CORS_ORIGINS=json.dumps(["http://localhost:3000", "http://localhost:5173"]),
        XYNERGY_AUTH_JWT_SECRET=keys["jwt-secret"],
        XYNERGY_AUTH_JWT_ISSUER=JWT_ISSUER,
        XYNERGY_AUTH_JWT_AUDIENCE=JWT_AUDIENCE,
        XYNERGY_AUTH_FIREBASE_ENABLED="false",
    )
    progress(f"starting the Intelligence Gateway on 127.0.0.1:{gw_port}")
    proc = cluster.add_process(
        name="gateway", argv=[sys.executable, "-m", "services.gateway"], env=gw_env
    )
    gateway_url = f"http://127.0.0.1:{gw_port}"
    wait_until_ready(
        proc, lambda: http_ok(f"{gateway_url}/healthz"), what="/healthz", timeout=timeout
    )
    return Platform(
        gateway_url=gateway_url, crm_url=crm_url, redis_url=redis_url, firestore_host=firestore_host
    )
