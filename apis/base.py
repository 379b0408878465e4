"""Base models and field types shared by every kind.

Specs forbid unknown fields; every field's docstring becomes its CRD description (what
`kubectl explain` prints). Field types here carry both the Python validation and the exact
OpenAPI the apiserver enforces, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from apis.quantity import parse_quantity

__all__ = [
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "IMAGE_REFERENCE",
    "Duration",
    "ImageReference",
    "IntOrPercent",
    "KubeModel",
    "ObjectMeta",
    "PositiveDuration",
    "Quantity",
    "SpecModel",
    "StatusModel",
    "cel",
    "duration_at_least",
    "is_zero",
    "parse_duration",
    "validations",
]

_DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _image_reference_pattern() -> str:
    """distribution/reference's grammar: `[host[:port]/]path[:tag][@algorithm:hex]`.

    Written for both Python `re` and RE2 (CEL): no `\\w` (Unicode in Python), no lookarounds.
    """
    alnum = "[a-z0-9]+"
    component = f"{alnum}(?:(?:[._]|__|-+){alnum})*"  # lowercase path component
    label = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    host = f"(?:{label}(?:\\.{label})*|\\[[a-fA-F0-9:]+\\])"
    tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
    digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
    return f"^(?:{host}(?::[0-9]+)?/)?{component}(?:/{component})*(?::{tag})?(?:@{digest})?$"


IMAGE_REFERENCE = _image_reference_pattern()
_IMAGE_RE = re.compile(IMAGE_REFERENCE)
_IMAGE_EXPECTED = (
    "must be an image reference [registry[:port]/]path[:tag][@digest] with a lowercase path,"
    " e.g. ghcr.io/acme/crm:1.2.3, localhost:5000/crm or nginx@sha256:<64 hex digits>"
)


def cel(
    rule: str, message: str, *, field_path: str | None = None, optional_old_self: bool = False
) -> JsonDict:
    """One `x-kubernetes-validations` entry (a CEL rule the apiserver evaluates).
    `optional_old_self`: `oldSelf` is an optional, empty on create, so a rule can be for
    creation only (`oldSelf.hasValue() || ...`)."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if optional_old_self:
        entry["optionalOldSelf"] = True
    return entry


def validations(*rules: JsonDict) -> JsonDict:
    """`json_schema_extra` carrying CEL rules for a model (cross-field constraints)."""
    return {"x-kubernetes-validations": list(rules)}


def parse_duration(value: str) -> float:
    """Seconds in a Go-style duration such as `90s`, `5m`, `1h30m` or `250ms`."""
    if not _DURATION_RE.fullmatch(value):
        raise ValueError(f"invalid duration {value!r}: expected e.g. 30s, 5m, 1h30m, 250ms")
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(value))


def _check_quantity(value: int | str) -> int | str:
    if parse_quantity(value) < 0:
        raise ValueError(f"invalid quantity {value!r}: expected a quantity of at least 0")
    return value


_DURATION_EXPECTED = "must be a duration such as 30s or 5m"
_POSITIVE_EXPECTED = "must be a duration longer than 0s, such as 30s or 5m"


def _duration_schema(rule: str, message: str) -> JsonDict:
    return {
        "type": "string",
        "maxLength": 32,
        "pattern": _DURATION_RE.pattern,
        "x-kubernetes-validations": [cel(f"duration(self) {rule} duration('0s')", message)],
    }


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


def _check_positive_duration(value: str) -> str:
    if parse_duration(value) < 1e-9:  # Go drops fractions of a nanosecond
        raise ValueError(f"invalid duration {value!r}: {_POSITIVE_EXPECTED}")
    return value


Duration = Annotated[
    str, AfterValidator(_check_duration), WithJsonSchema(_duration_schema(">=", _DURATION_EXPECTED))
]
"""A Go-style duration: digits with units h, m, s or ms (e.g. `30s`, `5m`, `1h30m`)."""

PositiveDuration = Annotated[
    str,
    AfterValidator(_check_positive_duration),
    WithJsonSchema(_duration_schema(">", _POSITIVE_EXPECTED)),
]
"""A Duration longer than zero (intervals and windows: `0s` would mean a hot loop or nothing)."""


def duration_at_least(minimum: str, expected: str) -> tuple[AfterValidator, WithJsonSchema]:
    """The metadata of a Duration of at least `minimum` (e.g. `1s`), refused with `expected`
    (which names the field) by the model and by the CRD's CEL rule alike:
    `Annotated[str, *duration_at_least("1s", "spec.x must be ...")]`."""
    floor = parse_duration(minimum)

    def check(value: str) -> str:
        if parse_duration(value) < floor:
            raise ValueError(f"invalid duration {value!r}: {expected}")
        return value

    schema = _duration_schema(">", _POSITIVE_EXPECTED)
    schema["x-kubernetes-validations"] = [cel(f"duration(self) >= duration('{minimum}')", expected)]
    return AfterValidator(check), WithJsonSchema(schema)


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-validations": [
                cel(
                    "type(self) == int ? int(self) >= 0 : isQuantity(string(self))"
                    " && !quantity(string(self)).isLessThan(quantity('0'))",
                    "must be a non-negative Kubernetes quantity such as 500m, 2, 512Mi or 4Gi",
                )
            ],
        }
    ),
]
"""A non-negative Kubernetes resource quantity (integer or string such as `500m`, `1Gi`).

Parsed by `apis.quantity.parse_quantity`; read values through it, never by hand."""


def _check_image(value: str) -> str:
    if not _IMAGE_RE.fullmatch(value):
        raise ValueError(f"invalid image {value!r}: {_IMAGE_EXPECTED}")
    return value


ImageReference = Annotated[
    str,
    AfterValidator(_check_image),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 1024,
            "x-kubernetes-validations": [
                cel(f"self.matches(r'{IMAGE_REFERENCE}')", _IMAGE_EXPECTED)
            ],
        }
    ),
]
"""A container image reference as `docker pull` accepts it (distribution/reference grammar)."""


def _check_int_or_percent(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        return value
    if not re.fullmatch(r"[0-9]+%", value):
        raise ValueError(
            f"invalid value {value!r}: expected a count such as 1 or a percent such as 25%"
        )
    return value


IntOrPercent = Annotated[
    int | str,
    AfterValidator(_check_int_or_percent),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-validations": [
                cel(
                    "type(self) == int ? int(self) >= 0 : string(self).matches('^[0-9]+%$')",
                    "must be a count such as 1 or a percent such as 25%",
                )
            ],
        }
    ),
]
"""A non-negative count or a percent such as `25%` (like maxSurge in a Deployment)."""


def is_zero(value: int | str) -> bool:
    """An IntOrPercent that is nothing: 0, `0%` (or `00%`)."""
    return str(value).rstrip("%").lstrip("0") == ""


class KubeModel(BaseModel):
    """camelCase on the wire, snake_case in Python, docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        validate_default=False,
    )


class SpecModel(KubeModel):
    """Desired state: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


class StatusModel(KubeModel):
    """Observed state, written by the controller; tolerant of fields it does not know."""

    model_config = ConfigDict(extra="ignore")


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta the controllers read; other keys are kept as they are."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    def dump(self) -> dict[str, Any]:
        """As the apiserver spells it, without empty keys."""
        return self.model_dump(by_alias=True, exclude_none=True)
