"""The HPA behaviour state between syncs: exact in memory, in status only when it matters.

`intelligence.scaling.decide` takes and returns a `ScalingState`: recent recommendations (the
stabilization windows read them), scale events (the step limits read them) and the headroom
calibration. Every sync appends a recommendation stamped with its time, so writing the state
as it is would write status on every sync. Instead:

- The operator keeps the exact state in memory (`StateCache`, by uid), continuing from the
  status text it was derived from; a status that no longer matches (another operator wrote
  it, or this one restarted) is read back with `resume`.
- Recommendations are reduced to those a future window can still see (`reduce`): a
  recommendation is dropped when a later one is at least as high (the scale-down window keeps
  the highest) and a later one is at least as low (the scale-up window keeps the lowest). No
  decision at any later time changes.
- `resume` counts the newest stored recommendation as made at the resuming sync: it was
  repeated at every sync since it was written, up to the restart. A restarted operator thus
  stabilizes at most the downtime plus one interval longer than an uninterrupted one, never
  less (HPA's own restart seeds its scale-down window with the current count at that time).
- `same_for_decisions`: the status needs the new state only when a restarted operator would
  decide differently from it than from the stored one. The calibration (learned statistics,
  moving every sync) is not part of that test: it is written with every status write and with
  the periodic refresh, so a restart loses at most one refresh period of calibration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from intelligence.scaling import ScalingParams, ScalingState
from intelligence.scaling.rules import prune
from intelligence.scaling.types import Recommendation

__all__ = ["StateCache", "decode", "encode", "reduce", "resume", "same_for_decisions"]


def encode(state: ScalingState) -> str:
    """The state as compact JSON for status.scalingState (recommendations reduced)."""
    return json.dumps(reduce(state).to_dict(), separators=(",", ":"), allow_nan=False)


def decode(text: str | None) -> ScalingState | None:
    """The state kept in status (None when absent or unreadable: HPA's fresh start)."""
    if not text:
        return None
    try:
        data: Any = json.loads(text)
        return ScalingState.from_dict(data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None


def reduce(state: ScalingState) -> ScalingState:
    """Only the recommendations a stabilization window can still see (exact for every later
    decision): from the newest back, keep one that is a new highest or a new lowest."""
    kept: list[Recommendation] = []
    high = low = None
    for rec in reversed(state.recommendations):  # newest first (appended in time order)
        if high is None or low is None or rec.replicas > high or rec.replicas < low:
            kept.append(rec)
            high = rec.replicas if high is None else max(high, rec.replicas)
            low = rec.replicas if low is None else min(low, rec.replicas)
    return replace(state, recommendations=tuple(reversed(kept)))


def resume(text: str | None, *, now: float) -> ScalingState | None:
    """The stored state as a new operator continues it at `now`: its newest recommendation
    counts as made now (it was repeated at every unwritten sync since)."""
    state = decode(text)
    if state is None or not state.recommendations:
        return state
    *older, newest = state.recommendations
    if newest.timestamp >= now:
        return state
    return replace(state, recommendations=(*older, Recommendation(now, newest.replicas)))


def _windows(params: ScalingParams) -> tuple[int, int]:
    """The longest scale-up and scale-down stabilization windows any mode of `params` uses."""
    rates = params.behavior
    down = max(
        rates.scale_down.stabilization_window_seconds,
        params.predictive_scale_down_window_seconds or 0,
        params.burst_scale_down_window_seconds or 0,
        params.calibrated_scale_down_window_seconds or 0,
    )
    return rates.scale_up.stabilization_window_seconds, down


def _extremes(recs: tuple[Recommendation, ...], *, since: float, high: bool) -> list[Any]:
    """From the newest back, the recommendations after `since` that set a new highest
    (`high`) or lowest: all a window's max (min) can ever read of them."""
    out: list[Any] = []
    best: int | None = None
    for rec in reversed(recs):
        if rec.timestamp <= since:
            break
        if best is None or (rec.replicas > best if high else rec.replicas < best):
            best = rec.replicas
            out.append((rec.timestamp, rec.replicas))
    return out


def _decisive(state: ScalingState, *, now: float, params: ScalingParams) -> tuple[Any, ...]:
    """What the windows and step limits of any later decision read of `state`."""
    up, down = _windows(params)
    events = prune(state, now=now, rates=params.behavior)
    recs = state.recommendations
    return (
        _extremes(recs, since=now - up, high=False),
        _extremes(recs, since=now - down, high=True),
        events.scale_up_events,
        events.scale_down_events,
    )


def same_for_decisions(
    stored: str | None, new: ScalingState, *, now: float, params: ScalingParams
) -> bool:
    """Whether an operator resuming from `stored` at `now` would see the windows and step
    limits `new` gives (the calibration aside)."""
    old = resume(stored, now=now)
    if old is None:
        return False
    return _decisive(old, now=now, params=params) == _decisive(new, now=now, params=params)


@dataclass
class _Entry:
    text: str | None
    state: ScalingState


class StateCache:
    """Each policy's exact state, and the status text it continues from."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def state(self, uid: str, stored: str | None, *, now: float) -> ScalingState | None:
        """The state to decide from: the exact one while status still holds the text it
        continues from, else the stored one resumed at `now`."""
        entry = self._entries.get(uid)
        if entry is not None and entry.text == stored:
            return entry.state
        return resume(stored, now=now)

    def keep(self, uid: str, *, text: str | None, state: ScalingState) -> None:
        """Remember `state` as the continuation of the status text `text`."""
        self._entries[uid] = _Entry(text, reduce(state))

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)

    def __len__(self) -> int:
        return len(self._entries)
