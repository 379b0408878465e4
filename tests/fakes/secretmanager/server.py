"""A fake Secret Manager API v1 (REST/JSON, the surface `secretmanager_v1` with
`transport="rest"` speaks) on 127.0.0.1, in a thread of the test process.

Routes (as in the client's `rest_base.py` http options, global secrets only):
  GET/POST  /v1/projects/*/secrets                             list / create (?secretId=)
  GET       /v1/projects/*/secrets/*                           get
  POST      /v1/projects/*/secrets/*:addVersion                add a version
  GET       /v1/projects/*/secrets/*/versions                  list versions
  GET       /v1/projects/*/secrets/*/versions/*                get (`latest`: newest version)
  GET       /v1/projects/*/secrets/*/versions/*:access         the payload (ENABLED only)
  POST      /v1/projects/*/secrets/*/versions/*:{disable,enable,destroy}

Faithful where the operator depends on it: resource names in responses carry the project
*number* (URLs take the id or the number), `latest` is the most recently created version
whatever its state, a disabled or destroyed version cannot be accessed (FAILED_PRECONDITION), a
secret needs a replication policy, ids and version ids are validated, `dataCrc32c` is checked,
errors use the Google JSON error format (google.api_core raises the matching exceptions) and
`$alt=json;enum-encoding=int` is honoured. Test controls: `deny(message)` answers 403 until
cleared; `calls` counts requests per RPC; `crashes` holds each exception in the fake itself
(answered 500 INTERNAL).
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import json
import re
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import google_crc32c
from google.cloud import secretmanager_v1 as sm
from google.protobuf import json_format

from fakes.serving import JsonHandler, ThreadedFake

__all__ = ["FakeSecretManager", "project_number"]

_P = r"projects/(?P<project>[^/]+)"
_S = rf"{_P}/secrets/(?P<secret>[^/:]+)"
_V = rf"{_S}/versions/(?P<version>[^/:]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(rf"^/v1/{_P}/secrets$"), "secrets.list"),
    ("POST", re.compile(rf"^/v1/{_P}/secrets$"), "secrets.create"),
    ("GET", re.compile(rf"^/v1/{_S}$"), "secrets.get"),
    ("POST", re.compile(rf"^/v1/{_S}:addVersion$"), "secrets.addVersion"),
    ("GET", re.compile(rf"^/v1/{_S}/versions$"), "versions.list"),
    ("GET", re.compile(rf"^/v1/{_V}$"), "versions.get"),
    ("GET", re.compile(rf"^/v1/{_V}:access$"), "versions.access"),
    ("POST", re.compile(rf"^/v1/{_V}:(?P<action>disable|enable|destroy)$"), "versions.state"),
]
_SECRET_ID = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
_STATES = {
    "disable": sm.SecretVersion.State.DISABLED,
    "enable": sm.SecretVersion.State.ENABLED,
    "destroy": sm.SecretVersion.State.DESTROYED,
}


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def project_number(project: str) -> str:
    """The fake's stable project number for a project id (a number stays itself)."""
    if project.isdigit():
        return project
    return str(int(hashlib.sha256(project.encode()).hexdigest()[:10], 16) % 10**12).zfill(12)


@dataclass
class _Secret:
    secret: sm.Secret
    versions: list[sm.SecretVersion] = field(default_factory=list)
    payloads: dict[int, bytes] = field(default_factory=dict)


