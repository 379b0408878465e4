"""Pure builders of a XynergyService's children, one module per backend: `kubernetes`
(Deployment + Service dicts) and `cloudrun` (a run_v2.Service, imported only where Cloud Run is
used), and `naming` (the one revision-name format, labels, selectors)."""

from controllers.xynergyservice.resources.kubernetes import (
    build_deployment,
    build_service,
    owner_reference,
    service_url,
)
from controllers.xynergyservice.resources.naming import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OWNED_SELECTOR,
    REVISION_ANNOTATION,
    SERVICE_LABEL,
    revision_name,
    selector,
    selector_string,
)

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "OWNED_SELECTOR",
    "REVISION_ANNOTATION",
    "SERVICE_LABEL",
    "build_deployment",
    "build_service",
    "owner_reference",
    "revision_name",
    "selector",
    "selector_string",
    "service_url",
]
