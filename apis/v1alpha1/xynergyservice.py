"""XynergyService: one service spec, deployed to Kubernetes (Deployment + Service) or to Cloud Run.

Like Knative's Service and Config Connector's RunService, from one spec. A `profile` gives
defaults for cpu, memory, concurrency and max instances; explicit fields win over the profile.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from apis.base import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ImageReference,
    Quantity,
    SpecModel,
    StatusModel,
    cel,
    validations,
)
from apis.conditions import Condition
from apis.v1alpha1.common import (
    LABEL_VALUE_MAX,
    ConfigMapKeySelector,
    CrdInfo,
    PrinterColumn,
    Resource,
    SecretKeySelector,
    conditions_field,
    name_refusal,
    on_create,
    ready_columns,
)

__all__ = [
    "CLOUD_RUN_RESERVED_ENV",
    "CONFIGURATION_ENV",
    "CONTAINER_CONTRACT_ENV",
    "CONTAINER_PORT_ENV",
    "DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS",
    "MAX_CLOUD_RUN_NAME_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_ROUTE_TIMEOUT_SECONDS",
    "MAX_TERMINATION_GRACE_PERIOD_SECONDS",
    "PRE_STOP_SLEEP_SECONDS",
    "PROFILE_DEFAULTS",
    "RESERVED_MOUNT_PATHS",
    "REVISION_ENV",
    "ROUTE_PATH_MESSAGE",
    "SERVICE_ENV",
    "Backend",
    "CloudRunSpec",
    "ConfigMapVolumeSource",
    "DeletionPolicy",
    "EnvVar",
    "HealthCheck",
    "KeyToPath",
    "KubernetesSpec",
    "Profile",
    "ProfileDefaults",
    "ResolvedSizing",
    "ResourceRequirements",
    "Route",
    "ScalingSpec",
    "SecretVolumeSource",
    "Toleration",
    "TrafficTarget",
    "Volume",
    "XynergyService",
    "XynergyServiceSpec",
    "XynergyServiceStatus",
    "name_problem",
    "route_path_rule",
]


class Backend(StrEnum):
    """Where the service runs."""

    KUBERNETES = "kubernetes"
    CLOUD_RUN = "cloudRun"


class Profile(StrEnum):
    """A workload shape that gives defaults for cpu, memory, concurrency and max instances."""

    AI_INTENSIVE = "ai-intensive"
    DATA_PROCESSING = "data-processing"
    API_SERVICE = "api-service"
    BACKGROUND_WORKER = "background-worker"
    DASHBOARD = "dashboard"


class DeletionPolicy(StrEnum):
    """What happens to the backend service when the XynergyService is deleted."""

    DELETE = "Delete"
    ORPHAN = "Orphan"


@dataclass(frozen=True)
class ProfileDefaults:
    """Defaults a profile gives."""

    cpu: str
    memory: str
    concurrency: int
    max_instances: int


PROFILE_DEFAULTS: dict[Profile, ProfileDefaults] = {
    Profile.AI_INTENSIVE: ProfileDefaults("2000m", "4Gi", 10, 10),
    Profile.DATA_PROCESSING: ProfileDefaults("1000m", "2Gi", 20, 20),
    Profile.API_SERVICE: ProfileDefaults("500m", "1Gi", 80, 50),
    Profile.BACKGROUND_WORKER: ProfileDefaults("250m", "512Mi", 1, 5),
    Profile.DASHBOARD: ProfileDefaults("250m", "512Mi", 100, 10),
}


def _immutable(path: str, where: str) -> JsonDict:
    """A CEL transition rule keeping a field as created: the operator does not move a running
    service (changing it would leave the old backend's service running, and billed)."""
    return validations(
        cel(
            "self == oldSelf",
            f"{path} is immutable: delete the XynergyService and create it again to run it in "
            f"{where} (changing it in place would leave the old service running)",
        )
    )


class CloudRunSpec(SpecModel):
    """Settings that apply only to the Cloud Run backend (Cloud Run Admin API v2)."""

    project: str = Field(
        min_length=6,
        max_length=30,
        pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$",
        json_schema_extra=_immutable("spec.cloudRun.project", "another project"),
    )
    """Google Cloud project id that owns the service. Immutable: delete and recreate the
    XynergyService to move it."""
    region: str = Field(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z]+-[a-z]+[0-9]+$",
        json_schema_extra=_immutable("spec.cloudRun.region", "another region"),
    )
    """Cloud Run region, e.g. us-central1. Immutable: delete and recreate the XynergyService
    to move it."""
    service_account: str | None = Field(
        default=None,
        max_length=320,
        pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[-a-z0-9.]+\.iam\.gserviceaccount\.com$",
    )
    """Email of the service account the revision runs as."""
    ingress: Literal["all", "internal", "internal-and-cloud-load-balancing"] = "all"
    """Which network sources may reach the service."""
    invoker_iam_check: bool | None = None
    """True: Cloud Run lets in only callers with a Google ID token of an identity holding
    roles/run.invoker on the service (the gateway and the operator send theirs). False: the
    service is public, as `gcloud run deploy --no-invoker-iam-check` (the Admin API's
    invokerIamDisabled; no IAM policy is written), for a service that checks its callers
    itself. Unset: left as it is (a new service checks IAM, Cloud Run's default; a change
    made in the console or with gcloud stays). Set, it wins over such a change."""
    vpc_connector: str | None = Field(default=None, min_length=1, max_length=512)
    """Serverless VPC Access connector (name or full resource path)."""
    execution_environment: Literal["gen1", "gen2"] = "gen2"
    """Cloud Run execution environment."""
    launch_stage: Literal["GA", "BETA", "ALPHA"] = "GA"
    """Launch stage the service opts into."""


