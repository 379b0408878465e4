"""metav1.Condition and pure helpers: set a condition, summarise conditions to kstatus.

The rules (ARCHITECTURE.md, after Knative and Flux): `Ready` is always present;
`Reconciling` and `Stalled` exist only while True and never together; lastTransitionTime moves
only when a condition's status changes; observedGeneration is an integer.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Literal

from pydantic import Field

from apis.base import StatusModel

__all__ = [
    "READY",
    "RECONCILING",
    "STALLED",
    "Condition",
    "KStatus",
    "check_invariants",
    "get_condition",
    "is_true",
    "kstatus",
    "mark_ready",
    "mark_reconciling",
    "mark_stalled",
    "set_condition",
]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """One aspect of the object's current state (metav1.Condition)."""

    type: str = Field(max_length=316, pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9_.-]+$")
    """Type of condition in CamelCase, e.g. Ready, Reconciling, Stalled."""
    status: ConditionStatus
    """Status of the condition: True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the condition was set for."""
    last_transition_time: dt.datetime
    """When the condition last changed from one status to another."""
    reason: str = Field(max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """A CamelCase word saying why the condition is in its state."""
    message: str = Field(default="", max_length=32768)
    """A human-readable explanation of the condition."""


class KStatus(StrEnum):
    """kstatus summary of an object (the vocabulary of Flux, kpt and Argo CD health)."""

    IN_PROGRESS = "InProgress"
    FAILED = "Failed"
    CURRENT = "Current"


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of that type, if present."""
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    """True when the condition is present with status True."""
    cond = get_condition(conditions, type_)
    return cond is not None and cond.status == "True"


def set_condition(
    conditions: list[Condition],
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    """A new list with the condition set; lastTransitionTime moves only on a status change."""
    previous = get_condition(conditions, type_)
    transition = (
        now if previous is None or previous.status != status else previous.last_transition_time
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=observed_generation,
        last_transition_time=transition,
    )
    out = [c for c in conditions if c.type != type_]
    out.append(updated)
    return sorted(out, key=_order)


def _order(cond: Condition) -> tuple[int, str]:
    rank = {READY: 0, RECONCILING: 1, STALLED: 2}
    return rank.get(cond.type, 3), cond.type


def _without(conditions: list[Condition], *types: str) -> list[Condition]:
    return [c for c in conditions if c.type not in types]


def mark_ready(
    conditions: list[Condition],
    *,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    """Ready=True; Reconciling and Stalled removed."""
    return set_condition(
        _without(conditions, RECONCILING, STALLED),
        type_=READY,
        status="True",
        reason=reason,
        message=message,
        observed_generation=generation,
        now=now,
    )


def _mark_negative(
    conditions: list[Condition],
    *,
    type_: str,
    clears: str,
    ready_status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    """`type_`=True and Ready=`ready_status` with the same reason; `clears` removed."""
    out = _without(conditions, clears)
    for cond_type, status in ((READY, ready_status), (type_, "True")):
        out = set_condition(
            out,
            type_=cond_type,
            status=status,
            reason=reason,
            message=message,
            observed_generation=generation,
            now=now,
        )
    return out


def mark_reconciling(
    conditions: list[Condition],
    *,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    """Reconciling=True, Ready=False (or Unknown if never decided); Stalled removed."""
    ready_status: ConditionStatus = (
        "Unknown" if get_condition(conditions, READY) is None else "False"
    )
    return _mark_negative(
        conditions,
        type_=RECONCILING,
        clears=STALLED,
        ready_status=ready_status,
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )


def mark_stalled(
    conditions: list[Condition],
    *,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> list[Condition]:
    """Stalled=True and Ready=False with the same reason; Reconciling removed."""
    return _mark_negative(
        conditions,
        type_=STALLED,
        clears=RECONCILING,
        ready_status="False",
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )


def kstatus(
    *, generation: int | None, observed_generation: int | None, conditions: list[Condition]
) -> KStatus:
    """Summarise an object the way kstatus does."""
    if generation is not None and observed_generation != generation:
        return KStatus.IN_PROGRESS
    if is_true(conditions, STALLED):
        return KStatus.FAILED
    if is_true(conditions, RECONCILING):
        return KStatus.IN_PROGRESS
    ready = get_condition(conditions, READY)
    if ready is not None and ready.status != "True":
        return KStatus.IN_PROGRESS
    return KStatus.CURRENT


def check_invariants(
    *, generation: int | None, observed_generation: object, conditions: list[Condition]
) -> list[str]:
    """Violations of the status rules (empty when the status is well-formed).

    The checks of Flux's runtime/conditions/check: Ready present; Reconciling/Stalled only
    while True and never both; observedGeneration an integer, never ahead of generation, and
    equal to the generation the Ready=True condition was decided for. (Right after a spec change
    the stored observedGeneration lags generation: kstatus reads that as InProgress.)
    """
    problems: list[str] = []
    if observed_generation is not None and not isinstance(observed_generation, int):
        problems.append(f"observedGeneration is not an integer: {observed_generation!r}")
    ready = get_condition(conditions, READY)
    if ready is None:
        problems.append("Ready condition is missing")
    for negative in (RECONCILING, STALLED):
        cond = get_condition(conditions, negative)
        if cond is not None and cond.status != "True":
            problems.append(f"{negative} is present with status {cond.status}")
    if is_true(conditions, RECONCILING) and is_true(conditions, STALLED):
        problems.append("Reconciling and Stalled are both True")
    if (
        isinstance(observed_generation, int)
        and generation is not None
        and observed_generation > generation
    ):
        problems.append(
            f"observedGeneration {observed_generation} is ahead of generation {generation}"
        )
    if ready is not None and ready.status == "True":
        # Ready is a claim about the generation the status describes; a newer spec may have
        # arrived since (kstatus then reads InProgress), but the claim must be consistent.
        if (
            ready.observed_generation is not None
            and ready.observed_generation != observed_generation
        ):
            problems.append(
                f"Ready=True for generation {ready.observed_generation}"
                f" but observedGeneration is {observed_generation}"
            )
        if is_true(conditions, STALLED):
            problems.append("Ready=True while Stalled=True")
    types = [c.type for c in conditions]
    if len(types) != len(set(types)):
        problems.append(f"duplicate condition types: {types}")
    return problems
