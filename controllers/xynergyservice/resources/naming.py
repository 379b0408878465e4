"""Names the XynergyService gives its children (pure): one revision-name format for every
backend, labels and selectors."""

from __future__ import annotations

from apis.v1alpha1.xynergyservice import XynergyService, name_problem
from controllers.core.errors import StalledError

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "OWNED_SELECTOR",
    "POD_REVISION_ANNOTATION",
    "REVISION_ANNOTATION",
    "SERVICE_LABEL",
    "TEMPLATE_ANNOTATION",
    "check_name",
    "name_of",
    "revision_name",
    "selector",
    "selector_string",
]

MANAGED_BY = "xynergy"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# What the operator watches its children by (a server-side label selector).
OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
SERVICE_LABEL = "xynergy.io/service"
REVISION_ANNOTATION = "xynergy.io/revision"
POD_REVISION_ANNOTATION = REVISION_ANNOTATION
"""On the Pods (their template): the revision they run, which their K_REVISION reads. An
annotation, not a label: a label value has at most 63 characters, a XynergyService's name
can have 63 and its revision 6 more."""
TEMPLATE_ANNOTATION = "xynergy.io/template"
"""On the Deployment: the digest of the Pod spec its revision runs (what makes a new revision;
`kubernetes.template_digest`)."""


def name_of(svc: XynergyService) -> str:
    """metadata.name (the apiserver always sets it)."""
    assert svc.metadata.name, "metadata.name is required"
    return svc.metadata.name


def check_name(svc: XynergyService) -> None:
    """StalledError `InvalidName` when the children cannot be named after metadata.name (too
    long, or not a DNS-1035 label): an object stored before the CRD refused such names at
    creation says so, with the rule the CRD has, instead of failing on a child's apply."""
    problem = name_problem(name_of(svc), svc.spec.backend)
    if problem is not None:
        raise StalledError(problem, reason="InvalidName")


def revision_name(svc: XynergyService) -> str:
    """The revision of the spec generation, `crm-00003` (Knative's format), on every backend.

    A backend names a new revision so only when what its instances run changed: a change of
    the instance count alone (`kubectl scale`, an HPA, a ScalingPolicy) also moves the
    generation, and keeps the revision serving. At most 49 + 6 characters for a Cloud Run
    service name (< 63, a DNS label)."""
    return f"{name_of(svc)}-{svc.metadata.generation or 0:05d}"


def selector(svc: XynergyService) -> dict[str, str]:
    """Labels that select the service's Pods."""
    return {SERVICE_LABEL: name_of(svc)}


def selector_string(svc: XynergyService) -> str:
    """The selector as a label-selector string (for the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in selector(svc).items())
