"""HTTP front of the fake Cloud Run Admin API v2: the REST/JSON surface `run_v2` (REST transport)
speaks, on 127.0.0.1, in a thread of the test process or as a script (`python -m fakes.cloudrun`).

Routes (as in the client's `rest_base.py` http options):
  GET/POST          /v2/projects/*/locations/*/services            list / create (?serviceId=)
  GET/PATCH/DELETE  /v2/projects/*/locations/*/services/*          get / update / delete (?etag=)
  GET               /v2/projects/*/locations/*/services/*/revisions[/*]
  GET               /v2/projects/*/locations/*/operations/*

Bodies are parsed and written with the client library's own message types and protobuf's
json_format, honouring `$alt=json;enum-encoding=int` as the real frontend does. Errors use the
Google JSON error format, so google.api_core raises the matching exception classes.

Test controls: `inject(...)` makes the next N matching requests fail (429/503/...),
`error_rate(rate, seed=...)` fails a random (seeded) share of requests from now on,
`slow_operations(seconds)` sets how long an operation runs, `fail_operations_half_way(n)` makes
the next n revision rollouts fail after their revision was created, `fail_updates(n)` makes the
next n update operations fail as a whole (the spec written, nothing of it served), `deny(message)` answers 403
PERMISSION_DENIED until cleared, `calls` counts every request per RPC and `writes` counts
accepted writes per RPC.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, json_format
from google.rpc import status_pb2

from fakes.serving import ThreadedFake

from .state import ApiError, CloudRunState, FakeOperation

__all__ = ["WRITE_RPCS", "FakeCloudRun", "Fault"]

_LOC = r"projects/[^/]+/locations/[^/]+"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(rf"^/v2/(?P<parent>{_LOC})/services$"), "services.list"),
    ("POST", re.compile(rf"^/v2/(?P<parent>{_LOC})/services$"), "services.create"),
    ("GET", re.compile(rf"^/v2/(?P<name>{_LOC}/services/[^/:]+)$"), "services.get"),
    ("PATCH", re.compile(rf"^/v2/(?P<name>{_LOC}/services/[^/:]+)$"), "services.patch"),
    ("DELETE", re.compile(rf"^/v2/(?P<name>{_LOC}/services/[^/:]+)$"), "services.delete"),
    (
        "GET",
        re.compile(rf"^/v2/(?P<parent>{_LOC}/services/[^/:]+)/revisions$"),
        "revisions.list",
    ),
    (
        "GET",
        re.compile(rf"^/v2/(?P<name>{_LOC}/services/[^/:]+/revisions/[^/:]+)$"),
        "revisions.get",
    ),
    ("GET", re.compile(rf"^/v2/(?P<name>{_LOC}/operations/[^/:]+)$"), "operations.get"),
]

WRITE_RPCS = ("services.create", "services.patch", "services.delete")

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass
class Fault:
    """Answer the next `count` requests matching `rpc` (None: any) with this error."""

    code: int
    count: int
    rpc: str | None = None
    message: str = ""
    status: str = ""
    after: bool = False
    """Process the request first, then answer the error (the response was "lost")."""
    when: Callable[[run_v2.Service], bool] | None = None
    """Only a create or update whose service (the request's body) this accepts."""

    def error(self) -> ApiError:
        status = self.status or _STATUS_NAMES.get(self.code, "UNKNOWN")
        default = {
            429: "Quota exceeded for quota metric 'Write requests' and limit 'Write requests "
            "per minute per region' of service 'run.googleapis.com'.",
            503: "The service is currently unavailable.",
        }.get(self.code, f"Injected {status}.")
        return ApiError(self.code, status, self.message or default)


class FakeCloudRun(ThreadedFake):
    """The fake API server. Use as a context manager, or call start()/stop()."""

    def __init__(
        self,
        *,
        operation_delay: float = 0.1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = CloudRunState(operation_delay=operation_delay)
        self.calls: collections.Counter[str] = collections.Counter()
        self.writes: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[float, str, int]] = []
        """(monotonic time, rpc, HTTP status) for every request, in order."""
        self.crashes: list[str] = []
        """Tracebacks of unexpected exceptions in the fake (a test should assert it is empty)."""
        self._faults: list[Fault] = []
        self._random: tuple[float, tuple[int, ...], random.Random] | None = None
        self.random_errors: collections.Counter[int] = collections.Counter()
        """Answers `error_rate` replaced with an error, by HTTP code."""
        self._denied: tuple[str, str | None] | None = None
        self._lock = threading.Lock()
        super().__init__(
            _make_handler(self), host=host, port=port, name="fake-cloudrun", poll_interval=0.05
        )

    # ---- test controls -----------------------------------------------------------------------

    def inject(
        self,
        code: int,
        *,
        count: int = 1,
        rpc: str | None = None,
        message: str = "",
        status: str = "",
        after: bool = False,
        when: Callable[[run_v2.Service], bool] | None = None,
    ) -> None:
        """The next `count` requests to `rpc` (e.g. "services.create"; None: any) answer `code`.

        With `after=True` the request is carried out and only its response replaced by the
        error, as when a response is lost on the way back. With `when`, only creates and
        updates whose service it accepts match (e.g. Cloud Run refusing one traffic split).
        """
        fault = Fault(
            code=code, count=count, rpc=rpc, message=message, status=status, after=after, when=when
        )
        with self._lock:
            self._faults.append(fault)

    def error_rate(self, rate: float, *, codes: Sequence[int] = (429, 503), seed: int = 0) -> None:
        """From now on each request fails with probability `rate` (0 stops it), answering one
        of `codes` (picked at random) before it is carried out; `seed` repeats the sequence."""
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be between 0 and 1, got {rate}")
        unknown = [code for code in codes if code not in _STATUS_NAMES]
        if not codes or unknown:
            raise ValueError(f"codes must be some of {sorted(_STATUS_NAMES)}, got {list(codes)}")
        with self._lock:
            self._random = (rate, tuple(codes), random.Random(seed)) if rate else None

    def slow_operations(self, seconds: float) -> None:
        """Operations started from now on complete `seconds` after the write."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        with self.state.lock:
            self.state.operation_delay = seconds

    def fail_operations_half_way(self, count: int = 1, *, message: str = "") -> None:
        """The next `count` operations that deploy a revision fail half-way: the revision is
        created, never becomes ready, and the operation ends with 13 INTERNAL."""
        self.state.fail_next_operations_half_way(
            message or "Internal error encountered while deploying the revision; retry.",
            count=count,
        )

    def fail_updates(self, count: int = 1, *, message: str = "") -> None:
        """The next `count` update operations fail as a whole (accepted, then 13 INTERNAL;
        the service serves what it served before)."""
        self.state.fail_next_updates(
            message or "Internal error encountered while updating the service; retry.",
            count=count,
        )

    def deny(self, message: str | None, *, rpc: str | None = None) -> None:
        """Answer 403 PERMISSION_DENIED with `message` (to `rpc`, or all) until deny(None)."""
        with self._lock:
            self._denied = None if message is None else (message, rpc)

    @contextmanager
    def operations_held(self) -> Iterator[None]:
        """Operations started inside (or pending) do not complete until the block ends."""
        self.state.hold_operations(True)
        try:
            yield
        finally:
            self.state.hold_operations(False)

    @property
    def total_writes(self) -> int:
        return sum(self.writes[rpc] for rpc in WRITE_RPCS)

    def revisions_of(self, project: str, location: str, service: str) -> list[str]:
        """Short names of the service's revisions, oldest first."""
        parent = f"projects/{project}/locations/{location}/services/{service}"
        with self.state.lock:
            revs = [r for n, r in self.state.revisions.items() if n.startswith(f"{parent}/")]
        revs.sort(key=lambda r: (r.create_time.timestamp(), r.name))
        return [r.name.rpartition("/")[2] for r in revs]

    # ---- request handling --------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        ints = "enum-encoding=int" in query.get("$alt", "")
        rpc, match = self._route(method, url.path)
        if rpc is None or match is None:
            err = ApiError(404, "NOT_FOUND", f"Method {method} {url.path} is not found.")
            return self._finish("unknown", err.code, _error_body(err))
        with self._lock:
            self.calls[rpc] += 1
            fault = self._take_fault(rpc, body) or self._random_fault()
            denied = self._denied
        if fault is not None and not fault.after:
            err = fault.error()
            return self._finish(rpc, err.code, _error_body(err))
        if denied is not None and (denied[1] is None or denied[1] == rpc):
            err = ApiError(403, "PERMISSION_DENIED", denied[0])
            return self._finish(rpc, 403, _error_body(err))
        try:
            self.state.advance()
            payload = self._dispatch(rpc, match.groupdict(), query, body, ints=ints)
        except ApiError as err:
            return self._finish(rpc, err.code, _error_body(err))
        except Exception as exc:  # a bug in the fake: answer like the real frontend would
            self.crashes.append(traceback.format_exc())
            internal = ApiError(500, "INTERNAL", f"Internal error in the fake: {exc!r}")
            return self._finish(rpc, 500, _error_body(internal))
        if rpc in WRITE_RPCS and not _truthy(query.get("validateOnly")):
            with self._lock:
                self.writes[rpc] += 1
        if fault is not None:  # after=True: the request was carried out, its answer is the fault
            late = fault.error()
            return self._finish(rpc, late.code, _error_body(late))
        return self._finish(rpc, 200, payload)

    def _finish(self, rpc: str, code: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.log.append((time.monotonic(), rpc, code))
        return code, payload

    def _take_fault(self, rpc: str, body: bytes) -> Fault | None:
        for fault in self._faults:
            if fault.count > 0 and (fault.rpc is None or fault.rpc == rpc):
                if fault.when is not None:
                    if rpc not in ("services.create", "services.patch"):
                        continue
                    try:
                        service = _parse_service(body)
                    except ApiError:
                        continue
                    if not fault.when(service):
                        continue
                fault.count -= 1
                return fault
        return None

    def _random_fault(self) -> Fault | None:
        if self._random is None:
            return None
        rate, codes, rng = self._random
        if rng.random() >= rate:
            return None
        code = rng.choice(codes)
        self.random_errors[code] += 1
        return Fault(code=code, count=0)

    @staticmethod
    def _route(method: str, path: str) -> tuple[str | None, re.Match[str] | None]:
        for verb, pattern, rpc in _ROUTES:
            match = pattern.match(path)
            if match and verb == method:
                return rpc, match
        return None, None

    def _dispatch(
        self,
        rpc: str,
        params: dict[str, str],
        query: dict[str, str],
        body: bytes,
        *,
        ints: bool,
    ) -> dict[str, Any]:
        state = self.state
        validate_only = _truthy(query.get("validateOnly"))
        if rpc == "services.list":
            services = state.list_services(params["parent"])
            size = int(query.get("pageSize") or 100)
            start = int(query.get("pageToken") or 0)
            page = services[start : start + size]
            resp = run_v2.ListServicesResponse(services=page)
            if start + size < len(services):
                resp.next_page_token = str(start + size)
            return _to_dict(resp, ints=ints)
        if rpc == "services.get":
            return _to_dict(state.get_service(params["name"]), ints=ints)
        if rpc == "services.create":
            result = state.create_service(
                parent=params["parent"],
                service_id=query.get("serviceId", ""),
                body=_parse_service(body),
                validate_only=validate_only,
            )
            return _result(result, ints=ints)
        if rpc == "services.patch":
            svc = _parse_service(body)
            if svc.name and svc.name != params["name"]:
                raise ApiError(400, "INVALID_ARGUMENT", "service.name does not match the URL.")
            svc.name = params["name"]
            mask = [p for p in query.get("updateMask", "").split(",") if p]
            result = state.update_service(
                body=svc,
                update_mask=mask,
                allow_missing=_truthy(query.get("allowMissing")),
                validate_only=validate_only,
            )
            return _result(result, ints=ints)
        if rpc == "services.delete":
            op = state.delete_service(
                name=params["name"], etag=query.get("etag", ""), validate_only=validate_only
            )
            return _operation_dict(op, ints=ints)
        if rpc == "revisions.list":
            revs = state.list_revisions(params["parent"])
            return _to_dict(run_v2.ListRevisionsResponse(revisions=revs), ints=ints)
        if rpc == "revisions.get":
            return _to_dict(state.get_revision(params["name"]), ints=ints)
        if rpc == "operations.get":
            return _operation_dict(state.get_operation(params["name"]), ints=ints)
        raise ApiError(501, "UNIMPLEMENTED", f"{rpc} is not implemented by the fake.")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _parse_service(body: bytes) -> run_v2.Service:
    try:
        svc: run_v2.Service = run_v2.Service.from_json(
            body.decode() or "{}", ignore_unknown_fields=False
        )
    except (json_format.ParseError, ValueError) as exc:
        raise ApiError(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from exc
    return svc


def _to_dict(msg: Any, *, ints: bool) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(type(msg).pb(msg), use_integers_for_enums=ints)
    return out


def _result(result: FakeOperation | run_v2.Service, *, ints: bool) -> dict[str, Any]:
    if isinstance(result, FakeOperation):
        return _operation_dict(result, ints=ints)
    # validate_only: an already-done operation carrying the would-be service
    done = FakeOperation(
        name=f"{result.name.rpartition('/services/')[0]}/operations/validate-only",
        kind="validate",
        service=result.name,
        generation=result.generation,
        revision=None,
        due=0.0,
        done=True,
        response=result,
        metadata=result,
    )
    return _operation_dict(done, ints=ints)


def _operation_dict(op: FakeOperation, *, ints: bool) -> dict[str, Any]:
    pb = operations_pb2.Operation(name=op.name, done=op.done)
    meta = any_pb2.Any()
    meta.Pack(run_v2.Service.pb(op.metadata))
    pb.metadata.CopyFrom(meta)
    if op.done:
        if op.error is not None:
            pb.error.CopyFrom(status_pb2.Status(code=op.error[0], message=op.error[1]))
        elif op.response is not None:
            resp = any_pb2.Any()
            resp.Pack(run_v2.Service.pb(op.response))
            pb.response.CopyFrom(resp)
    out: dict[str, Any] = json_format.MessageToDict(pb, use_integers_for_enums=ints)
    return out


def _error_body(err: ApiError) -> dict[str, Any]:
    return {"error": {"code": err.code, "message": err.message, "status": err.status}}


def _make_handler(fake: FakeCloudRun) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = 1 << 16  # headers and body leave in one segment (no delayed-ACK stalls)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            code, payload = fake.handle(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the fake's own `log` records every request."""

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Run the fake until interrupted: `PYTHONPATH=tests python -m fakes.cloudrun --port 8085`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--operation-delay", type=float, default=1.0)
    args = parser.parse_args(argv)
    fake = FakeCloudRun(operation_delay=args.operation_delay, host=args.host, port=args.port)
    print(fake.endpoint, flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
