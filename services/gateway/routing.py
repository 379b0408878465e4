"""The route table: which upstream serves a path, and how paths are normalised.

Pure data and lookups, no I/O. A :class:`Route` maps a prefix (and its aliases) to an upstream
base URL. Every ``/api/v2/...`` path is also reachable as ``/api/xynergyos/v2/...``. Lookups
walk the path's segments from longest to shortest against a dict, so the cost does not grow
with the number of routes. Aliases are rewritten to the route's own prefix, so an upstream only
ever sees its canonical paths.

A route may have weighted upstreams (a Rollout's stable and canary revisions): each request
picks one in proportion to the weights, or, when the route is sticky and the caller gives a
key (the user's identity), by a hash of the key, so a user stays on one revision while the
weights hold (and moves at most once as the canary's weight grows). The revision picked for the
current request is kept in a context variable (:func:`chosen_revision`), which is how the
metrics label a request by its upstream revision.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import posixpath
import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
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
    "Upstream",
    "chosen_revision",
    "normalise_path",
    "routes_from_spec",
]

log = logging.getLogger("xynergy.gateway.routing")

XYNERGYOS_PREFIX = "/api/xynergyos/v2/"
_V2_PREFIX = "/api/v2/"


_CHOSEN: ContextVar[str] = ContextVar("xynergy_gateway_revision", default="")


def chosen_revision() -> str:
    """The upstream revision the current request was routed to ("" for a plain route)."""
    return _CHOSEN.get()


class PathError(ValueError):
    """A request path that cannot be routed safely (``..`` escapes, NUL bytes...)."""


def _check_url(url: str, what: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{what} {url!r} must be an http(s) URL")
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Upstream:
    """One weighted upstream of a route: a revision's URL and its share of the requests."""

    url: str
    weight: int
    revision: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _check_url(self.url, "upstream url"))
        if self.weight < 0:
            raise ValueError(f"upstream weight must be >= 0, got {self.weight}")


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    upstream: str
    service: str = ""
    aliases: tuple[str, ...] = ()
    timeout_seconds: float | None = None
    rate_limit_per_minute: int | None = None
    revision: str = ""
    """The revision ``upstream`` serves (labels the metrics; "" when not known)."""
    upstreams: tuple[Upstream, ...] = ()
    """Weighted upstreams; when set, each request goes to one of them (``upstream`` is the
    heaviest, for display)."""
    sticky: bool = False
    """With ``upstreams``: pick by a hash of the caller's key when one is given."""
    public: bool = False
    """No token needed (the API's ``spec.routes[].public``): limited per address, never cached,
    and no identity is forwarded."""

    def __post_init__(self) -> None:
        for p in (self.prefix, *self.aliases):
            if not p.startswith("/") or p.endswith("/") or p != normalise_path(p):
                raise ValueError(
                    f"route prefix {p!r} must be a normalised path without '/' at the end"
                )
        object.__setattr__(self, "upstream", _check_url(self.upstream, "upstream"))
        if self.upstreams and sum(u.weight for u in self.upstreams) <= 0:
            raise ValueError(f"route {self.prefix!r}: upstream weights must add up to more than 0")


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