_TOLERATION_RULES = (  # (CEL rule, message, fieldPath), as core/v1 validates tolerations
    (
        "self.operator != 'Exists' || !has(self.value) || self.value == ''",
        "tolerations[]: value must be empty when operator is Exists",
        ".value",
    ),
    (
        "self.operator == 'Exists' || (has(self.key) && self.key != '')",
        "tolerations[]: operator must be Exists when key is empty (which matches every taint)",
        ".operator",
    ),
    (
        "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        "tolerations[]: tolerationSeconds needs effect NoExecute",
        ".tolerationSeconds",
    ),
)


class Toleration(SpecModel):
    """A Pod toleration (core/v1 Toleration), with the rules the apiserver applies to Pods."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            *(cel(rule, message, field_path=path) for rule, message, path in _TOLERATION_RULES)
        )
    )

    key: str | None = Field(default=None, max_length=253)
    """Taint key the toleration applies to; empty matches all keys."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists or Equal."""
    value: str | None = Field(default=None, max_length=253)
    """Taint value to match when operator is Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """For NoExecute: how long the Pod stays bound after the taint appears."""

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError(_TOLERATION_RULES[0][1])
        if not self.key and self.operator != "Exists":
            raise ValueError(_TOLERATION_RULES[1][1])
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError(_TOLERATION_RULES[2][1])
        return self


PRE_STOP_SLEEP_SECONDS = 5
"""A stopping Pod's container sleeps this long before its SIGTERM (a native preStop sleep, no
binary needed in the image): the Pod leaves the Service's endpoints asynchronously, and
requests routed to it meanwhile are still served, not refused."""
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = PRE_STOP_SLEEP_SECONDS + 30
"""The preStop sleep plus Kubernetes' default 30 s for the app's own shutdown after SIGTERM
(the grace period counts from the start of the preStop hook)."""
MAX_ROUTE_TIMEOUT_SECONDS = 3600
"""The longest a gateway route waits for its upstream (routes[].timeoutSeconds)."""
MAX_TERMINATION_GRACE_PERIOD_SECONDS = PRE_STOP_SLEEP_SECONDS + MAX_ROUTE_TIMEOUT_SECONDS
"""Room for a request of the longest route timeout that arrived during the preStop sleep."""
_GRACE_PERIOD_MESSAGE = (
    f"must be more than {PRE_STOP_SLEEP_SECONDS}: the grace period counts from the start of"
    f" the Pods' {PRE_STOP_SLEEP_SECONDS} s preStop sleep, and what is left after it is the"
    f" app's time to finish after SIGTERM (e.g. {PRE_STOP_SLEEP_SECONDS + 60} gives it 60 s)"
)


class KubernetesSpec(SpecModel):
    """Settings that apply only to the Kubernetes backend (Deployment + Service)."""

    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """Type of the Kubernetes Service."""
    node_selector: dict[str, str] | None = None
    """Labels a Node must have for the Pods to run on it."""
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, json_schema_extra={"x-kubernetes-list-type": "atomic"}
    )
    """Taints the Pods tolerate."""
    service_account_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    )
    """ServiceAccount the Pods run as (in the service's namespace), for a workload that talks
    to the Kubernetes API, e.g. the gateway reading XynergyServices; the namespace's default
    when unset. The controller does not create it: ship it with its RBAC."""
    pod_security: Literal["restricted", "baseline"] = "restricted"
    """The Pod Security Standard the Pods are built to meet. restricted (the default): the
    Pod runs as non-root (runAsNonRoot; the image's USER must be a non-zero number, e.g.
    65532), with seccomp RuntimeDefault, no privilege escalation and every capability
    dropped, so a namespace that enforces restricted (GKE Autopilot, hardened clusters)
    admits it. baseline: no security settings (the image's user, root included, and the
    runtime's default capabilities), for an image that must run as root; a namespace that
    enforces restricted refuses its Pods."""
    termination_grace_period_seconds: int | None = Field(
        default=None,
        le=MAX_TERMINATION_GRACE_PERIOD_SECONDS,
        json_schema_extra=validations(
            cel(f"self > {PRE_STOP_SLEEP_SECONDS}", _GRACE_PERIOD_MESSAGE)
        ),
    )
    """Seconds a stopping Pod (a rollout, a scale-down, a drained node) is given before it is
    killed, counted from the start of its 5 s preStop sleep (it keeps serving while it leaves
    the Service's endpoints): the app has this minus 5 to finish its requests after SIGTERM.
    Unset: 35 (Kubernetes' default 30 s after the sleep). Raise it for requests longer than 30
    s (a long routes[].timeoutSeconds), up to 3605 (an hour-long request that arrived during
    the sleep). More than 5. Cloud Run gives 10 s after SIGTERM and has no such setting.
    Changing it is a new revision (the Pods roll)."""

    @field_validator("termination_grace_period_seconds")
    @classmethod
    def _longer_than_pre_stop(cls, value: int | None) -> int | None:
        if value is not None and value <= PRE_STOP_SLEEP_SECONDS:
            raise ValueError(_GRACE_PERIOD_MESSAGE)
        return value

    def grace_period_seconds(self) -> int:
        """The Pods' terminationGracePeriodSeconds (the default when unset)."""
        if self.termination_grace_period_seconds is None:
            return DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
        return self.termination_grace_period_seconds


class EnvVar(SpecModel):
    """An environment variable: a literal value, or a key of a Secret or ConfigMap."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.value) ? 1 : 0) + (has(self.secretKeyRef) ? 1 : 0)"
                " + (has(self.configMapKeyRef) ? 1 : 0) <= 1",
                "env: set at most one of value, secretKeyRef, configMapKeyRef",
            ),
        )
    )

    name: str = Field(min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    """Variable name."""
    value: str | None = Field(default=None, max_length=32768)
    """Literal value."""
    secret_key_ref: SecretKeySelector | None = None
    """Take the value from a Secret key."""
    config_map_key_ref: ConfigMapKeySelector | None = None
    """Take the value from a ConfigMap key."""


RESERVED_MOUNT_PATHS = (
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/run",
)
"""Directories a volume may not be mounted over (it would hide what the image keeps there)."""
RESERVED_MOUNT_PREFIXES = ("/proc/", "/sys/", "/dev/", "/var/run/secrets/kubernetes.io/")
"""Trees a volume may not be mounted into (the kernel's and the ServiceAccount token's)."""

_DOT_SEGMENT = "(^|/)[.][.]?(/|$)"  # a `.` or `..` path segment
_PATH_MESSAGE = "without '.' or '..' segments, '//' or a trailing '/'"
_MOUNT_PATH_RULES = (  # (CEL rule on a volume, message), checked again by Volume's validator
    (
        f"self.mountPath == '/' || (!self.mountPath.matches('{_DOT_SEGMENT}')"
        " && !self.mountPath.contains('//') && !self.mountPath.endsWith('/'))",
        f"volumes[].mountPath: must be an absolute path {_PATH_MESSAGE}",
    ),
    (
        "!(self.mountPath in ["
        + ", ".join(f"'{p}'" for p in RESERVED_MOUNT_PATHS)
        + "]) && !["
        + ", ".join(f"'{p}'" for p in RESERVED_MOUNT_PREFIXES)
        + "].exists(p, self.mountPath.startsWith(p))",
        "volumes[].mountPath: must not be / or a system directory ("
        + ", ".join(RESERVED_MOUNT_PATHS[1:])
        + ") nor under "
        + ", ".join(RESERVED_MOUNT_PREFIXES)
        + "; mount under a directory of your own, e.g. /var/run/xynergy/<name>",
    ),
)


def _bad_relative_path(path: str) -> bool:
    return bool(re.search(_DOT_SEGMENT, path)) or "//" in path or path.endswith("/")


class KeyToPath(SpecModel):
    """A key of the Secret or ConfigMap, and the file (relative to mountPath) that holds it."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                f"!self.path.matches('{_DOT_SEGMENT}') && !self.path.contains('//')"
                " && !self.path.endsWith('/')",
                f"items[].path: must be a relative path {_PATH_MESSAGE}",
                field_path=".path",
            ),
        )
    )

    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """The key to project. On Cloud Run: the Secret Manager version, `latest` or a number."""
    path: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9][-._a-zA-Z0-9/]*$")
    """File the key is written to, relative to the volume's mountPath (e.g. `key`)."""

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if _bad_relative_path(value):
            raise ValueError(f"must be a relative path {_PATH_MESSAGE}")
        return value


