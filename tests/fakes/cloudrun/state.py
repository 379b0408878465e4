"""The in-memory Cloud Run Admin API v2: services, revisions and long-running operations.

No HTTP here: `server.py` maps requests onto these methods and `ApiError`s onto Google's JSON
error format. Messages are the client library's own types (`run_v2.Service`, `run_v2.Revision`),
so what is stored is exactly what the wire format can carry.

Behaviour follows the public v2 reference: a write returns an Operation at once and the service
shows `reconciling: true` until the operation completes (after `operation_delay` seconds, checked
lazily on every call, or never while operations are held). `observedGeneration`,
`latestReadyRevision` and `trafficStatuses` keep the last serving state until a rollout succeeds.
A new Revision is created only when the template changes; a template naming an existing revision
with a different configuration is refused (409 ALREADY_EXISTS), as the real API does.

An operation can fail half-way (`fail_next_operations_half_way`): the revision exists but never
became ready, the operation completes with 13 INTERNAL and the service's terminal condition is
failed with reason INTERNAL. Writing the service again with the same template makes no new
revision: the operation deploys that revision again (as Cloud Run retries a revision whose
rollout an internal error interrupted). An update operation can also fail as a whole
(`fail_next_updates`): the service's spec keeps what was written, its terminal condition is
failed and it serves what it served before.
"""

from __future__ import annotations

import collections
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from google.api import launch_stage_pb2
from google.cloud import run_v2
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

__all__ = ["ApiError", "CloudRunState", "FakeOperation"]


RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
"""Set by Cloud Run in every container of a service; a revision that sets one is refused."""

SERVICE_ID = re.compile(r"^[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?$")
REVISION_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
TAG = re.compile(r"^[a-z](?:[-a-z0-9]{0,44}[a-z0-9])?$")
MAX_TAG_AND_SERVICE = 46
"""A tag's URL is `https://TAG---SERVICE-HASH-REGION.a.run.app`, one DNS label (63): Cloud Run
refuses a traffic tag whose length plus the service id's exceeds 46."""
PARENT = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)$")

# Fields a caller may set on a Service; everything else is output only and ignored on input.
USER_FIELDS = (
    "description",
    "labels",
    "annotations",
    "client",
    "client_version",
    "ingress",
    "launch_stage",
    "binary_authorization",
    "template",
    "traffic",
    "scaling",
    "invoker_iam_disabled",
    "default_uri_disabled",
    "custom_audiences",
)

State = run_v2.Condition.State


