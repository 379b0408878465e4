"""Pure: the Secrets and ConfigMaps a XynergyService reads its env from, and digests of the
referenced data, so a changed value changes the Pod template and the Deployment rolls.

Only digests ever leave this module, never values: an HMAC-SHA256 of the referenced keys as
the apiserver stores them, keyed with the XynergyService's uid (so a digest cannot be looked up
in a table precomputed for another object), cut to 16 hex digits. The Pod template carries the
digest of all sources (`xynergy.io/config-hash`); the Deployment carries one digest per source
(`xynergy.io/config-sources`), from which the next converge tells which Secret or ConfigMap
changed and names it (name only) in an Event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from apis.v1alpha1.xynergyservice import XynergyService

__all__ = [
    "CONFIG_HASH_ANNOTATION",
    "CONFIG_SOURCES_ANNOTATION",
    "SOURCE_LABEL",
    "WATCHED_KINDS",
    "Source",
    "changed_sources",
    "config_hash",
    "digest",
    "format_sources",
    "parse_sources",
    "references",
    "sources_of",
]

CONFIG_HASH_ANNOTATION = "xynergy.io/config-hash"
"""On the Pod template: the digest of every referenced Secret/ConfigMap key."""
CONFIG_SOURCES_ANNOTATION = "xynergy.io/config-sources"
"""On the Deployment: `Kind/name=digest` per source, comma-separated."""
SOURCE_LABEL = "xynergy.io/env-source"
"""Put by the operator on a Secret/ConfigMap a XynergyService reads: the operator watches
objects with this label (a server-side selector), never the cluster's others."""

SourceKind = Literal["Secret", "ConfigMap"]
WATCHED_KINDS: tuple[SourceKind, ...] = ("Secret", "ConfigMap")
"""What the operator labels and watches (controllers/rbac.py grants list, watch and patch on
both), so a change to either rolls at once rather than at the service's next check."""


@dataclass(frozen=True)
class Source:
    """One Secret or ConfigMap a service reads, the keys it reads, and whether it may be
    missing (every reference to it optional)."""

    kind: SourceKind
    name: str
    keys: tuple[str, ...]
    optional: bool

    @property
    def id(self) -> str:
        """`Secret/name`: how the source is named in annotations and Events."""
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Reference:
    """One env entry's reference: where in the spec, and what it points at."""

    index: int
    variable: str
    kind: SourceKind
    name: str
    key: str
    optional: bool

    @property
    def field(self) -> str:
        return "secretKeyRef" if self.kind == "Secret" else "configMapKeyRef"


def references(svc: XynergyService) -> list[Reference]:
    """Every secretKeyRef/configMapKeyRef of `spec.env`, in spec order. `spec.volumes` are not
    references: the kubelet updates a mounted Secret's files in place, and hashing it would
    roll the Pods on every rotation."""
    out: list[Reference] = []
    for i, var in enumerate(svc.spec.env or []):
        if var.secret_key_ref is not None:
            ref = var.secret_key_ref
            out.append(Reference(i, var.name, "Secret", ref.name, ref.key, ref.optional))
        elif var.config_map_key_ref is not None:
            cref = var.config_map_key_ref
            out.append(Reference(i, var.name, "ConfigMap", cref.name, cref.key, cref.optional))
    return out


def sources_of(refs: Iterable[Reference]) -> list[Source]:
    """The distinct objects `refs` read (sorted by id), each with the keys read from it."""
    keys: dict[tuple[SourceKind, str], set[str]] = {}
    optional: dict[tuple[SourceKind, str], bool] = {}
    for ref in refs:
        at = (ref.kind, ref.name)
        keys.setdefault(at, set()).add(ref.key)
        optional[at] = optional.get(at, True) and ref.optional
    return [
        Source(kind, name, tuple(sorted(keys[kind, name])), optional[kind, name])
        for kind, name in sorted(keys, key=lambda at: f"{at[0]}/{at[1]}")
    ]


def digest(source: Source, obj: Mapping[str, Any] | None, *, salt: str) -> str:
    """16 hex digits that change when a referenced key of `obj` (None: absent) changes; keys
    the service does not read, labels and annotations do not move it."""
    data = (obj or {}).get("data") or {}
    binary = (obj or {}).get("binaryData") or {}
    values = {key: data.get(key, binary.get(key)) for key in source.keys}
    message = json.dumps([source.id, obj is not None, values], sort_keys=True)
    return hmac.new(salt.encode(), message.encode(), hashlib.sha256).hexdigest()[:16]


def config_hash(digests: Mapping[str, str]) -> str:
    """The digest of all sources (what the Pod template carries)."""
    joined = format_sources(digests).encode()
    return hashlib.sha256(joined).hexdigest()[:16]


def format_sources(digests: Mapping[str, str]) -> str:
    """`ConfigMap/a=0123...,Secret/b=4567...` (sorted)."""
    return ",".join(f"{sid}={value}" for sid, value in sorted(digests.items()))


def parse_sources(text: str | None) -> dict[str, str]:
    """The inverse of `format_sources`; anything malformed is left out."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        sid, sep, value = item.partition("=")
        if sep and sid and value:
            out[sid] = value
    return out


def changed_sources(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Ids of the sources read both before and after whose digest moved (sorted); a source
    added or dropped by a spec change is a spec change, not a rotation."""
    return sorted(sid for sid, value in after.items() if sid in before and before[sid] != value)