def _items_field() -> Any:
    return Field(
        default=None,
        min_length=1,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["path"]},
    )


def _unique_paths(items: list[KeyToPath] | None) -> list[KeyToPath] | None:
    paths = [item.path for item in items or []]
    duplicated = sorted({p for p in paths if paths.count(p) > 1})
    if duplicated:
        raise ValueError(f"each path may appear once; repeated: {', '.join(duplicated)}")
    return items


class SecretVolumeSource(SpecModel):
    """A Secret as files (core/v1 SecretVolumeSource). The kubelet updates the files in place
    when the Secret changes: the workload is not rolled (env references are)."""

    secret_name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the Secret in this namespace. On Cloud Run: the Secret Manager secret in
    spec.cloudRun.project."""
    items: list[KeyToPath] | None = _items_field()
    """Keys to project, each to a file; every key (as a file named after it) when unset. On
    Cloud Run each key is a version (`latest` is read when the file is read, so a new version
    needs no new revision); unset: the latest version in a file named after the secret."""
    optional: bool = False
    """When true, a missing Secret (or key) mounts what exists instead of keeping the Pod from
    starting. Not on Cloud Run."""

    _items = field_validator("items")(_unique_paths)


class ConfigMapVolumeSource(SpecModel):
    """A ConfigMap as files (core/v1 ConfigMapVolumeSource); Kubernetes backend only."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the ConfigMap in this namespace."""
    items: list[KeyToPath] | None = _items_field()
    """Keys to project, each to a file; every key when unset."""
    optional: bool = False
    """When true, a missing ConfigMap (or key) is not an error."""

    _items = field_validator("items")(_unique_paths)