class ApiError(Exception):
    """An error the API answers with: HTTP code, canonical status and message."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(f"{code} {status}: {message}")
        self.code = code
        self.status = status
        self.message = message


@dataclass
class FakeOperation:
    """One long-running operation and what completing it does."""

    name: str
    kind: str  # create | update | delete
    service: str
    generation: int
    revision: str | None
    due: float
    done: bool = False
    error: tuple[int, str] | None = None
    """(google.rpc.Code, message) when the operation failed."""
    response: run_v2.Service | None = None
    metadata: run_v2.Service = field(default_factory=run_v2.Service)


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def _cpu(value: str) -> Decimal:
    try:
        if value.endswith("m"):
            return Decimal(value[:-1]) / 1000
        return Decimal(value)
    except InvalidOperation as exc:
        raise ApiError(
            400, "INVALID_ARGUMENT", f"Invalid value specified for cpu: '{value}'."
        ) from exc


_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}


def _memory(value: str) -> int:
    match = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|k|M|G)?", value)
    if not match:
        raise ApiError(400, "INVALID_ARGUMENT", f"Invalid value specified for memory: '{value}'.")
    return int(match.group(1)) * _MEMORY_UNITS.get(match.group(2) or "", 1)


class CloudRunState:
    """Everything the fake API knows; thread-safe (one lock), time from `clock`."""

    def __init__(
        self,
        *,
        operation_delay: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        project_number: str = "123456789012",
    ) -> None:
        self.operation_delay = operation_delay
        self.clock = clock
        self.project_number = project_number
        self.lock = threading.RLock()
        self.services: dict[str, run_v2.Service] = {}
        self.revisions: dict[str, run_v2.Revision] = {}
        self.revision_templates: dict[str, run_v2.RevisionTemplate] = {}
        self.operations: dict[str, FakeOperation] = {}
        self.held = False
        self.rollout_failures: collections.deque[str] = collections.deque()
        self.interruptions: collections.deque[str] = collections.deque()
        self.update_failures: collections.deque[str] = collections.deque()
        self._counter = 0

    # ---- test controls -------------------------------------------------------------------

    def hold_operations(self, held: bool = True) -> None:
        """While held, no operation completes (a deploy that is "still running")."""
        with self.lock:
            self.held = held

    def complete_operations(self) -> None:
        """Complete every pending operation now (ignores delay and hold)."""
        with self.lock:
            for op in sorted(self.operations.values(), key=lambda o: o.due):
                if not op.done:
                    self._complete(op)

    def fail_next_rollouts(self, message: str, *, count: int = 1) -> None:
        """The next `count` rollouts fail: the revision never becomes ready."""
        with self.lock:
            self.rollout_failures.extend([message] * count)

    def fail_next_operations_half_way(self, message: str, *, count: int = 1) -> None:
        """The next `count` operations that deploy a revision fail half-way: the revision is
        created but not ready, the operation ends with 13 INTERNAL `message`."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        with self.lock:
            self.interruptions.extend([message] * count)

    def fail_next_updates(self, message: str, *, count: int = 1) -> None:
        """The next `count` update operations fail as a whole (e.g. Cloud Run could not
        program the new traffic): the write was accepted (the service's spec is what was
        written, its generation moved), the operation ends with 13 INTERNAL `message`, the
        service's terminal condition is failed and what it serves (`trafficStatuses`,
        `latestReadyRevision`, `observedGeneration`) stays as it was."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        with self.lock:
            self.update_failures.extend([message] * count)

    def advance(self) -> None:
        """Complete the operations that are due (called before every request)."""
        with self.lock:
            if self.held:
                return
            now = self.clock()
            for op in sorted(self.operations.values(), key=lambda o: o.due):
                if not op.done and op.due <= now:
                    self._complete(op)

    # ---- services --------------------------------------------------------------------------

    def get_service(self, name: str) -> run_v2.Service:
        with self.lock:
            return run_v2.Service(self._require(name))

    def list_services(self, parent: str) -> list[run_v2.Service]:
        with self.lock:
            self._parse_parent(parent)
            prefix = f"{parent}/services/"
            return [
                run_v2.Service(s) for n, s in sorted(self.services.items()) if n.startswith(prefix)
            ]

    def create_service(
        self, *, parent: str, service_id: str, body: run_v2.Service, validate_only: bool
    ) -> FakeOperation | run_v2.Service:
        with self.lock:
            self._parse_parent(parent)
            if not service_id:
                raise ApiError(400, "INVALID_ARGUMENT", "service_id is required.")
            if not SERVICE_ID.fullmatch(service_id):
                raise ApiError(
                    400,
                    "INVALID_ARGUMENT",
                    f"Invalid service_id '{service_id}': must begin with a letter, contain only "
                    "lowercase letters, digits and hyphens, not end with a hyphen, and be fewer "
                    "than 50 characters.",
                )
            name = f"{parent}/services/{service_id}"
            if name in self.services:
                raise ApiError(409, "ALREADY_EXISTS", f"Resource '{service_id}' already exists.")
            svc = run_v2.Service()
            for key in USER_FIELDS:
                setattr(svc, key, getattr(body, key))
            svc.name = name
            self._apply_defaults(svc, service_id)
            self._validate(svc, service_id)
            self._check_revision_name(svc, name)
            self._validate_traffic(svc, name)
            if validate_only:
                return svc
            svc.uid = str(uuid.uuid4())
            svc.generation = 1
            svc.create_time = _now()
            svc.update_time = svc.create_time
            svc.creator = "fake-deployer@example.com"
            svc.last_modifier = svc.creator
            self.services[name] = svc
            revision = self._maybe_new_revision(svc, previous=None)
            return self._start(svc, kind="create", revision=revision)

    def update_service(
        self,
        *,
        body: run_v2.Service,
        update_mask: list[str],
        allow_missing: bool,
        validate_only: bool,
    ) -> FakeOperation | run_v2.Service:
        with self.lock:
            name = body.name
            parent, _, service_id = name.rpartition("/services/")
            if name not in self.services:
                if allow_missing:
                    return self.create_service(
                        parent=parent,
                        service_id=service_id,
                        body=body,
                        validate_only=validate_only,
                    )
                self._require(name)
            current = self.services[name]
            self._check_etag(current, body.etag)
            if current.delete_time:
                raise ApiError(409, "ABORTED", f"Resource '{service_id}' is being deleted.")
            svc = run_v2.Service(current)
            if update_mask:
                self._merge_masked(body, svc, update_mask)
            else:
                for key in USER_FIELDS:
                    setattr(svc, key, getattr(body, key))
            self._apply_defaults(svc, service_id)
            self._validate(svc, service_id)
            self._check_revision_name(svc, name)
            self._validate_traffic(svc, name)
            if validate_only:
                return svc
            svc.generation = current.generation + 1
            svc.update_time = _now()
            svc.last_modifier = "fake-deployer@example.com"
            self.services[name] = svc
            revision = self._maybe_new_revision(svc, previous=current)
            if revision is None and self._interrupted(svc.latest_created_revision):
                revision = self._redeploy(svc.latest_created_revision)
            return self._start(svc, kind="update", revision=revision)

    def delete_service(self, *, name: str, etag: str, validate_only: bool) -> FakeOperation:
        with self.lock:
            current = self._require(name)
            self._check_etag(current, etag)
            pending = [
                op
                for op in self.operations.values()
                if op.kind == "delete" and op.service == name and not op.done
            ]
            if pending:
                return pending[0]
            svc = run_v2.Service(current)
            if validate_only:
                return self._operation_view(svc)
            svc.delete_time = _now()
            svc.reconciling = True
            svc.etag = self._etag()
            self.services[name] = svc
            return self._start(svc, kind="delete", revision=None, keep_status=True)

    # ---- revisions ---------------------------------------------------------------------------

    def list_revisions(self, parent: str) -> list[run_v2.Revision]:
        with self.lock:
            self._require(parent)
            return [
                run_v2.Revision(r)
                for n, r in sorted(self.revisions.items())
                if n.startswith(f"{parent}/revisions/")
            ]

    def get_revision(self, name: str) -> run_v2.Revision:
        with self.lock:
            rev = self.revisions.get(name)
            if rev is None:
                parts = name.split("/")
                raise ApiError(
                    404,
                    "NOT_FOUND",
                    f"Resource '{parts[-1]}' of kind 'REVISION' in region '{parts[3]}' in "
                    f"project '{parts[1]}' does not exist.",
                )
            return run_v2.Revision(rev)

    # ---- operations --------------------------------------------------------------------------

    def get_operation(self, name: str) -> FakeOperation:
        with self.lock:
            op = self.operations.get(name)
            if op is None:
                raise ApiError(404, "NOT_FOUND", f"Operation '{name}' not found.")
            return op

    # ---- internals ---------------------------------------------------------------------------

    def _parse_parent(self, parent: str) -> tuple[str, str]:
        match = PARENT.fullmatch(parent)
        if not match:
            raise ApiError(400, "INVALID_ARGUMENT", f"Invalid parent '{parent}'.")
        return match.group("project"), match.group("location")

    def _require(self, name: str) -> run_v2.Service:
        svc = self.services.get(name)
        if svc is None:
            parts = name.split("/")
            service_id = parts[-1] if len(parts) == 6 else name
            region = parts[3] if len(parts) > 3 else "?"
            project = parts[1] if len(parts) > 1 else "?"
            raise ApiError(
                404,
                "NOT_FOUND",
                f"Resource '{service_id}' of kind 'SERVICE' in region '{region}' in project "
                f"'{project}' does not exist.",
            )
        return svc

    def _check_etag(self, current: run_v2.Service, etag: str) -> None:
        if etag and etag != current.etag:
            service_id = current.name.rpartition("/")[2]
            raise ApiError(
                409,
                "ABORTED",
                f"Conflict for resource '{service_id}': etag {etag} was specified but the "
                f"current etag is {current.etag}.",
            )

    def _etag(self) -> str:
        self._counter += 1
        raw = hashlib.sha256(f"{uuid.uuid4()}{self._counter}".encode()).hexdigest()[:24]
        return f'"{raw}"'

    @staticmethod
    def _merge_masked(body: run_v2.Service, svc: run_v2.Service, mask: list[str]) -> None:
        fm = field_mask_pb2.FieldMask()
        try:
            fm.FromJsonString(",".join(mask))
        except ValueError as exc:
            raise ApiError(400, "INVALID_ARGUMENT", f"Invalid update_mask: {exc}") from exc
        for path in fm.paths:
            if path.split(".")[0] not in USER_FIELDS:
                raise ApiError(
                    400, "INVALID_ARGUMENT", f"Invalid update_mask path '{path}': not updatable."
                )
        dst = run_v2.Service.pb(svc)
        fm.MergeMessage(
            run_v2.Service.pb(body), dst, replace_message_field=True, replace_repeated_field=True
        )

    def _apply_defaults(self, svc: run_v2.Service, service_id: str) -> None:
        if not svc.ingress:
            # proto-plus has no type information (proto.Enum is Any to mypy), so the enum's
            # members read as their int values; at run time this is an IngressTraffic member
            svc.ingress = run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL  # type: ignore[assignment]
        if not svc.launch_stage:
            svc.launch_stage = launch_stage_pb2.LaunchStage.GA
        if not svc.traffic:
            svc.traffic = [
                run_v2.TrafficTarget(
                    type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST,
                    percent=100,
                )
            ]
        tpl = svc.template
        if not tpl.timeout:
            tpl.timeout = duration_pb2.Duration(seconds=300)
        if not tpl.service_account:
            tpl.service_account = f"{self.project_number}-compute@developer.gserviceaccount.com"
        if not tpl.max_instance_request_concurrency:
            tpl.max_instance_request_concurrency = 80
        if not tpl.scaling.max_instance_count:
            tpl.scaling.max_instance_count = 100
        for container in tpl.containers:
            if not container.ports:
                container.ports = [run_v2.ContainerPort(name="http1", container_port=8080)]
            for port in container.ports:
                if not port.name:
                    port.name = "http1"
            limits = container.resources.limits
            limits.setdefault("cpu", "1000m")
            limits.setdefault("memory", "512Mi")
            if not container.startup_probe.tcp_socket.port and not container.startup_probe.http_get:
                port_number = container.ports[0].container_port or 8080
                container.startup_probe = run_v2.Probe(
                    tcp_socket=run_v2.TCPSocketAction(port=port_number),
                    timeout_seconds=240,
                    period_seconds=240,
                    failure_threshold=1,
                )

    def _validate(self, svc: run_v2.Service, service_id: str) -> None:
        tpl = svc.template
        bad = "INVALID_ARGUMENT"
        if not tpl.containers:
            raise ApiError(400, bad, "template.containers: at least one container is required.")
        for i, container in enumerate(tpl.containers):
            if not container.image:
                raise ApiError(400, bad, f"template.containers[{i}].image: must not be empty.")
            reserved = [e.name for e in container.env if e.name in RESERVED_ENV]
            if reserved:
                raise ApiError(
                    400,
                    bad,
                    f"template.containers[{i}].env: The following reserved env names were "
                    f"provided: {', '.join(reserved)}. These values are automatically set by "
                    "the system.",
                )
            cpu = _cpu(container.resources.limits["cpu"])
            memory = _memory(container.resources.limits["memory"])
            gen1 = (
                tpl.execution_environment == run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1
            )
            if cpu < Decimal("0.08") or cpu > 8 or (cpu > 1 and cpu not in (2, 4, 6, 8)):
                raise ApiError(
                    400,
                    bad,
                    "Invalid value specified for cpu. CPU must be between 0.08 and 1, or one "
                    "of 1, 2, 4, 6, 8.",
                )
            if cpu < 1:
                if tpl.max_instance_request_concurrency > 1:
                    raise ApiError(
                        400,
                        bad,
                        "Invalid value specified for container concurrency. Total cpu < 1 is "
                        "not supported with concurrency > 1.",
                    )
                if not gen1:
                    raise ApiError(
                        400,
                        bad,
                        "Invalid value specified for cpu. Total cpu < 1 is not supported with "
                        "the second generation execution environment.",
                    )
                if memory > 2**30 or (memory > 512 * 2**20 and cpu < Decimal("0.5")):
                    raise ApiError(
                        400,
                        bad,
                        "Invalid value specified for memory. A minimum of 0.5 cpu is needed for "
                        "more than 512Mi and of 1 cpu for more than 1Gi.",
                    )
            needed = (
                8
                if memory > 24 * 2**30
                else 6
                if memory > 16 * 2**30
                else 4
                if (memory > 8 * 2**30)
                else 2
                if memory > 4 * 2**30
                else 0
            )
            if cpu < needed or memory > 32 * 2**30:
                raise ApiError(
                    400,
                    bad,
                    f"Invalid value specified for memory. For {container.resources.limits['memory']}"
                    f" memory, cpu must be at least {needed}; memory must be at most 32Gi.",
                )
            minimum = 128 * 2**20 if gen1 else 512 * 2**20
            if memory < minimum:
                raise ApiError(
                    400,
                    bad,
                    f"Invalid value specified for memory. The minimum is {minimum // 2**20}Mi "
                    "for this execution environment.",
                )
        if tpl.max_instance_request_concurrency > 1000:
            raise ApiError(400, bad, "max_instance_request_concurrency must be at most 1000.")
        scaling = tpl.scaling
        if scaling.min_instance_count > scaling.max_instance_count:
            raise ApiError(
                400,
                bad,
                "template.scaling.min_instance_count must be less than or equal to "
                "template.scaling.max_instance_count.",
            )
        if tpl.revision and (
            not tpl.revision.startswith(f"{service_id}-")
            or not REVISION_NAME.fullmatch(tpl.revision)
        ):
            raise ApiError(
                400,
                bad,
                "Revision name must be prefixed by the name of the enclosing Service with a "
                "trailing -, and be a lowercase RFC 1035 label of at most 63 characters.",
            )

    def _check_revision_name(self, svc: run_v2.Service, service_name: str) -> None:
        tpl = svc.template
        if not tpl.revision:
            return
        existing = self.revision_templates.get(f"{service_name}/revisions/{tpl.revision}")
        if existing is not None and existing != tpl:
            raise ApiError(
                409,
                "ALREADY_EXISTS",
                f"Revision named '{tpl.revision}' with different configuration already exists.",
            )

    def _validate_traffic(self, svc: run_v2.Service, service_name: str) -> None:
        """What the API checks of `traffic`: percents in 0..100 summing to 100, a revision
        name for REVISION targets that exists (or is the one this write creates), tags
        that are unique DNS labels and, with the service id, fit the tag URL's DNS label
        (on create and on every update of a service whose traffic has a tag)."""
        bad = "INVALID_ARGUMENT"
        service_id = service_name.rpartition("/")[2]
        latest = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
        tags: set[str] = set()
        for i, target in enumerate(svc.traffic):
            if not 0 <= target.percent <= 100:
                raise ApiError(400, bad, f"traffic[{i}].percent must be between 0 and 100.")
            if target.type_ != latest:
                if not target.revision:
                    raise ApiError(400, bad, f"traffic[{i}].revision: must not be empty.")
                known = f"{service_name}/revisions/{target.revision}" in self.revisions
                if not known and target.revision != svc.template.revision:
                    raise ApiError(
                        400,
                        bad,
                        f"Revision '{target.revision}' referenced in traffic[{i}] does not exist.",
                    )
            if target.tag:
                if not TAG.fullmatch(target.tag) or target.tag in tags:
                    raise ApiError(
                        400,
                        bad,
                        f"traffic[{i}].tag '{target.tag}' must be a unique lowercase RFC 1035 "
                        "label of at most 46 characters.",
                    )
                if len(target.tag) + len(service_id) > MAX_TAG_AND_SERVICE:
                    raise ApiError(
                        400,
                        bad,
                        f"traffic[{i}].tag: traffic tag '{target.tag}' and service name "
                        f"'{service_id}' together are too long. Combined traffic tag and service "
                        f"name cannot exceed {MAX_TAG_AND_SERVICE} characters.",
                    )
                tags.add(target.tag)
        total = sum(t.percent for t in svc.traffic)
        if total != 100:
            raise ApiError(
                400, bad, f"The traffic percentages must add up to 100; they add up to {total}."
            )

    def _maybe_new_revision(
        self, svc: run_v2.Service, *, previous: run_v2.Service | None
    ) -> str | None:
        tpl = svc.template
        if previous is not None and previous.template == tpl:
            return None
        if tpl.revision:
            full = f"{svc.name}/revisions/{tpl.revision}"
            if full in self.revisions:
                svc.latest_created_revision = full
                return None
            short = tpl.revision
        else:
            self._counter += 1
            suffix = hashlib.sha256(f"{svc.uid}{self._counter}".encode()).hexdigest()[:3]
            count = sum(1 for n in self.revisions if n.startswith(f"{svc.name}/revisions/")) + 1
            short = f"{svc.name.rpartition('/')[2]}-{count:05d}-{suffix}"
            # digits only would not be a valid suffix start for names; keep it lowercase hex
        full = f"{svc.name}/revisions/{short}"
        project, location = self._parse_parent(svc.name.rpartition("/services/")[0])
        rev = run_v2.Revision(
            name=full,
            uid=str(uuid.uuid4()),
            generation=1,
            labels=dict(tpl.labels),
            annotations=dict(tpl.annotations),
            create_time=_now(),
            update_time=_now(),
            launch_stage=svc.launch_stage,
            service=svc.name,
            scaling=tpl.scaling,
            vpc_access=tpl.vpc_access,
            max_instance_request_concurrency=tpl.max_instance_request_concurrency,
            timeout=tpl.timeout,
            service_account=tpl.service_account,
            containers=tpl.containers,
            volumes=tpl.volumes,
            execution_environment=tpl.execution_environment,
            reconciling=True,
            conditions=[
                run_v2.Condition(
                    type_="Ready",
                    state=State.CONDITION_RECONCILING,
                    last_transition_time=_now(),
                )
            ],
            log_uri=(
                f"https://console.cloud.google.com/logs/viewer?project={project}"
                f"&resource=cloud_run_revision/service_name/{svc.name.rpartition('/')[2]}"
                f"/revision_name/{short}&location={location}"
            ),
            creator=svc.last_modifier,
        )
        rev.etag = self._etag()
        self.revisions[full] = rev
        self.revision_templates[full] = run_v2.RevisionTemplate(tpl)
        svc.latest_created_revision = full
        return full

    def _start(
        self,
        svc: run_v2.Service,
        *,
        kind: str,
        revision: str | None,
        keep_status: bool = False,
    ) -> FakeOperation:
        if not keep_status:
            svc.etag = self._etag()
            svc.reconciling = True
            svc.terminal_condition = run_v2.Condition(
                type_="Ready",
                state=State.CONDITION_RECONCILING,
                last_transition_time=_now(),
                reason=run_v2.Condition.CommonReason.WAITING_FOR_OPERATION,
            )
            svc.conditions = [
                run_v2.Condition(
                    type_=kind_,
                    state=State.CONDITION_RECONCILING,
                    last_transition_time=_now(),
                )
                for kind_ in ("RoutesReady", "ConfigurationsReady")
            ]
        parent = svc.name.rpartition("/services/")[0]
        op = FakeOperation(
            name=f"{parent}/operations/{uuid.uuid4()}",
            kind=kind,
            service=svc.name,
            generation=svc.generation,
            revision=revision,
            due=self.clock() + self.operation_delay,
            metadata=run_v2.Service(svc),
        )
        self.operations[op.name] = op
        return op

    def _operation_view(self, svc: run_v2.Service) -> FakeOperation:
        """A done operation that changed nothing (validate_only deletes)."""
        return FakeOperation(
            name=f"{svc.name.rpartition('/services/')[0]}/operations/{uuid.uuid4()}",
            kind="delete",
            service=svc.name,
            generation=svc.generation,
            revision=None,
            due=self.clock(),
            done=True,
            response=run_v2.Service(svc),
            metadata=run_v2.Service(svc),
        )

    def _complete(self, op: FakeOperation) -> None:
        op.done = True
        svc = self.services.get(op.service)
        if op.kind == "delete":
            if svc is not None:
                del self.services[op.service]
                for name in [n for n in self.revisions if n.startswith(f"{op.service}/revisions/")]:
                    del self.revisions[name]
                    del self.revision_templates[name]
                op.response = run_v2.Service(svc)
            return
        if svc is None:
            op.error = (5, f"Service '{op.service}' was deleted.")
            return
        if op.revision and self.interruptions:
            self._interrupt(op, svc, self.interruptions.popleft())
            return
        if op.kind == "update" and self.update_failures:
            self._fail_update(op, svc, self.update_failures.popleft())
            return
        failure = self.rollout_failures.popleft() if op.revision and self.rollout_failures else None
        if op.revision:
            rev = self.revisions[op.revision]
            rev.reconciling = False
            rev.observed_generation = rev.generation
            rev.conditions = [
                run_v2.Condition(
                    type_="Ready",
                    state=State.CONDITION_FAILED if failure else State.CONDITION_SUCCEEDED,
                    message=failure or "",
                    last_transition_time=_now(),
                    revision_reason=(
                        run_v2.Condition.RevisionReason.HEALTH_CHECK_CONTAINER_ERROR
                        if failure
                        else run_v2.Condition.RevisionReason.REVISION_REASON_UNDEFINED
                    ),
                )
            ]
        if op.generation != svc.generation:
            # A newer write is in flight; it decides the service's state.
            op.response = run_v2.Service(svc)
            return
        svc.reconciling = False
        if failure:
            svc.terminal_condition = run_v2.Condition(
                type_="Ready",
                state=State.CONDITION_FAILED,
                message=failure,
                last_transition_time=_now(),
                reason=run_v2.Condition.CommonReason.REVISION_FAILED,
            )
            svc.conditions = [
                run_v2.Condition(
                    type_="ConfigurationsReady",
                    state=State.CONDITION_FAILED,
                    message=failure,
                    last_transition_time=_now(),
                    reason=run_v2.Condition.CommonReason.REVISION_FAILED,
                ),
                run_v2.Condition(
                    type_="RoutesReady",
                    state=State.CONDITION_FAILED,
                    message=failure,
                    last_transition_time=_now(),
                ),
            ]
            op.error = (13, failure)
            return
        svc.observed_generation = svc.generation
        if op.revision or not svc.latest_ready_revision or self._ready(svc.latest_created_revision):
            # a template naming an existing ready revision makes it the latest ready one
            svc.latest_ready_revision = svc.latest_created_revision
        svc.terminal_condition = run_v2.Condition(
            type_="Ready", state=State.CONDITION_SUCCEEDED, last_transition_time=_now()
        )
        svc.conditions = [
            run_v2.Condition(
                type_=kind_, state=State.CONDITION_SUCCEEDED, last_transition_time=_now()
            )
            for kind_ in ("RoutesReady", "ConfigurationsReady")
        ]
        project, location = self._parse_parent(svc.name.rpartition("/services/")[0])
        service_id = svc.name.rpartition("/")[2]
        if not svc.uri:
            digest = hashlib.sha256(f"{project}/{service_id}".encode()).hexdigest()[:10]
            svc.uri = f"https://{service_id}-{digest}-{location[:2]}.a.run.app"
            svc.urls = [svc.uri]
        svc.traffic_statuses = [self._traffic_status(svc, t) for t in svc.traffic]
        op.response = run_v2.Service(svc)

    def _interrupted(self, name: str) -> bool:
        """The revision exists and an internal error interrupted its rollout."""
        rev = self.revisions.get(name)
        return rev is not None and any(
            c.type_ == "Ready"
            and c.state == State.CONDITION_FAILED
            and c.reason == run_v2.Condition.CommonReason.INTERNAL
            for c in rev.conditions
        )

    def _redeploy(self, name: str) -> str:
        """Deploy an interrupted revision again (the write's operation completes it)."""
        rev = self.revisions[name]
        rev.reconciling = True
        rev.conditions = [
            run_v2.Condition(
                type_="Ready", state=State.CONDITION_RECONCILING, last_transition_time=_now()
            )
        ]
        return name

    def _interrupt(self, op: FakeOperation, svc: run_v2.Service, message: str) -> None:
        """The operation fails half-way: its revision exists but is not ready."""
        assert op.revision is not None
        failed = run_v2.Condition(
            type_="Ready",
            state=State.CONDITION_FAILED,
            message=message,
            last_transition_time=_now(),
            reason=run_v2.Condition.CommonReason.INTERNAL,
        )
        rev = self.revisions[op.revision]
        rev.reconciling = False
        rev.conditions = [failed]
        op.error = (13, message)
        if op.generation != svc.generation:
            return  # a newer write is in flight; it decides the service's state
        svc.reconciling = False
        svc.terminal_condition = failed
        svc.conditions = [
            run_v2.Condition(failed, type_=type_)
            for type_ in ("ConfigurationsReady", "RoutesReady")
        ]

    def _fail_update(self, op: FakeOperation, svc: run_v2.Service, message: str) -> None:
        """The update operation fails as a whole: nothing it asked for is served."""
        op.error = (13, message)
        if op.revision:  # a revision it created never became ready
            rev = self.revisions[op.revision]
            rev.reconciling = False
            rev.conditions = [
                run_v2.Condition(
                    type_="Ready",
                    state=State.CONDITION_FAILED,
                    message=message,
                    last_transition_time=_now(),
                    reason=run_v2.Condition.CommonReason.UNKNOWN,
                )
            ]
        if op.generation != svc.generation:
            return  # a newer write is in flight; it decides the service's state
        failed = run_v2.Condition(
            type_="Ready",
            state=State.CONDITION_FAILED,
            message=message,
            last_transition_time=_now(),
            reason=run_v2.Condition.CommonReason.UNKNOWN,
        )
        svc.reconciling = False
        svc.terminal_condition = failed
        svc.conditions = [
            run_v2.Condition(failed, type_=type_)
            for type_ in ("ConfigurationsReady", "RoutesReady")
        ]

    def _ready(self, name: str) -> bool:
        rev = self.revisions.get(name)
        return rev is not None and any(
            c.type_ == "Ready" and c.state == State.CONDITION_SUCCEEDED for c in rev.conditions
        )

    @staticmethod
    def _traffic_status(
        svc: run_v2.Service, target: run_v2.TrafficTarget
    ) -> run_v2.TrafficTargetStatus:
        latest = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
        return run_v2.TrafficTargetStatus(
            type_=target.type_,
            revision="" if target.type_ == latest else target.revision,
            percent=target.percent,
            tag=target.tag,
            uri=(svc.uri.replace("https://", f"https://{target.tag}---") if target.tag else ""),
        )
