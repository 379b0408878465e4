"""False-alarm control: from per-feature surprises to one score, and from the score to alarms.

A detector with several calibrated features (see
:mod:`intelligence.anomaly.tail_probability`) gets each feature's surprise per point, as
``-log10`` of a tail probability. Taking the largest of them and alarming above a level gives
too many false alarms on real data: a feature that keeps hitting its tail in one stretch (a
noisy regime, a miscalibrated feature) alarms again and again, and a single weak feature
alone is often noise. Two stages keep this apart, as contextOSE (a rest period after any high
raw score) and ARTime (masking after new categories; only a much stronger event breaks
through) do:

* :class:`GateScorer` (threshold-free, so one run serves every alarm level): each feature's
  surprise is discounted by its own recent exceedance rate: a feature that was at or above
  ``rate_level`` at ``n`` of the last ``rate_window`` points gets ``log10(1 + n)`` taken off
  (the event is ``n + 1`` times less news there); the score is the largest discounted
  surprise, less ``lone_penalty`` when no other feature agrees (reaches ``support_level`` at
  the same point): weak evidence needs agreement, strong evidence does not.
* :class:`Refractory`: an alarm at the first point whose score reaches the alarm level, then
  none for ``refractory`` points unless a later score exceeds the last alarm's by
  ``escalation`` (an event that much rarer is news, not an echo).

State is bounded: one window of at most ``rate_window`` indices per feature, two numbers for the
refractory period. Pure: stdlib only.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

__all__ = ["GateScorer", "Refractory"]


class GateScorer:
    """Discounts each feature by its recent exceedance rate; penalises evidence without support."""

    def __init__(
        self,
        *,
        features: int,
        rate_window: int = 0,
        rate_level: float = 2.0,
        lone_penalty: float = 0.0,
        support_level: float = 1.3,
        quiet_window: int = 0,
        quiet_level: float = 2.0,
        quiet_penalty: float = 0.0,
        silent: tuple[int, ...] = (),
    ) -> None:
        """Configure the scorer.

        Args:
            features: number of features per point.
            rate_window: points over which each feature's exceedances are counted (0: no
                discount).
            rate_level: surprise that counts as an exceedance.
            lone_penalty: taken off the score when no second feature reaches ``support_level``.
            support_level: surprise a second feature needs to count as agreement.
            quiet_window: points before ``t`` that must have stayed quiet (largest raw
                surprise below ``quiet_level``), as contextOSE's rest period; 0: no such rule.
            quiet_level: the raw surprise that breaks the quiet.
            quiet_penalty: taken off the score when the lead-in was not quiet.
            silent: indices of features that are context, not evidence: they never carry the
                score, but they count as support for another feature and break the quiet.
        """
        if features < 1:
            raise ValueError(f"features must be >= 1, got {features}")
        if rate_window < 0:
            raise ValueError(f"rate_window must be >= 0, got {rate_window}")
        if lone_penalty < 0.0:
            raise ValueError(f"lone_penalty must be >= 0, got {lone_penalty}")
        if any(not 0 <= k < features for k in silent):
            raise ValueError(f"silent must hold feature indices below {features}, got {silent}")
        self.features = features
        self.rate_window = rate_window
        self.rate_level = rate_level
        self.lone_penalty = lone_penalty
        self.support_level = support_level
        self.quiet_window = quiet_window
        self.quiet_level = quiet_level
        self.quiet_penalty = quiet_penalty
        self.silent = frozenset(silent)
        self._plain = not self.silent and not rate_window
        self._loud = -(10**18)
        self._t = 0
        self._hits: list[deque[int]] = [deque() for _ in range(features)]

    def reset(self) -> None:
        """Forget the exceedance history."""
        self._t = 0
        self._loud = -(10**18)
        for hits in self._hits:
            hits.clear()

    def update(self, surprises: Sequence[float]) -> float:
        """The gated score of one point's feature surprises (NaN counts as 0), then learn them."""
        t = self._t
        self._t += 1
        if self._plain:  # no discount, no silent feature: the two largest (the default gate)
            second, best = sorted([s if s == s else 0.0 for s in surprises] + [0.0, 0.0])[-2:]
            best_raw = best
        else:
            best, best_raw, second = self._rated(t, surprises)
        if second < self.support_level:
            best -= self.lone_penalty
        if t - self._loud <= self.quiet_window:
            best -= self.quiet_penalty
        if max(best_raw, second) >= self.quiet_level:
            self._loud = t
        return best

    def _rated(self, t: int, surprises: Sequence[float]) -> tuple[float, float, float]:
        """The largest discounted surprise, its raw value, and the largest of the others."""
        best = second = 0.0
        best_raw = 0.0
        for k, s in enumerate(surprises):
            raw = s if s == s else 0.0  # NaN -> 0
            if k in self.silent:
                second = max(second, raw)
                continue
            adjusted = raw
            if self.rate_window:
                hits = self._hits[k]
                while hits and hits[0] <= t - self.rate_window:
                    hits.popleft()
                adjusted = raw - math.log10(1.0 + len(hits))
                if raw >= self.rate_level:
                    hits.append(t)
            if adjusted > best:
                second = max(second, best_raw)
                best, best_raw = adjusted, raw
            else:
                second = max(second, raw)
        return best, best_raw, second

    def __len__(self) -> int:
        """Exceedances currently remembered, over all features (at most features x window)."""
        return sum(len(h) for h in self._hits)


class Refractory:
    """One alarm per event: silence for ``refractory`` points unless the score escalates."""

    def __init__(
        self, *, refractory: int, escalation: float | None = None, escalation_gap: int = 0
    ) -> None:
        """``escalation_gap``: points an escalation must come after the alarm it breaks
        through (0: at once), so a level shift that grows over two or three points alarms
        once, not at each step."""
        if refractory < 0:
            raise ValueError(f"refractory must be >= 0, got {refractory}")
        if escalation is not None and escalation <= 0.0:
            raise ValueError(f"escalation must be > 0 or None, got {escalation}")
        if escalation_gap < 0:
            raise ValueError(f"escalation_gap must be >= 0, got {escalation_gap}")
        self.refractory = refractory
        self.escalation = escalation
        self.escalation_gap = escalation_gap
        self.reset()

    def reset(self) -> None:
        """Forget the last alarm."""
        self._last = -(10**18)
        self._last_score = math.inf

    def check(self, t: int, score: float) -> bool:
        """Whether point ``t``, whose score reached the alarm level, raises an alarm.

        Call it only for such points, in time order: other points never change the state.
        """
        alarm = t - self._last > self.refractory or (
            self.escalation is not None
            and score >= self._last_score + self.escalation
            and t - self._last >= self.escalation_gap
        )
        if alarm:
            self._last = t
            self._last_score = score
        return alarm