_VOLUME_SOURCE_MESSAGE = "volumes[]: set exactly one of secret, configMap"


class Volume(SpecModel):
    """A Secret or ConfigMap mounted read-only into the container: the Pod API's volume and its
    volumeMount in one entry."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.secret) ? 1 : 0) + (has(self.configMap) ? 1 : 0) == 1",
                _VOLUME_SOURCE_MESSAGE,
            ),
            *(cel(rule, message, field_path=".mountPath") for rule, message in _MOUNT_PATH_RULES),
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """Volume name, unique within the service."""
    mount_path: str = Field(min_length=1, max_length=256, pattern=r"^/[-._a-zA-Z0-9/]*$")
    """Absolute directory the files appear in, e.g. /var/run/xynergy/jwt."""
    secret: SecretVolumeSource | None = None
    """Mount a Secret (on Cloud Run, a Secret Manager secret)."""
    config_map: ConfigMapVolumeSource | None = None
    """Mount a ConfigMap (Kubernetes backend only)."""

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, value: str) -> str:
        if value != "/" and _bad_relative_path(value):
            raise ValueError(_MOUNT_PATH_RULES[0][1].partition(": ")[2])
        under = any(value.startswith(p) for p in RESERVED_MOUNT_PREFIXES)
        if value in RESERVED_MOUNT_PATHS or under:
            raise ValueError(_MOUNT_PATH_RULES[1][1].partition(": ")[2])
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        if (self.secret is None) == (self.config_map is None):
            raise ValueError(_VOLUME_SOURCE_MESSAGE)
        return self


class ResourceRequirements(SpecModel):
    """CPU and memory per instance; unset values come from the profile."""

    cpu: Quantity | None = None
    """CPU per instance (e.g. 500m, 2). Defaults to the profile's."""
    memory: Quantity | None = None
    """Memory per instance (e.g. 512Mi, 4Gi). Defaults to the profile's."""


