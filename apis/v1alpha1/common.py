"""Types shared by the v1alpha1 kinds: references, selectors, the resource envelope and the
CRD facts (names, printer columns, subresources) that crdgen turns into YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, Field
from pydantic.config import JsonDict

from apis.base import DNS_LABEL, DNS_SUBDOMAIN, KubeModel, ObjectMeta, SpecModel, cel

__all__ = [
    "API_VERSION",
    "CATEGORY",
    "GROUP",
    "LABEL_VALUE_MAX",
    "VERSION",
    "ConfigMapKeySelector",
    "CrdInfo",
    "NameLimit",
    "PrinterColumn",
    "Resource",
    "SecretKeySelector",
    "TargetRef",
    "conditions_field",
    "name_refusal",
    "on_create",
    "ready_columns",
]

GROUP = "xynergy.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "xynergy"
LABEL_VALUE_MAX = 63
"""The longest label value (and DNS label, so Service name) Kubernetes accepts."""


def on_create(rule: str, message: str) -> JsonDict:
    """A CEL rule at a CRD's root checked when an object is created, never on an update
    (`oldSelf` is empty only then): a rule on metadata.name, which cannot change, would
    otherwise make an object stored before the rule unupdatable, down to the removal of
    its finalizers (the apiserver ratchets a rule only where its value is unchanged, and at
    the root it is the whole object). Needs CRD validation ratcheting's optionalOldSelf, on
    by default since Kubernetes 1.30."""
    return cel(f"oldSelf.hasValue() || ({rule})", message, optional_old_self=True)


def name_refusal(message: str, name: str) -> str:
    """A name rule's message, then the name: what the operator stalls an object stored
    before the rule with (InvalidName), as the CRD refuses a new one."""
    return f"{message}; it is {name!r} ({len(name)} characters)"


@dataclass(frozen=True)
class NameLimit:
    """The longest metadata.name a kind's children can carry: the CRD's rule at creation
    (`rule`) and the same check for an object stored before it (`problem`)."""

    limit: int
    message: str

    @property
    def rule(self) -> JsonDict:
        return on_create(f"self.metadata.name.size() <= {self.limit}", self.message)

    def problem(self, name: str) -> str | None:
        """`name_refusal` when `name` is too long, else None."""
        return name_refusal(self.message, name) if len(name) > self.limit else None


class TargetRef(SpecModel):
    """A XynergyService in the same namespace."""

    kind: str = Field(default="XynergyService", pattern=r"^XynergyService$")
    """Kind of the target; only XynergyService is supported."""
    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """Name of the XynergyService in this namespace."""


class SecretKeySelector(SpecModel):
    """A key of a Secret in the same namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the Secret."""
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key within the Secret."""
    optional: bool = False
    """When true, a missing Secret or key is not an error."""


class ConfigMapKeySelector(SpecModel):
    """A key of a ConfigMap in the same namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """Name of the ConfigMap."""
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key within the ConfigMap."""
    optional: bool = False
    """When true, a missing ConfigMap or key is not an error."""


def conditions_field() -> Any:
    """The `status.conditions` field: a list keyed by type, at most 16 entries."""
    return Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=BaseModel)


class Resource(KubeModel, Generic[SpecT, StatusT]):
    """The envelope every kind shares: apiVersion, kind, metadata, spec, status."""

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SpecT
    status: StatusT | None = None

    crd: ClassVar[CrdInfo]

    def to_manifest(self) -> dict[str, Any]:
        """As YAML/JSON for the apiserver (camelCase, no nulls)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


def ready_columns() -> list[PrinterColumn]:
    """Ready and Reason columns from the Ready condition, as Knative and Flux show them."""
    return [
        PrinterColumn(
            "Ready",
            '.status.conditions[?(@.type=="Ready")].status',
            description="Whether the object is Ready",
        ),
        PrinterColumn(
            "Reason",
            '.status.conditions[?(@.type=="Ready")].reason',
            description="Why it is (not) Ready",
        ),
    ]


@dataclass(frozen=True)
class CrdInfo:
    """What crdgen needs beyond the models to write a CustomResourceDefinition."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    printer_columns: tuple[PrinterColumn, ...]
    scale: dict[str, str] | None = None
    description: str = ""
    categories: tuple[str, ...] = field(default=(CATEGORY,))
    validations: tuple[JsonDict, ...] = ()
    """CEL rules on the whole object, e.g. on metadata.name (`on_create`)."""
    selectable_fields: tuple[str, ...] = ()
    """JSON paths a list may select on server-side (a field selector; the CRD's
    selectableFields: Kubernetes 1.31 on by default, GA in 1.32)."""

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"
