"""A rotated JWT secret and internal key, picked up by a running gateway process.

The gateway runs as it does in a pod (``python -m services.gateway``) with both keys in
Secret-volume files (``JWT_SECRET_FILE``, ``XYNERGY_INTERNAL_SIGNING_KEY_FILE``); an upstream
service verifies the internal identity from the same mounted key. While both run, the files
are swapped the way the kubelet updates a Secret volume (a new ``..data`` symlink renamed over
the old one). Then: a token of the new secret is accepted, one of the old secret still is for
the overlap window and is refused (401) after it; the gateway signs identities with the new
internal key only, which the upstream verifies; the log names keys by fingerprint only.

Every wait is on a condition (bounded); the overlap is a few seconds so the test stays short.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.common.identity import (
    IDENTITY_HEADER,
    InternalIdentityError,
    InternalIdentityVerifier,
)
from services.common.settings import InternalIdentitySettings
from services.common.signing_keys import fingerprint

from .conftest import RedisServer, free_port, make_jwt, serve, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[3]
OVERLAP = 6.0
POLL = 0.2
JWT_OLD, JWT_NEW = "jwt-old-" + "a" * 32, "jwt-new-" + "b" * 32
INT_OLD, INT_NEW = "internal-old-" + "c" * 32, "internal-new-" + "d" * 32


def kubelet_write(volume: Path, name: str, value: str) -> Path:
    """Write (or update) key ``name`` of a Secret volume as the kubelet's atomic writer does:
    the data in a new ``..<n>`` folder, a ``..data`` symlink renamed over the old one, and
    ``name -> ..data/name``. Returns the path a pod reads."""
    folder = volume / f"..{len(list(volume.glob('..[0-9]*'))) + 1}"
    folder.mkdir(parents=True)
    (folder / name).write_text(value + "\n")
    (volume / "..data_tmp").symlink_to(folder.name)
    os.replace(volume / "..data_tmp", volume / "..data")
    if not (volume / name).is_symlink():
        (volume / name).symlink_to(f"..data/{name}")
    return volume / name


def upstream_app(key_file: Path, seen: list[str]) -> Starlette:
    """A service behind the gateway: verifies the internal identity with the mounted key."""
    verifier = InternalIdentityVerifier(
        InternalIdentitySettings(
            signing_key_file=key_file, rotation_overlap_seconds=OVERLAP, key_poll_seconds=POLL
        )
    )

    async def echo(request: Request) -> JSONResponse:
        token = request.headers.get(IDENTITY_HEADER) or ""
        seen.append(token)
        try:
            who: dict[str, Any] = {"user": verifier.verify(token).user_id}
        except InternalIdentityError as exc:
            who = {"error": str(exc)}
        kid = jwt.get_unverified_header(token).get("kid") if token else None
        return JSONResponse({**who, "kid": kid})

    return Starlette(routes=[Route("/{path:path}", echo)])


@contextlib.contextmanager
def gateway_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.gateway"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # granian's workers go with it
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def gateway_env(
    redis: RedisServer, routes: Path, files: dict[str, Path], port: int
) -> dict[str, str]:
    drop = ("JWT_SECRET", "XYNERGY_AUTH_JWT_SECRET", "XYNERGY_INTERNAL_SIGNING_KEY")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("KUBERNETES_")}
    env.update(
        XYNERGY_GATEWAY_HOST="127.0.0.1",
        XYNERGY_GATEWAY_PORT=str(port),
        XYNERGY_GATEWAY_REDIS_URL=redis.url,
        XYNERGY_GATEWAY_ROUTE_SOURCE="file",
        XYNERGY_GATEWAY_ROUTES_FILE=str(routes),
        XYNERGY_GATEWAY_CACHE_ENABLED="false",
        # the waits below poll: no limit of the shared Redis may answer 429 instead
        XYNERGY_GATEWAY_RATE_LIMIT_PER_MINUTE="100000",
        XYNERGY_GATEWAY_TENANT_RATE_LIMIT_PER_MINUTE="0",
        XYNERGY_GATEWAY_IP_RATE_LIMIT_PER_MINUTE="0",
        XYNERGY_GATEWAY_UNAUTHENTICATED_RATE_LIMIT="0",
        XYNERGY_AUTH_FIREBASE_ENABLED="false",
        JWT_SECRET_FILE=str(files["jwt"]),
        XYNERGY_INTERNAL_SIGNING_KEY_FILE=str(files["internal"]),
        XYNERGY_JWT_ROTATION_OVERLAP_SECONDS=str(OVERLAP),
        XYNERGY_JWT_KEY_POLL_SECONDS=str(POLL),
    )
    return env


@dataclass
class Rig:
    http: httpx.AsyncClient
    upstream: str
    files: dict[str, Path]
    log: Path
    seen: list[str]
    """The identity tokens the upstream received."""


@pytest.fixture
async def rig(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Rig]:
    """A gateway process and its upstream, with their keys in Secret volumes."""
    files = {
        "jwt": kubelet_write(tmp_path / "jwt", "secret", JWT_OLD),
        "internal": kubelet_write(tmp_path / "internal", "key", INT_OLD),
    }
    seen: list[str] = []
    async with serve(upstream_app(files["internal"], seen)) as upstream:
        routes = tmp_path / "routes.json"
        crm = {"name": "crm", "url": upstream, "routes": [{"prefix": "/api/v2/crm"}]}
        routes.write_text(json.dumps({"services": [crm]}))
        port, log = free_port(), tmp_path / "gateway.log"
        env = gateway_env(redis_server, routes, files, port)
        with gateway_process(env, log) as proc:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

                async def ready() -> bool:
                    assert proc.poll() is None, log.read_text()
                    return (await http.get("/readyz")).status_code == 200

                await wait_for(ready, within=30, what="the gateway process")
                yield Rig(http, upstream, files, log, seen)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_jwt(user_id='rotation', secret=secret)}"}


async def test_a_running_gateway_picks_up_rotated_keys_with_an_overlap(rig: Rig) -> None:
    old_jwt, new_jwt = bearer(JWT_OLD), bearer(JWT_NEW)

    async def call(headers: dict[str, str]) -> httpx.Response:
        return await rig.http.get("/api/v2/crm/contacts", headers=headers)

    assert (await call(old_jwt)).json() == {"user": "rotation", "kid": fingerprint(INT_OLD)}
    assert (await call(new_jwt)).status_code == 401
    old_identity = rig.seen[-1]

    kubelet_write(rig.files["jwt"].parent, "secret", JWT_NEW)
    kubelet_write(rig.files["internal"].parent, "key", INT_NEW)

    async def rotated() -> bool:
        resp = await call(new_jwt)
        return resp.json() == {"user": "rotation", "kid": fingerprint(INT_NEW)}

    await wait_for(rotated, within=15, what="the new JWT secret and internal key in use")
    # the old secret within the overlap; the identity is signed with the new key only
    assert (await call(old_jwt)).json() == {"user": "rotation", "kid": fingerprint(INT_NEW)}

    async def old_refused() -> bool:
        return (await call(old_jwt)).status_code == 401

    await wait_for(
        old_refused, within=OVERLAP + 15, what="the old JWT secret retired", interval=0.1
    )
    refused = await call(old_jwt)
    assert refused.json()["error"] == "unauthorized"
    assert 'error_description="signature"' in refused.headers["www-authenticate"]
    assert (await call(new_jwt)).json() == {"user": "rotation", "kid": fingerprint(INT_NEW)}

    async def old_identity_refused() -> bool:
        resp = await rig.http.get(f"{rig.upstream}/x", headers={IDENTITY_HEADER: old_identity})
        return "error" in resp.json()

    await wait_for(old_identity_refused, within=OVERLAP + 15, what="the old internal key retired")

    text = rig.log.read_text()
    assert f"JWT key rotated: signing kid {fingerprint(JWT_NEW)}" in text
    assert f"internal identity key rotated: signing kid {fingerprint(INT_NEW)}" in text
    for secret in (JWT_OLD, JWT_NEW, INT_OLD, INT_NEW):
        assert secret not in text