class ScalingSpec(SpecModel):
    """Instance bounds and per-instance concurrency."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!has(self.minInstances) || !has(self.maxInstances)"
                " || self.minInstances <= self.maxInstances",
                "scaling.minInstances must be less than or equal to scaling.maxInstances",
                field_path=".minInstances",
            ),
        )
    )

    min_instances: int | None = Field(default=None, ge=0, le=1000)
    """Fewest instances kept running (0 lets Cloud Run scale to zero). Default 1."""
    max_instances: int | None = Field(default=None, ge=1, le=1000)
    """Most instances. Defaults to the profile's."""
    concurrency: int | None = Field(default=None, ge=1, le=1000)
    """Concurrent requests one instance serves. Defaults to the profile's."""


RoutePath = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^/[A-Za-z0-9/_.~-]*$")]
ROUTE_PATH_MESSAGE = "must be a path like /api/v2/crm, without '.' or '..' segments or '//'"
"""What a gateway route path (prefix, alias, a Rollout's previewRoute) must look like; a
trailing '/' is allowed and ignored by the gateway."""


def route_path_rule(path: str) -> str:
    """The CEL rule for a gateway route path held in the CEL expression ``path``: what the
    gateway can route (it refuses '/' alone, '.' and '..' segments and '//'). CEL only: objects
    stored before the rule keep reading, and the gateway skips such a route with a log line."""
    return f"{path} != '/' && !{path}.matches('{_DOT_SEGMENT}') && !{path}.contains('//')"


class Route(SpecModel):
    """A path prefix the Intelligence Gateway forwards to this service."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                route_path_rule("self.prefix"),
                f"routes[].prefix: {ROUTE_PATH_MESSAGE}",
                field_path=".prefix",
            ),
            cel(
                f"!has(self.aliases) || self.aliases.all(a, {route_path_rule('a')})",
                f"routes[].aliases: each {ROUTE_PATH_MESSAGE}",
                field_path=".aliases",
            ),
        )
    )

    prefix: str = Field(min_length=1, max_length=256, pattern=r"^/[A-Za-z0-9/_.~-]*$")
    """Path prefix, e.g. /api/v2/crm (a trailing '/' is ignored)."""
    aliases: list[RoutePath] | None = Field(
        default=None, max_length=8, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    """Other prefixes served by the same route, e.g. /api/v2/email for /api/v2/gmail."""
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_ROUTE_TIMEOUT_SECONDS)
    """How long the gateway waits for this route's upstream: for the response head, then
    for each next piece of the body (a stream that keeps sending is never cut). The gateway's
    default (XYNERGY_GATEWAY_DEFAULT_TIMEOUT_SECONDS, 30) when unset."""
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    """Requests per minute per user; the gateway's default (100) when unset. On a public
    route, per client address."""
    public: bool = False
    """Serve this route without a bearer token, for callers that cannot send one (Slack's
    Events API webhook at /api/v2/slack/events, which signs its requests instead). The gateway
    still limits it per client address (rateLimitPerMinute) and by body size, never caches it,
    and never forwards an identity to the service: the service must check the caller itself.
    Give the public path a route of its own, so the rest of the service keeps asking for
    tokens."""


class HealthCheck(SpecModel):
    """The HTTP readiness check of an instance."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.timeoutSeconds <= self.periodSeconds",
                "healthCheck.timeoutSeconds must not exceed healthCheck.periodSeconds",
                field_path=".timeoutSeconds",
            ),
        )
    )

    path: str = Field(default="/healthz", max_length=256, pattern=r"^/[A-Za-z0-9/_.~-]*$")
    """HTTP path that answers 2xx when the instance is ready."""
    period_seconds: int = Field(default=10, ge=1, le=3600)
    """How often to check."""
    timeout_seconds: int = Field(default=1, ge=1, le=3600)
    """How long one check may take."""
    failure_threshold: int = Field(default=3, ge=1, le=100)
    """Consecutive failures before the instance is marked not ready."""


