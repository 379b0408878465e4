"""The route table: which upstream serves a path, and how paths are normalised.

Pure data and lookups, no I/O. A :class:`Route` maps a prefix (and its aliases) to an upstream
base URL. Every ``/api/v2/...`` path is also reachable as ``/api/xynergyos/v2/...``. Lookups
walk the path's segments from longest to shortest against a dict, so the cost does not grow
with the number of routes. Aliases are rewritten to the route's own prefix, so an upstream only
ever sees its canonical paths.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import ValidationError

from apis.v1alpha1.xynergyservice import Route as ApiRoute

__all__ = [
    "XYNERGYOS_PREFIX",
    "Match",
    "PathError",
    "Route",
    "RouteSource",
    "RouteTable",
    "normalise_path",
    "routes_from_spec",
]

log = logging.getLogger("xynergy.gateway.routing")

XYNERGYOS_PREFIX = "/api/xynergyos/v2/"
_V2_PREFIX = "/api/v2/"


class PathError(ValueError):
    """A request path that cannot be routed safely (``..`` escapes, NUL bytes...)."""


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    upstream: str
    service: str = ""
    aliases: tuple[str, ...] = ()
    timeout_seconds: float | None = None
    rate_limit_per_minute: int | None = None

    def __post_init__(self) -> None:
        for p in (self.prefix, *self.aliases):
            if not p.startswith("/") or p.endswith("/") or p != normalise_path(p):
                raise ValueError(
                    f"route prefix {p!r} must be a normalised path without '/' at the end"
                )
        if not self.upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream {self.upstream!r} must be an http(s) URL")
        object.__setattr__(self, "upstream", self.upstream.rstrip("/"))


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    upstream_path: str
    """The path sent upstream: the canonical prefix plus the rest of the request path."""
    resource: str
    """The route prefix plus the first segment after it: the unit of cache invalidation."""


def normalise_path(path: str) -> str:
    """Collapse ``//``, resolve ``.`` and ``..``; refuse escapes above the root and NULs."""
    if "\x00" in path or not path.startswith("/"):
        raise PathError("invalid path")
    depth = 0
    for seg in path.split("/"):
        if seg == "..":
            depth -= 1
            if depth < 0:
                raise PathError("path escapes the root")
        elif seg and seg != ".":
            depth += 1
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if path.endswith("/") and norm != "/":
        norm += "/"
    return norm


@dataclass
class RouteTable:
    routes: tuple[Route, ...] = ()
    _by_prefix: dict[str, tuple[Route, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, routes: Iterable[Route]) -> RouteTable:
        """A table from routes; on a duplicate prefix the first route (in order) wins."""
        table = cls(routes=tuple(routes))
        for route in table.routes:
            for prefix in (route.prefix, *route.aliases):
                if prefix in table._by_prefix:
                    log.warning(
                        "duplicate route prefix ignored",
                        extra={"fields": {"prefix": prefix, "service": route.service}},
                    )
                    continue
                table._by_prefix[prefix] = (route, prefix)
        return table

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, path: str) -> Match | None:
        """The route serving ``path`` (already normalised), or None."""
        if path.startswith(XYNERGYOS_PREFIX):
            path = _V2_PREFIX + path[len(XYNERGYOS_PREFIX) :]
        candidate = path.rstrip("/") or "/"
        while candidate:
            hit = self._by_prefix.get(candidate)
            if hit is not None:
                route, matched = hit
                rest = path[len(matched) :]
                first = rest.lstrip("/").split("/", 1)[0]
                resource = route.prefix + ("/" + first if first else "")
                return Match(route=route, upstream_path=route.prefix + rest, resource=resource)
            cut = candidate.rfind("/")
            if cut <= 0:
                return None
            candidate = candidate[:cut]
        return None


class RouteSource(Protocol):
    """Where the route table comes from. ``watch`` yields a full table on every change."""

    def watch(self) -> AsyncIterator[RouteTable]: ...


def routes_from_spec(*, service: str, upstream: str | None, routes: object) -> list[Route]:
    """Routes of one service from its ``spec.routes``, read through the API model
    (:class:`apis.v1alpha1.xynergyservice.Route`, the one definition of the shape).

    A service without an upstream URL yet (no ``status.url``) contributes no routes. Entries the
    model refuses are skipped and logged, so one bad object cannot empty the whole table. A
    timeout the entry does not set is left to the gateway's default.
    """
    if not upstream or not isinstance(routes, list):
        return []
    out: list[Route] = []
    for entry in routes:
        try:
            spec = ApiRoute.model_validate(entry)
            explicit = "timeout_seconds" in spec.model_fields_set
            out.append(
                Route(
                    prefix=spec.prefix,
                    upstream=upstream,
                    service=service,
                    aliases=tuple(spec.aliases or ()),
                    timeout_seconds=float(spec.timeout_seconds) if explicit else None,
                    rate_limit_per_minute=spec.rate_limit_per_minute,
                )
            )
        except (ValidationError, ValueError) as exc:  # PathError is a ValueError
            log.warning(
                "invalid route skipped",
                extra={"fields": {"service": service, "error": _first_error(exc)}},
            )
    return out


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "route"
        return f"{where}: {first['msg']}"
    return str(exc)
