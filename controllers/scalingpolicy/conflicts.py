"""Who else scales a target: the index that lets a ScalingPolicy refuse to fight.

Two autoscalers on one target undo each other's work. The index knows, per target, every
ScalingPolicy that names it and every HorizontalPodAutoscaler whose scaleTargetRef is the
XynergyService or the Deployment it owns (same name). The oldest acting policy (creation
time, then name; a dry-run or paused policy does not act, so it claims nothing) owns a target;
any other acting policy is Stalled naming the owner, and with an HPA on the target every acting
policy is Stalled naming the HPA. A dry-run policy is told who else scales the target (the
reconciler says so in its Ready message) and goes on planning beside them. It is kept from
watch events (no list per sync); the first lookup seeds it with one list of each kind, so a
restart cannot let a younger policy act before the older one's event arrived, and an object
whose deletion arrived while those lists were in flight is not added back. Pure bookkeeping;
the reconciler does the I/O (one seed at a time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Claim", "Conflict", "TargetIndex", "hpa_target", "policy_target"]

Target = tuple[str, str]  # (namespace, XynergyService name)


@dataclass(frozen=True, order=True)
class Claim:
    """A ScalingPolicy's claim on its target; ordering is seniority."""

    created: str
    name: str
    uid: str
    acting: bool = field(default=True, compare=False)
    """False for a dry-run or paused policy: it never scales, so it owns nothing."""


@dataclass(frozen=True)
class Conflict:
    """Why a policy must not act: the other object and a CamelCase reason."""

    reason: str
    message: str
    other: str = ""
    """The other autoscaler: `HorizontalPodAutoscaler ns/name` or `ScalingPolicy ns/name`."""


def policy_target(body: Mapping[str, Any]) -> tuple[Target, Claim] | None:
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    name = (spec.get("targetRef") or {}).get("name")
    if not name or not meta.get("uid"):
        return None
    acting = not (spec.get("dryRun") or spec.get("paused"))
    claim = Claim(
        str(meta.get("creationTimestamp") or ""), str(meta["name"]), str(meta["uid"]), acting
    )
    return (str(meta.get("namespace")), str(name)), claim


def hpa_target(body: Mapping[str, Any]) -> tuple[Target, str] | None:
    """The XynergyService an HPA scales (directly, or through the Deployment of that name)."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    if ref.get("kind") not in ("XynergyService", "Deployment") or not ref.get("name"):
        return None
    return (str(meta.get("namespace")), str(ref["name"])), f"{ref['kind']}/{ref['name']}"


def _identity(body: Mapping[str, Any]) -> str:
    """An object's uid (a re-created object of the same name is another), else its
    namespace/name."""
    meta = body.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


class TargetIndex:
    """Policies and HPAs per target, from watch events."""

    def __init__(self) -> None:
        self._policies: dict[Target, dict[str, Claim]] = {}
        self._policy_target: dict[str, Target] = {}
        self._hpas: dict[Target, dict[str, str]] = {}
        self._hpa_target: dict[tuple[str, str], Target] = {}
        self.seeded = False
        self._seeding = False
        self._gone: set[str] = set()
        """The objects whose deletion was seen since the seed's lists began (`_identity`)."""

    def begin_seed(self) -> None:
        """The seed's lists are about to be sent: deletions seen from now on are kept, so
        an object deleted while its list was in flight is not added back by `seed`."""
        self._seeding = True

    def abort_seed(self) -> None:
        """The seed's lists failed: deletions are no longer kept (a later seed begins
        afresh)."""
        self._seeding, self._gone = False, set()

    def seed(
        self, policies: Iterable[Mapping[str, Any]], hpas: Iterable[Mapping[str, Any]]
    ) -> None:
        """Add what one list of each kind returned (events that came first are kept), but
        no object whose deletion was seen since `begin_seed`: the list may have been
        answered before it."""
        gone, self._gone, self._seeding = self._gone, set(), False
        for body in policies:
            if _identity(body) not in gone:
                self.observe_policy(body, deleted=False)
        for body in hpas:
            if _identity(body) not in gone:
                self.observe_hpa(body, deleted=False)
        self.seeded = True

    def _deleted(self, body: Mapping[str, Any]) -> None:
        if self._seeding:
            self._gone.add(_identity(body))

    def observe_policy(self, body: Mapping[str, Any], *, deleted: bool) -> set[Target]:
        """Record a policy's event; returns the targets it left or joined, or whose claim it
        made or dropped (dryRun or paused changed); empty when neither changed, e.g. for our
        own status writes."""
        uid = str((body.get("metadata") or {}).get("uid"))
        if deleted:
            self._deleted(body)
        found = None if deleted else policy_target(body)
        old = self._policy_target.pop(uid, None)
        was = self._policies.get(old, {}).pop(uid, None) if old is not None else None
        if found is not None:
            target, claim = found
            self._policies.setdefault(target, {})[uid] = claim
            self._policy_target[uid] = target
        new = found[0] if found is not None else None
        if old == new and (was is None or found is None or was.acting == found[1].acting):
            return set()
        return {t for t in (old, new) if t is not None}

    def observe_hpa(self, body: Mapping[str, Any], *, deleted: bool) -> set[Target]:
        """Record an HPA's event; returns the targets it left or joined (empty when its
        target did not change: an HPA's status updates every 15 s cost nothing)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if deleted:
            self._deleted(body)
        found = None if deleted else hpa_target(body)
        old = self._hpa_target.pop(key, None)
        if old is not None:
            self._hpas.get(old, {}).pop(key[1], None)
        if found is not None:
            target, ref = found
            self._hpas.setdefault(target, {})[key[1]] = ref
            self._hpa_target[key] = target
        new = found[0] if found is not None else None
        return set() if old == new else {t for t in (old, new) if t is not None}

    def claims(self, target: Target) -> list[Claim]:
        """The policies on `target`, senior first."""
        return sorted(self._policies.get(target, {}).values())

    def conflict(self, target: Target, uid: str, *, acting: bool = True) -> Conflict | None:
        """Why policy `uid` must not scale `target` (None: it may). For a policy that does not
        act (`acting` False: a dry run), who else scales the target: the HPA, else the oldest
        acting policy."""
        namespace, name = target
        hpas = self._hpas.get(target, {})
        if hpas:
            hpa, ref = sorted(hpas.items())[0]
            return Conflict(
                "ConflictingHPA",
                f"HorizontalPodAutoscaler {namespace}/{hpa} also scales {ref}; remove it or "
                "this policy (two autoscalers on one target undo each other)",
                f"HorizontalPodAutoscaler {namespace}/{hpa}",
            )
        others = [c for c in self.claims(target) if c.acting and c.uid != uid]
        if acting:  # only the policies senior to this one's claim (none if it has none)
            mine = self._policies.get(target, {}).get(uid)
            others = [c for c in others if mine is not None and c < mine]
        if others:
            return Conflict(
                "ConflictingPolicy",
                f"ScalingPolicy {namespace}/{others[0].name} already scales XynergyService "
                f"{name} (the oldest policy on a target that is neither dry-run nor paused "
                "owns it)",
                f"ScalingPolicy {namespace}/{others[0].name}",
            )
        return None