Arg = Annotated[str, Field(max_length=4096)]


CONTAINER_PORT_ENV = "PORT"
"""The variable that tells a container the port it is routed to (spec.port): Cloud Run sets
it, and the Kubernetes backend sets it the same way."""
SERVICE_ENV = "K_SERVICE"
"""The service's name (Cloud Run and Knative set it; so does the Kubernetes backend)."""
REVISION_ENV = "K_REVISION"
"""The name of the revision the container runs (status.latestCreatedRevision when it was
made), e.g. crm-00003."""
CONFIGURATION_ENV = "K_CONFIGURATION"
"""The configuration the revision was made from: the service's name, as on Cloud Run."""
CONTAINER_CONTRACT_ENV = (CONTAINER_PORT_ENV, SERVICE_ENV, REVISION_ENV, CONFIGURATION_ENV)
"""Variables Cloud Run sets in every container of a service (its container runtime contract).
The Kubernetes backend sets them too, unless spec.env does (the user's value wins there)."""
CLOUD_RUN_RESERVED_ENV = CONTAINER_CONTRACT_ENV
"""What Cloud Run refuses in a revision's env: all of its contract's variables."""
_CLOUD_RUN_RESERVED_CEL = "[" + ", ".join(f"'{n}'" for n in CLOUD_RUN_RESERVED_ENV) + "]"
_CLOUD_RUN_RESERVED_TEXT = (
    ", ".join(CLOUD_RUN_RESERVED_ENV[:-1]) + " and " + CLOUD_RUN_RESERVED_ENV[-1]
)


