"""Pure builders of the Cloud Run service of a XynergyService (Admin API v2 `run_v2.Service`).

- The Cloud Run service is `projects/{project}/locations/{region}/services/{metadata.name}`.
- The desired service is the existing one with the fields we manage overlaid (image, port,
  command/args, env values, cpu/memory, concurrency, instance bounds, service account, VPC
  connector, execution environment, startup probe from healthCheck, ingress, the invoker IAM
  check when set, launch stage, the `managed-by=xynergy` label and the `xynergy.io/owner`
  annotation), and spec.volumes as Secret Manager volumes with the main container's mounts.
  Fields we do not manage (sidecars and their volumes, timeout, traffic splits, other
  labels...) are left as they are.
- `plan` compares the managed fields and says what to write: nothing, the service, or the
  service with a new revision (named like every revision, `crm-00003`) when the template changed.
- A service that exists but is not owned by this object is never touched: Stalled, with a
  message saying how to adopt it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from google.api import launch_stage_pb2
from google.cloud import run_v2

from apis.quantity import canonical_quantity, parse_quantity
from apis.v1alpha1.xynergyservice import (
    CLOUD_RUN_RESERVED_ENV,
    EnvVar,
    Volume,
    XynergyService,
)
from apis.v1alpha1.xynergyservice import Backend as BackendKind
from controllers.core.errors import StalledError
from controllers.xynergyservice.resources.naming import revision_name

__all__ = [
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "OWNER_ANNOTATION",
    "check_owner",
    "desired_service",
    "managed_view",
    "owned",
    "owner_of",
    "plan",
    "released",
    "rotated_secrets",
    "secret_references",
    "service_path",
]

MANAGED_BY_LABEL = "managed-by"
MANAGED_BY_VALUE = "xynergy"
OWNER_ANNOTATION = "xynergy.io/owner"

# Cloud Run service ids: start with a letter, lowercase letters, digits and hyphens, no trailing
# hyphen, fewer than 50 characters (CreateServiceRequest.service_id).
SERVICE_ID = re.compile(r"^[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?$")
# Secret Manager secret ids and version ids (`latest` or a number from 1).
SECRET_ID = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
SECRET_VERSION = re.compile(r"^(?:latest|[1-9][0-9]*)$")
PORT_NAME = "http1"

_INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
_EXECUTION_ENVIRONMENT = {
    "gen1": "EXECUTION_ENVIRONMENT_GEN1",
    "gen2": "EXECUTION_ENVIRONMENT_GEN2",
}
_LAUNCH_STAGE = {
    "GA": launch_stage_pb2.LaunchStage.GA,
    "BETA": launch_stage_pb2.LaunchStage.BETA,
    "ALPHA": launch_stage_pb2.LaunchStage.ALPHA,
}


def service_path(svc: XynergyService) -> str:
    """The Cloud Run resource name; StalledError when the spec cannot name one."""
    cloud_run = svc.spec.cloud_run
    if svc.spec.backend != BackendKind.CLOUD_RUN or cloud_run is None:
        raise StalledError(
            "spec.backend is not cloudRun or spec.cloudRun is missing", reason="InvalidSpec"
        )
    name = svc.metadata.name or ""
    if not SERVICE_ID.fullmatch(name):
        raise StalledError(
            f"metadata.name {name!r} is not a valid Cloud Run service name: it must start with a "
            "letter, use only lowercase letters, digits and hyphens, not end with a hyphen, and "
            "be at most 49 characters",
            reason="InvalidName",
        )
    return f"projects/{cloud_run.project}/locations/{cloud_run.region}/services/{name}"


def owner_of(svc: XynergyService) -> str:
    """Value of the owner annotation: `namespace/name`."""
    return f"{svc.metadata.namespace or 'default'}/{svc.metadata.name}"


def _quantity_view(value: str) -> str:
    try:
        return str(canonical_quantity(value).normalize())
    except ValueError:
        return value


def _cloud_run_cpu(svc: XynergyService, *, cpu: str, concurrency: int, gen1: bool) -> str:
    """Profile cpu below 1 is raised to 1 where Cloud Run requires it; explicit values are kept.

    Cloud Run refuses cpu < 1 with concurrency > 1 or with the gen2 environment. Profiles give
    Kubernetes-sized defaults (e.g. 500m), so a profile default is raised to "1"; a value the
    user set explicitly is sent as is and the API's refusal reported.
    """
    explicit = svc.spec.resources is not None and svc.spec.resources.cpu is not None
    if not explicit and parse_quantity(cpu) < 1 and (concurrency > 1 or not gen1):
        return "1"
    return cpu


def _check_secret(name: str, *, field: str, optional: bool) -> None:
    """StalledError unless `name` is a Secret Manager secret id and the reference is required
    (`field` is where the reference is, e.g. spec.env[0].secretKeyRef)."""
    if not SECRET_ID.fullmatch(name):
        raise StalledError(
            f"{field}: {name!r} is not a Secret Manager secret id (letters, digits, "
            "'-' and '_'; on Cloud Run name is the Secret Manager secret)",
            reason="InvalidSpec",
        )
    if optional:
        raise StalledError(
            f"{field.rpartition('.')[0]}.optional: Cloud Run has no optional secrets; remove it",
            reason="InvalidSpec",
        )


def _check_version(version: str, *, field: str) -> str:
    if not SECRET_VERSION.fullmatch(version):
        raise StalledError(
            f"{field}: on Cloud Run the key is the Secret Manager version, 'latest' or a "
            f"version number; got {version!r}",
            reason="InvalidSpec",
        )
    return version


def _secret_ref(i: int, var: EnvVar) -> tuple[str, str]:
    """(secret, version) of a secretKeyRef on Cloud Run: `name` is the Secret Manager secret in
    spec.cloudRun.project and `key` its version (Cloud Run's own YAML reads them so)."""
    ref = var.secret_key_ref
    assert ref is not None
    where = f"spec.env[{i}].secretKeyRef"
    _check_secret(ref.name, field=f"{where}.name", optional=ref.optional)
    return ref.name, _check_version(ref.key, field=f"{where}.key")


def _secret_volume(i: int, volume: Volume) -> run_v2.Volume:
    """The Cloud Run volume of spec.volumes[i]: a Secret Manager secret, each item's key its
    version (`latest` stays `latest`: Cloud Run reads the secret when the file is read, so a
    new version reaches the file without a new revision); StalledError for a ConfigMap."""
    where = f"spec.volumes[{i}]"
    if volume.secret is None:
        raise StalledError(
            f"{where}.configMap (volume {volume.name}): Kubernetes ConfigMaps are not visible "
            "to Cloud Run; mount a Secret Manager secret instead (secret.secretName: the "
            "secret, secret.items[].key: its version)",
            reason="UnsupportedVolume",
        )
    src = volume.secret
    _check_secret(src.secret_name, field=f"{where}.secret.secretName", optional=src.optional)
    items = [
        run_v2.VersionToPath(
            path=item.path, version=_check_version(item.key, field=f"{where}.secret.items[{j}].key")
        )
        for j, item in enumerate(src.items or [])
    ]
    source = run_v2.SecretVolumeSource(secret=src.secret_name, items=items)
    return run_v2.Volume(name=volume.name, secret=source)


def _overlay_volumes(
    svc: XynergyService, tpl: run_v2.RevisionTemplate, container: Any, previous: set[str]
) -> None:
    """Our volumes and the main container's mounts; volumes of others (sidecars) are kept,
    those the main container mounted before (`previous`, ours from an older spec) are not."""
    ours = [_secret_volume(i, v) for i, v in enumerate(svc.spec.volumes or [])]
    drop = previous | {v.name for v in ours}
    tpl.volumes = [v for v in tpl.volumes if v.name not in drop] + ours
    container.volume_mounts = [
        run_v2.VolumeMount(name=v.name, mount_path=v.mount_path) for v in svc.spec.volumes or []
    ]


def _volumes_view(tpl: run_v2.RevisionTemplate, container: Any) -> dict[str, Any]:
    mounted = {m.name for m in container.volume_mounts}
    return {
        "mounts": sorted((m.name, m.mount_path) for m in container.volume_mounts),
        "volumes": sorted(
            (v.name, v.secret.secret, tuple((i.path, i.version) for i in v.secret.items))
            for v in tpl.volumes
            if v.name in mounted
        ),
    }


def secret_references(svc: XynergyService) -> list[tuple[str, str]]:
    """The distinct (secret, version) pairs the env reads, sorted; StalledError naming the
    field for a reference Cloud Run cannot take."""
    refs = {
        _secret_ref(i, var)
        for i, var in enumerate(svc.spec.env or [])
        if var.secret_key_ref is not None
    }
    return sorted(refs)


def _pinned(existing: Sequence[run_v2.EnvVar]) -> dict[tuple[str, str], str]:
    """(variable, secret) -> the version an existing template pins."""
    return {
        (e.name, e.value_source.secret_key_ref.secret): e.value_source.secret_key_ref.version
        for e in existing
        if e.value_source.secret_key_ref.secret
    }


def _env(
    svc: XynergyService,
    existing: Sequence[run_v2.EnvVar],
    versions: Mapping[tuple[str, str], str] | None,
) -> list[run_v2.EnvVar]:
    """Literal values, and Secret Manager versions for secretKeyRef: the resolved version from
    `versions`; without them (a caller that does not resolve) `latest` keeps the version the
    existing template pins, so it makes no new revision on its own."""
    env: list[run_v2.EnvVar] = []
    pinned = _pinned(existing)
    for i, var in enumerate(svc.spec.env or []):
        if var.name in CLOUD_RUN_RESERVED_ENV:
            raise StalledError(
                f"spec.env[{i}] (variable {var.name}): Cloud Run sets "
                f"{', '.join(CLOUD_RUN_RESERVED_ENV)} in every container itself (PORT to "
                f"spec.port, {svc.spec.port}) and refuses a revision that sets one; remove it",
                reason="UnsupportedEnv",
            )
        if var.config_map_key_ref is not None:
            raise StalledError(
                f"spec.env[{i}].configMapKeyRef (variable {var.name}): Kubernetes ConfigMaps "
                "are not visible to Cloud Run; use a literal value, or a Secret Manager secret "
                "through secretKeyRef (name: the secret, key: its version)",
                reason="UnsupportedEnv",
            )
        if var.secret_key_ref is None:
            env.append(run_v2.EnvVar(name=var.name, value=var.value or ""))
            continue
        secret, version = _secret_ref(i, var)
        if versions is not None:
            version = versions.get((secret, version), version)
        elif version == "latest":
            version = pinned.get((var.name, secret), version)
        selector = run_v2.SecretKeySelector(secret=secret, version=version)
        source = run_v2.EnvVarSource(secret_key_ref=selector)
        env.append(run_v2.EnvVar(name=var.name, value_source=source))
    return env


def rotated_secrets(existing: run_v2.Service, desired: run_v2.Service) -> list[str]:
    """`Secret Manager secret <id>` for each variable whose secret stays but whose version
    moves from `existing` to `desired` (names only, sorted)."""
    if not existing.template.containers or not desired.template.containers:
        return []
    before = _pinned(existing.template.containers[0].env)
    after = _pinned(desired.template.containers[0].env)
    moved = {key[1] for key, version in after.items() if key in before and before[key] != version}
    return [f"Secret Manager secret {secret}" for secret in sorted(moved)]


def _container(
    svc: XynergyService,
    tpl: run_v2.RevisionTemplate,
    *,
    gen1: bool,
    versions: Mapping[tuple[str, str], str] | None,
) -> Any:
    spec = svc.spec
    sizing = spec.sizing()
    container = run_v2.Container(tpl.containers[0]) if tpl.containers else run_v2.Container()
    container.image = spec.image
    container.command = list(spec.command or [])
    container.args = list(spec.args or [])
    container.env = _env(svc, list(container.env), versions)
    container.ports = [run_v2.ContainerPort(name=PORT_NAME, container_port=spec.port)]
    limits = dict(container.resources.limits)
    limits["cpu"] = _cloud_run_cpu(svc, cpu=sizing.cpu, concurrency=sizing.concurrency, gen1=gen1)
    limits["memory"] = sizing.memory
    container.resources.limits = limits
    if spec.health_check is not None:
        hc = spec.health_check
        container.startup_probe = run_v2.Probe(
            http_get=run_v2.HTTPGetAction(path=hc.path, port=spec.port),
            period_seconds=hc.period_seconds,
            timeout_seconds=hc.timeout_seconds,
            failure_threshold=hc.failure_threshold,
        )
    return container


def desired_service(
    svc: XynergyService,
    existing: run_v2.Service | None,
    *,
    versions: Mapping[tuple[str, str], str] | None = None,
) -> run_v2.Service:
    """The service to write: `existing` (or a new one) with the managed fields overlaid.

    The template's revision name is left as in `existing` (`plan` names new revisions).
    `versions` maps each (secret, version) of `secret_references` to the version it resolved
    to (`latest` -> `7`). Raises StalledError for specs Cloud Run cannot express.
    """
    spec = svc.spec
    cloud_run = spec.cloud_run
    if cloud_run is None:
        raise StalledError("spec.cloudRun (project, region) is required", reason="InvalidSpec")
    sizing = spec.sizing()
    out = run_v2.Service(existing) if existing is not None else run_v2.Service()
    out.labels[MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    out.annotations[OWNER_ANNOTATION] = owner_of(svc)
    out.ingress = getattr(run_v2.IngressTraffic, _INGRESS[cloud_run.ingress])
    if cloud_run.invoker_iam_check is not None:
        out.invoker_iam_disabled = not cloud_run.invoker_iam_check
    out.launch_stage = _LAUNCH_STAGE[cloud_run.launch_stage]
    out.scaling.min_instance_count = sizing.replicas if spec.replicas is not None else 0

    tpl = out.template
    tpl.max_instance_request_concurrency = sizing.concurrency
    tpl.scaling.min_instance_count = sizing.min_instances
    tpl.scaling.max_instance_count = sizing.max_instances
    tpl.execution_environment = getattr(
        run_v2.ExecutionEnvironment, _EXECUTION_ENVIRONMENT[cloud_run.execution_environment]
    )
    if cloud_run.service_account:
        tpl.service_account = cloud_run.service_account
    if cloud_run.vpc_connector:
        tpl.vpc_access.connector = cloud_run.vpc_connector
    else:
        tpl.vpc_access = run_v2.VpcAccess()
    gen1 = cloud_run.execution_environment == "gen1"
    previous = {m.name for m in tpl.containers[0].volume_mounts} if tpl.containers else set()
    container = _container(svc, tpl, gen1=gen1, versions=versions)
    _overlay_volumes(svc, tpl, container, previous)
    tpl.containers = [container, *tpl.containers[1:]]
    return out


def managed_view(service: run_v2.Service, svc: XynergyService) -> dict[str, Any]:
    """The fields of `service` this object manages, normalised, for comparison.

    Server defaults we do not manage (default service account, default startup probe, timeout,
    other labels) are excluded, so a service the API has filled in compares equal to the desired
    one. Quantities compare by value (`apis.quantity`). The revision name is not part of it.
    """
    tpl = service.template
    container = tpl.containers[0] if tpl.containers else run_v2.Container()
    limits = container.resources.limits
    cloud_run = svc.spec.cloud_run
    view: dict[str, Any] = {
        "label": service.labels.get(MANAGED_BY_LABEL),
        "owner": service.annotations.get(OWNER_ANNOTATION),
        "ingress": int(service.ingress),
        "launch_stage": int(service.launch_stage),
        "service_min": service.scaling.min_instance_count,
        "template": {
            "image": container.image,
            "command": list(container.command),
            "args": list(container.args),
            "env": [
                (
                    e.name,
                    e.value,
                    e.value_source.secret_key_ref.secret,
                    e.value_source.secret_key_ref.version,
                )
                for e in container.env
            ],
            "ports": [(p.name or PORT_NAME, p.container_port) for p in container.ports],
            "cpu": _quantity_view(limits.get("cpu", "")),
            "memory": _quantity_view(limits.get("memory", "")),
            "concurrency": tpl.max_instance_request_concurrency,
            "min": tpl.scaling.min_instance_count,
            "max": tpl.scaling.max_instance_count,
            "execution_environment": int(tpl.execution_environment),
            "vpc_connector": tpl.vpc_access.connector,
            **_volumes_view(tpl, container),
        },
    }
    if cloud_run is not None and cloud_run.service_account:
        view["template"]["service_account"] = tpl.service_account
    if cloud_run is not None and cloud_run.invoker_iam_check is not None:
        view["invoker_iam_disabled"] = bool(service.invoker_iam_disabled)
    if svc.spec.health_check is not None:
        probe = container.startup_probe
        view["template"]["probe"] = (
            probe.http_get.path,
            probe.http_get.port,
            probe.period_seconds,
            probe.timeout_seconds,
            probe.failure_threshold,
        )
    return view


def check_owner(existing: run_v2.Service, svc: XynergyService) -> None:
    """StalledError unless `existing` is owned by this object (with how to adopt it)."""
    owner = existing.annotations.get(OWNER_ANNOTATION)
    if owner == owner_of(svc):
        return
    name = existing.name.rpartition("/")[2]
    if owner:
        message = f"Cloud Run service {name} is managed by XynergyService {owner}"
    else:
        message = (
            f"Cloud Run service {name} already exists and is not managed by Xynergy; delete "
            f"it, or adopt it by setting the annotation {OWNER_ANNOTATION}={owner_of(svc)} "
            "on the Cloud Run service"
        )
    raise StalledError(message, reason="AlreadyExists")


def plan(
    svc: XynergyService,
    existing: run_v2.Service | None,
    *,
    versions: Mapping[tuple[str, str], str] | None = None,
) -> tuple[run_v2.Service, str | None] | None:
    """What to write over `existing`: None when the managed fields already match, else the
    desired service and the name its new revision should get (None: the template is the same,
    no new revision; a rotated secret version changes the template). StalledError when
    `existing` is not ours."""
    if existing is None:
        created = desired_service(svc, None, versions=versions)
        return created, revision_name(svc)
    check_owner(existing, svc)
    desired = desired_service(svc, existing, versions=versions)
    current_view = managed_view(existing, svc)
    desired_view = managed_view(desired, svc)
    if current_view == desired_view:
        return None
    template_changed = current_view["template"] != desired_view["template"]
    return desired, revision_name(svc) if template_changed else None


def released(existing: run_v2.Service) -> run_v2.Service:
    """`existing` without our label and owner annotation (deletionPolicy Orphan)."""
    out = run_v2.Service(existing)
    out.labels.pop(MANAGED_BY_LABEL, None)
    out.annotations.pop(OWNER_ANNOTATION, None)
    return out


def owned(existing: run_v2.Service, svc: XynergyService) -> bool:
    """True when this object owns `existing`."""
    return existing.annotations.get(OWNER_ANNOTATION) == owner_of(svc)