class FakeSecretManager(ThreadedFake):
    """The fake API server. Use as a context manager, or call start()/stop()."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.secrets: dict[str, _Secret] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.crashes: list[str] = []
        self._denied: str | None = None
        self._lock = threading.Lock()
        super().__init__(_handler(self), host=host, port=port)

    def deny(self, message: str | None) -> None:
        """Answer 403 PERMISSION_DENIED with `message` until deny(None)."""
        with self._lock:
            self._denied = message

    # ---- request handling --------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        ints = "enum-encoding=int" in query.get("$alt", "")
        rpc, match = _route(method, url.path)
        if rpc is None or match is None:
            return _error(ApiError(404, "NOT_FOUND", f"Method {method} {url.path} not found."))
        with self._lock:
            self.calls[rpc] += 1
            if self._denied is not None:
                return _error(ApiError(403, "PERMISSION_DENIED", self._denied))
            try:
                msg = self._dispatch(rpc, match.groupdict(), query, body)
            except ApiError as err:
                return _error(err)
            except Exception as exc:  # a bug in the fake: answer like the real frontend would
                self.crashes.append(repr(exc))
                return _error(ApiError(500, "INTERNAL", f"Internal error in the fake: {exc!r}"))
        out = json_format.MessageToDict(type(msg).pb(msg), use_integers_for_enums=ints)
        return 200, out

    def _dispatch(self, rpc: str, p: dict[str, str], query: dict[str, str], body: bytes) -> Any:
        if rpc == "secrets.create":
            return self._create(p["project"], query.get("secretId", ""), body)
        if rpc == "secrets.list":
            number = project_number(p["project"])
            found = [s.secret for n, s in sorted(self.secrets.items()) if n.split("/")[1] == number]
            return sm.ListSecretsResponse(secrets=found, total_size=len(found))
        entry = self._secret(p["project"], p["secret"])
        if rpc == "secrets.get":
            return entry.secret
        if rpc == "secrets.addVersion":
            return self._add_version(entry, body)
        if rpc == "versions.list":
            versions = list(reversed(entry.versions))  # newest first, as the API lists them
            return sm.ListSecretVersionsResponse(versions=versions, total_size=len(versions))
        version = self._version(entry, p["version"])
        if rpc == "versions.get":
            return version
        if rpc == "versions.access":
            if version.state != sm.SecretVersion.State.ENABLED:
                state = sm.SecretVersion.State(version.state).name
                raise ApiError(400, "FAILED_PRECONDITION", f"{version.name} is in {state} state.")
            data = entry.payloads[int(version.name.rpartition("/")[2])]
            checksum = google_crc32c.value(data)
            payload = sm.SecretPayload(data=data, data_crc32c=checksum)
            return sm.AccessSecretVersionResponse(name=version.name, payload=payload)
        if rpc == "versions.state":
            return self._set_state(entry, version, p["action"])
        raise ApiError(501, "UNIMPLEMENTED", f"{rpc} is not implemented by the fake.")

    def _create(self, project: str, secret_id: str, body: bytes) -> sm.Secret:
        if not _SECRET_ID.fullmatch(secret_id):
            raise ApiError(
                400,
                "INVALID_ARGUMENT",
                "Secret ID must be 1-255 characters of letters, numbers, hyphens and underscores.",
            )
        secret: sm.Secret = _parse(sm.Secret, body)
        if not sm.Secret.pb(secret).HasField("replication"):
            raise ApiError(400, "INVALID_ARGUMENT", "Secret.replication must be specified.")
        name = f"projects/{project_number(project)}/secrets/{secret_id}"
        if name in self.secrets:
            raise ApiError(409, "ALREADY_EXISTS", f"Secret [{name}] already exists.")
        secret.name = name
        secret.create_time = dt.datetime.now(dt.UTC)
        secret.etag = '"1"'
        self.secrets[name] = _Secret(secret)
        return secret

    def _secret(self, project: str, secret_id: str) -> _Secret:
        name = f"projects/{project_number(project)}/secrets/{secret_id}"
        entry = self.secrets.get(name)
        if entry is None:
            raise ApiError(404, "NOT_FOUND", f"Secret [{name}] not found or has no versions.")
        return entry

    def _version(self, entry: _Secret, version_id: str) -> sm.SecretVersion:
        if version_id == "latest":
            if not entry.versions:
                raise ApiError(
                    404, "NOT_FOUND", f"Secret [{entry.secret.name}] not found or has no versions."
                )
            return entry.versions[-1]
        if not version_id.isdigit() or int(version_id) < 1:
            raise ApiError(
                400, "INVALID_ARGUMENT", f"Version ID [{version_id}] is not a valid version."
            )
        index = int(version_id) - 1
        if index >= len(entry.versions):
            name = f"{entry.secret.name}/versions/{version_id}"
            raise ApiError(404, "NOT_FOUND", f"Secret Version [{name}] not found.")
        return entry.versions[index]

    def _add_version(self, entry: _Secret, body: bytes) -> sm.SecretVersion:
        request: sm.AddSecretVersionRequest = _parse(sm.AddSecretVersionRequest, body)
        data = request.payload.data
        given = sm.SecretPayload.pb(request.payload).HasField("data_crc32c")
        if given and request.payload.data_crc32c != google_crc32c.value(data):
            raise ApiError(400, "INVALID_ARGUMENT", "Checksum mismatch: data corrupted in transit.")
        number = len(entry.versions) + 1
        version = sm.SecretVersion(
            name=f"{entry.secret.name}/versions/{number}",
            create_time=dt.datetime.now(dt.UTC),
            state=sm.SecretVersion.State.ENABLED,
            etag=f'"{number}"',
            client_specified_payload_checksum=given,
        )
        entry.versions.append(version)
        entry.payloads[number] = data
        return version

    def _set_state(self, entry: _Secret, version: sm.SecretVersion, action: str) -> Any:
        if version.state == sm.SecretVersion.State.DESTROYED:
            raise ApiError(400, "FAILED_PRECONDITION", f"{version.name} is in DESTROYED state.")
        # proto-plus has no type information (proto.Enum is Any to mypy), so the enum's
        # members read as their int values; at run time _STATES holds State members
        version.state = _STATES[action]  # type: ignore[assignment]
        if action == "destroy":
            entry.payloads.pop(int(version.name.rpartition("/")[2]), None)
            version.destroy_time = dt.datetime.now(dt.UTC)
        return version

    # ---- test helpers (what a test would do with the client, in one call) --------------------

    def put(self, project: str, secret_id: str, data: bytes) -> str:
        """Create the secret if needed and add a version holding `data`; its version id."""
        with self._lock:
            name = f"projects/{project_number(project)}/secrets/{secret_id}"
            if name not in self.secrets:
                body = sm.Secret(replication=sm.Replication(automatic=sm.Replication.Automatic()))
                self._create(project, secret_id, sm.Secret.to_json(body).encode())
            version = self._add_version(self.secrets[name], _add_body(data))
        return version.name.rpartition("/")[2]


def _route(method: str, path: str) -> tuple[str | None, re.Match[str] | None]:
    for verb, pattern, rpc in _ROUTES:
        match = pattern.match(path)
        if match and verb == method:
            return rpc, match
    return None, None


def _add_body(data: bytes) -> bytes:
    return json.dumps({"payload": {"data": base64.b64encode(data).decode()}}).encode()


def _parse(cls: Any, body: bytes) -> Any:
    try:
        return cls.from_json(body.decode() or "{}", ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError) as exc:
        raise ApiError(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from exc


def _error(err: ApiError) -> tuple[int, dict[str, Any]]:
    return err.code, {"error": {"code": err.code, "message": err.message, "status": err.status}}


def _handler(fake: FakeSecretManager) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def answer(self, raw: bytes) -> None:
            code, payload = fake.handle(self.command, self.path, raw)
            self.send_json(code, payload, {})

        def internal_error(self, exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
            fake.crashes.append("".join(traceback.format_exception(exc)))
            code, payload = _error(ApiError(500, "INTERNAL", "Internal error encountered."))
            return code, payload, {}

    return Handler