class XynergyServiceSpec(SpecModel):
    """Desired state of a XynergyService."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.backend == 'cloudRun' || !has(self.cloudRun)",
                "spec.cloudRun may only be set when spec.backend is cloudRun",
                field_path=".cloudRun",
            ),
            cel(
                "self.backend == 'kubernetes' || !has(self.kubernetes)",
                "spec.kubernetes may only be set when spec.backend is kubernetes",
                field_path=".kubernetes",
            ),
            cel(
                "self.backend != 'cloudRun' || has(self.cloudRun)",
                "spec.cloudRun (project, region) is required when spec.backend is cloudRun",
                field_path=".cloudRun",
            ),
            cel(
                "!has(self.replicas) || !has(self.scaling) || !has(self.scaling.maxInstances)"
                " || self.replicas <= self.scaling.maxInstances",
                "spec.replicas must not exceed spec.scaling.maxInstances",
                field_path=".replicas",
            ),
            cel(
                "self.backend != 'cloudRun' || !has(self.env)"
                " || self.env.all(e, !(e.name in " + _CLOUD_RUN_RESERVED_CEL + "))",
                "spec.env: " + _CLOUD_RUN_RESERVED_TEXT + " are set by Cloud Run itself (PORT to"
                " spec.port) and may not be set when spec.backend is cloudRun",
                field_path=".env",
            ),
            cel(
                "!has(self.volumes) || self.volumes.all(v,"
                " self.volumes.exists_one(w, w.mountPath == v.mountPath))",
                "spec.volumes: each mountPath may be used by one volume only",
                field_path=".volumes",
            ),
        )
    )

    image: ImageReference
    """Container image, e.g. us-docker.pkg.dev/proj/repo/crm:1.4.2."""
    backend: Backend = Field(
        default=Backend.KUBERNETES,
        json_schema_extra=_immutable("spec.backend", "another backend"),
    )
    """Where to run: kubernetes (Deployment + Service) or cloudRun. Immutable: delete and
    recreate the XynergyService to move it."""
    cloud_run: CloudRunSpec | None = None
    """Cloud Run settings; only with backend cloudRun."""
    kubernetes: KubernetesSpec | None = None
    """Kubernetes settings; only with backend kubernetes."""
    profile: Profile = Profile.API_SERVICE
    """Workload profile giving cpu, memory, concurrency and max-instance defaults."""
    port: int = Field(default=8080, ge=1, le=65535)
    """Port the container listens on."""
    command: list[Arg] | None = Field(
        default=None, max_length=64, json_schema_extra={"x-kubernetes-list-type": "atomic"}
    )
    """Entrypoint override."""
    args: list[Arg] | None = Field(
        default=None, max_length=256, json_schema_extra={"x-kubernetes-list-type": "atomic"}
    )
    """Arguments to the entrypoint."""
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Environment variables."""
    volumes: list[Volume] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Secrets and ConfigMaps mounted as read-only files. A change to a mounted Secret reaches
    the files without a restart (the kubelet updates them in place) and does not roll the
    workload; use it for keys the service re-reads, e.g. JWT_SECRET_FILE."""
    resources: ResourceRequirements | None = None
    """CPU and memory per instance; the profile's when unset."""
    scaling: ScalingSpec | None = None
    """Instance bounds and concurrency; the profile's when unset."""
    replicas: int | None = Field(default=None, ge=0, le=1000)
    """Desired instances, set by `kubectl scale`, an HPA or a ScalingPolicy (default minInstances).

    Kept within the scaling bounds. An HPA (or KEDA, whose ScaledObject makes one) reads the
    scale subresource, which the apiserver cannot serve while this is unset (the HPA reports
    FailedGetScale, `the spec replicas field ".spec.replicas" does not exist`): set it before
    pointing one at the service. A ScalingPolicy and `kubectl scale` need no value."""
    routes: list[Route] | None = Field(
        default=None,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["prefix"],
        },
    )
    """Path prefixes the gateway exposes for this service."""
    health_check: HealthCheck | None = None
    """HTTP readiness check."""
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE
    """Delete removes the backend service with this object; Orphan leaves it running."""
    paused: bool = False
    """When true the controller makes no changes to the backend (status is still observed)."""

    @field_validator("volumes")
    @classmethod
    def _distinct_volumes(cls, volumes: list[Volume] | None) -> list[Volume] | None:
        for attr, what in (("name", "name"), ("mount_path", "mountPath")):
            seen = [getattr(v, attr) for v in volumes or []]
            repeated = sorted({x for x in seen if seen.count(x) > 1})
            if repeated:
                raise ValueError(
                    f"each {what} may be used by one volume only; repeated: " + ", ".join(repeated)
                )
        return volumes

    def sizing(self) -> ResolvedSizing:
        """Effective cpu, memory, concurrency and instance bounds (explicit values win)."""
        base = PROFILE_DEFAULTS[self.profile]
        res = self.resources or ResourceRequirements()
        scaling = self.scaling or ScalingSpec()
        min_instances = scaling.min_instances if scaling.min_instances is not None else 1
        max_instances = scaling.max_instances or base.max_instances
        max_instances = max(max_instances, min_instances)
        wanted = self.replicas if self.replicas is not None else min_instances
        return ResolvedSizing(
            cpu=str(res.cpu if res.cpu is not None else base.cpu),
            memory=str(res.memory if res.memory is not None else base.memory),
            concurrency=scaling.concurrency or base.concurrency,
            min_instances=min_instances,
            max_instances=max_instances,
            replicas=min(max(wanted, min_instances), max_instances),
        )


@dataclass(frozen=True)
class ResolvedSizing:
    """What a profile plus explicit fields resolve to."""

    cpu: str
    memory: str
    concurrency: int
    min_instances: int
    max_instances: int
    replicas: int


class TrafficTarget(StatusModel):
    """Share of traffic a revision receives."""

    revision: str
    """Revision name."""
    percent: int = Field(ge=0, le=100)
    """Percent of requests."""
    tag: str | None = None
    """Tag giving the revision its own URL."""


class XynergyServiceStatus(StatusModel):
    """Observed state of a XynergyService."""

    observed_generation: int | None = None
    """The .metadata.generation this status describes."""
    conditions: list[Condition] = conditions_field()
    """Ready, Reconciling and Stalled, as metav1.Conditions."""
    url: str | None = None
    """Where the service answers (the in-cluster Service URL or the Cloud Run URL)."""
    latest_created_revision: str | None = None
    """Newest revision created from the spec (named after the generation that made it; a
    change of the instance count alone makes none)."""
    latest_ready_revision: str | None = None
    """Newest revision that became ready."""
    replicas: int | None = None
    """Instances that exist."""
    ready_replicas: int | None = None
    """Instances that are ready."""
    selector: str | None = None
    """Label selector of the instances (for the scale subresource and HPAs)."""
    traffic: list[TrafficTarget] | None = Field(default=None, max_length=32)
    """How traffic is split between revisions."""
    last_reconcile_time: dt.datetime | None = None
    """When the controller last compared spec and backend."""


