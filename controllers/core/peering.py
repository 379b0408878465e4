"""Whether this replica may act: kopf's peering decision, followed into the core.

With peering (XYNERGY_PEERING) two or more replicas run; kopf lets only the live peer with the
highest priority handle events and pauses the others. kopf's pause stops its watch streams,
but not our own machinery: the `ResyncScheduler` and events a watch delivered just before the
pause would still converge. The `ActivityGate` closes both: the scheduler starts no check and
`Controller.converge` changes nothing while the gate is paused (the object is kept due, so the
check runs at once when this replica acts again).

kopf does not expose its pause toggle to handlers; it announces every change of it in one log
record of its peering engine ("Pausing ..." when it turns on, "Resuming ..." when it turns off),
emitted at the moment the toggle flips. `KopfPeeringFollower` is a logging handler on that
logger that moves the gate with it. tests/unit/controllers/test_core_peering.py drives kopf's
own peering code through it, so a kopf release that words or routes these records differently
fails there.
"""

from __future__ import annotations

import logging

__all__ = ["KOPF_PEERING_LOGGER", "ActivityGate", "KopfPeeringFollower"]

KOPF_PEERING_LOGGER = "kopf._core.engines.peering"


class ActivityGate:
    """Open (this replica acts) or paused (another replica acts; this one changes nothing)."""

    def __init__(self, *, active: bool = True) -> None:
        self._active = active

    @property
    def active(self) -> bool:
        return self._active

    def pause(self) -> None:
        self._active = False

    def resume(self) -> None:
        self._active = True


class KopfPeeringFollower(logging.Handler):
    """Moves a gate with kopf's peering decisions (its "Pausing"/"Resuming" records)."""

    def __init__(self, gate: ActivityGate) -> None:
        super().__init__(level=logging.INFO)
        self.gate = gate

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Pausing "):
            self.gate.pause()
        elif message.startswith("Resuming "):
            self.gate.resume()

    @classmethod
    def install(cls, gate: ActivityGate) -> KopfPeeringFollower:
        """Attach a follower to kopf's peering logger (which then logs at INFO at least)."""
        follower = cls(gate)
        logger = logging.getLogger(KOPF_PEERING_LOGGER)
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        logger.addHandler(follower)
        return follower