def _hash_point(key: str, prefix: str) -> float:
    """A stable point in [0, 1) for ``key`` on route ``prefix``."""
    digest = hashlib.blake2b(f"{prefix}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class _Choice:
    """A weighted route's upstreams as routes of their own, with cumulative weights."""

    bounds: tuple[int, ...]
    variants: tuple[Route, ...]

    @classmethod
    def of(cls, route: Route) -> _Choice:
        live = [u for u in route.upstreams if u.weight > 0]
        bounds, total = [], 0
        for u in live:
            total += u.weight
            bounds.append(total)
        variants = tuple(
            replace(route, upstream=u.url, revision=u.revision, upstreams=()) for u in live
        )
        return cls(tuple(bounds), variants)

    def pick(self, key: str | None, sticky: bool, prefix: str) -> Route:
        point = _hash_point(key, prefix) if sticky and key is not None else random.random()
        at = bisect.bisect_right(self.bounds, point * self.bounds[-1])
        return self.variants[min(at, len(self.variants) - 1)]


@dataclass
class RouteTable:
    routes: tuple[Route, ...] = ()
    _by_prefix: dict[str, tuple[Route, str]] = field(default_factory=dict, repr=False)
    _choices: dict[str, _Choice] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls, routes: Iterable[Route], *, owner: Callable[[Route], str] | None = None
    ) -> RouteTable:
        """A table from routes; on a duplicate prefix the first route (in order) wins.

        With ``owner`` (who a route belongs to: the cluster source gives its object's
        namespace), routes of different owners may not nest either: a prefix or alias under
        one kept earlier for another owner is ignored (logged as ``nested route prefix
        ignored``), so the first route, in order, keeps the paths under its prefix. A later
        route of another owner that encloses a kept prefix is kept, and the longer prefix
        stays with its earlier owner (logged as ``nested route prefix kept``). Routes of the
        same owner nest freely. The order is the caller's (the cluster source: oldest object
        first), so the outcome does not depend on which route arrived first.
        """
        table = cls(routes=tuple(routes))
        owners: dict[str, str] = {}
        for route in table.routes:
            who = owner(route) if owner is not None else ""
            for prefix in (route.prefix, *route.aliases):
                if prefix in table._by_prefix:
                    kept = table._by_prefix[prefix][0].service
                    log.warning(
                        "duplicate route prefix ignored",
                        extra={
                            "fields": {"prefix": prefix, "service": route.service, "kept": kept}
                        },
                    )
                    continue
                enclosing = table._foreign_ancestor(prefix, who, owners) if owner else None
                if enclosing is not None:
                    log.warning(
                        "nested route prefix ignored",
                        extra={
                            "fields": {
                                "prefix": prefix,
                                "service": route.service,
                                "enclosing": enclosing,
                                "kept": table._by_prefix[enclosing][0].service,
                            }
                        },
                    )
                    continue
                table._by_prefix[prefix] = (route, prefix)
                owners[prefix] = who
            if route.upstreams and route.prefix not in table._choices:
                table._choices[route.prefix] = _Choice.of(route)
        if owner is not None:
            table._log_enclosed(owners)
        return table

    def _foreign_ancestor(self, prefix: str, who: str, owners: dict[str, str]) -> str | None:
        """The nearest kept prefix above ``prefix`` that another owner holds, if any."""
        cut = prefix.rfind("/")
        while cut > 0:
            prefix = prefix[:cut]
            if prefix in owners and owners[prefix] != who:
                return prefix
            cut = prefix.rfind("/")
        return None

    def _log_enclosed(self, owners: dict[str, str]) -> None:
        """Say where a kept prefix encloses another owner's (which came first and keeps it)."""
        for prefix, (route, _) in self._by_prefix.items():
            enclosing = self._foreign_ancestor(prefix, owners[prefix], owners)
            if enclosing is not None:
                log.warning(
                    "nested route prefix kept",
                    extra={
                        "fields": {
                            "prefix": prefix,
                            "service": route.service,
                            "enclosing": enclosing,
                            "enclosing_service": self._by_prefix[enclosing][0].service,
                        }
                    },
                )

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, path: str, *, key: str | None = None) -> Match | None:
        """The route serving ``path`` (already normalised), or None. A weighted route is
        resolved to one upstream (by ``key``'s hash when the route is sticky)."""
        _CHOSEN.set("")
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
                route = self._pick(route, key)
                return Match(route=route, upstream_path=route.prefix + rest, resource=resource)
            cut = candidate.rfind("/")
            if cut <= 0:
                return None
            candidate = candidate[:cut]
        return None

    def stick(self, match: Match, key: str) -> Match:
        """``match`` with its upstream picked again for ``key`` (the caller's identity, once
        known): the same key always lands on the same revision of a sticky route."""
        choice = self._choices.get(match.route.prefix)
        if choice is None or not match.route.sticky:
            return match
        route = choice.pick(key, True, match.route.prefix)
        _CHOSEN.set(route.revision)
        return replace(match, route=route)

    def _pick(self, route: Route, key: str | None) -> Route:
        choice = self._choices.get(route.prefix) if route.upstreams else None
        if choice is not None:
            route = choice.pick(key, route.sticky, route.prefix)
        if route.revision:
            _CHOSEN.set(route.revision)
        return route


class RouteSource(Protocol):
    """Where the route table comes from. ``watch`` yields a full table on every change."""

    def watch(self) -> AsyncIterator[RouteTable]: ...


def routes_from_spec(
    *,
    service: str,
    upstream: str | None,
    routes: object,
    upstreams: Sequence[Upstream] = (),
    sticky: bool = False,
) -> list[Route]:
    """Routes of one service from its ``spec.routes``, read through the API model
    (:class:`apis.v1alpha1.xynergyservice.Route`, the one definition of the shape).

    A service without an upstream URL yet (no ``status.url``) contributes no routes. Entries the
    model refuses are skipped and logged, so one bad object cannot empty the whole table. A
    trailing '/' on a prefix or alias is dropped. A timeout the entry does not set is left to
    the gateway's default. ``upstreams`` (a rollout's
    revisions and weights) replace the single upstream when given.
    """
    if not upstream or not isinstance(routes, list):
        return []
    live = tuple(u for u in upstreams if u.weight > 0)
    revision = ""
    if live:
        heaviest = max(live, key=lambda u: u.weight)
        upstream, revision = heaviest.url, heaviest.revision
    if len(live) < 2:
        live = ()  # one upstream: a plain route, labelled with its revision
    out: list[Route] = []
    for entry in routes:
        try:
            spec = ApiRoute.model_validate(entry)
            timeout = spec.timeout_seconds
            out.append(
                Route(
                    prefix=_without_slash(spec.prefix),
                    upstream=upstream,
                    service=service,
                    aliases=tuple(_without_slash(a) for a in spec.aliases or ()),
                    timeout_seconds=float(timeout) if timeout is not None else None,
                    rate_limit_per_minute=spec.rate_limit_per_minute,
                    revision=revision,
                    upstreams=live,
                    sticky=sticky,
                    public=spec.public,
                )
            )
        except (ValidationError, ValueError) as exc:  # PathError is a ValueError
            log.warning(
                "invalid route skipped",
                extra={"fields": {"service": service, "error": _first_error(exc)}},
            )
    return out


def _without_slash(path: str) -> str:
    """``/api/v2/crm/`` routes as ``/api/v2/crm`` (the API allows the trailing '/'); ``/``
    stays, and Route refuses it."""
    return path.rstrip("/") or path


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "route"
        return f"{where}: {first['msg']}"
    return str(exc)