MAX_NAME_LENGTH = LABEL_VALUE_MAX
"""The longest metadata.name: it names the Service (a DNS-1035 label, at most 63 characters)
and the Deployment, and is the value of the `app.kubernetes.io/name` and `xynergy.io/service`
labels on them and their Pods (a label value has at most 63). What else is derived from it
fits: the revision `<name>-00003` is an annotation (no limit), a Kubernetes Rollout's new
revision is `<name, cut to 51>-ro-<8 hex digits>`."""
MAX_CLOUD_RUN_NAME_LENGTH = 49
"""The longest metadata.name with backend cloudRun: the Cloud Run service id (Admin API v2:
fewer than 50 characters). Its revisions, `<name>-00003` and a Rollout's `<name>-ro-<8 hex
digits>`, stay within the 63 a revision name may have."""
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""metadata.name as a DNS-1035 label (a Service name, a Cloud Run service id): the apiserver
admits custom objects with any DNS subdomain, dots and a leading digit included."""
_NAME_LENGTH = (
    f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
    f"metadata.name: must be at most {MAX_NAME_LENGTH} characters: it names the"
    " XynergyService's Service (a DNS-1035 label) and Deployment and is a label value on them"
    " and their Pods",
)
_NAME_FORMAT = (
    f"self.metadata.name.matches('{NAME_PATTERN}')",
    "metadata.name: must start with a lowercase letter, hold only lowercase letters, digits"
    " and '-', and end with a letter or digit (no '.'): it names the XynergyService's Service"
    " (a DNS-1035 label)",
)
_CLOUD_RUN_NAME_LENGTH = (
    f"self.spec.backend != 'cloudRun' || self.metadata.name.size() <= {MAX_CLOUD_RUN_NAME_LENGTH}",
    f"metadata.name: must be at most {MAX_CLOUD_RUN_NAME_LENGTH} characters with spec.backend"
    " cloudRun: it is the Cloud Run service id (fewer than 50 characters)",
)
_NAME_RULES = (_NAME_LENGTH, _NAME_FORMAT, _CLOUD_RUN_NAME_LENGTH)
"""(CEL rule on the object at creation, message); `name_problem` checks the same."""


def name_problem(name: str, backend: Backend) -> str | None:
    """What is wrong with `name` as a XynergyService's metadata.name (the message the CRD
    refuses a new object with, then the name), None when its children can all be named
    after it. For an object stored before the CRD checked it, which the operator stalls
    rather than failing on a child."""
    failed = (
        (len(name) > MAX_NAME_LENGTH, _NAME_LENGTH[1]),
        (re.fullmatch(NAME_PATTERN, name) is None, _NAME_FORMAT[1]),
        (
            backend == Backend.CLOUD_RUN and len(name) > MAX_CLOUD_RUN_NAME_LENGTH,
            _CLOUD_RUN_NAME_LENGTH[1],
        ),
    )
    for bad, message in failed:
        if bad:
            return name_refusal(message, name)
    return None


class XynergyService(Resource[XynergyServiceSpec, XynergyServiceStatus]):
    """A service of the Xynergy platform, deployed to Kubernetes or Cloud Run."""

    kind: Literal["XynergyService"] = "XynergyService"


XynergyService.crd = CrdInfo(
    kind="XynergyService",
    plural="xynergyservices",
    singular="xynergyservice",
    short_names=("xs",),
    spec_model=XynergyServiceSpec,
    status_model=XynergyServiceStatus,
    description=(
        "XynergyService deploys one service spec to Kubernetes (Deployment + Service) or to "
        "Google Cloud Run and reports honestly where it stands."
    ),
    printer_columns=(
        PrinterColumn("Backend", ".spec.backend", description="kubernetes or cloudRun"),
        PrinterColumn("Profile", ".spec.profile", priority=1),
        *ready_columns(),
        PrinterColumn("Replicas", ".status.readyReplicas", type="integer"),
        PrinterColumn("URL", ".status.url"),
        PrinterColumn("Image", ".spec.image", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
    scale={
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
    validations=tuple(on_create(rule, message) for rule, message in _NAME_RULES),
)
