"""Isolation Forest over several metrics at once (scikit-learn), seeded and causal.

A point that is easy to isolate with random axis-aligned splits is unusual *jointly*: e.g. a
normal request rate with an abnormal latency. The forest is fitted on the trailing ``window``
observations that precede the scored one and refitted every ``refit_every`` observations, always
with the same ``random_state``: the same series gives the same scores, batch or streaming.

The score is scikit-learn's ``-score_samples``: about 0.5 for ordinary points, approaching 1
for points isolated at once (Liu, Ting & Zhou, 2008).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.ensemble import IsolationForest

from intelligence.anomaly.base import Detection, DetectionResult, Severity, Thresholds

__all__ = ["IsolationForestDetector"]


class IsolationForestDetector:
    """Multivariate Isolation Forest scored causally on a trailing training window."""

    name = "isolation_forest"

    def __init__(
        self,
        *,
        window: int = 256,
        min_history: int = 64,
        refit_every: int = 32,
        n_estimators: int = 100,
        random_state: int = 0,
        thresholds: Thresholds | None = None,
    ) -> None:
        """Configure the detector.

        Args:
            window: trailing observations the forest is trained on.
            min_history: observations needed before the first fit (earlier ones score NaN).
            refit_every: observations between refits.
            n_estimators: trees per forest.
            random_state: seed of every fit; fixed seed means deterministic scores.
            thresholds: severities on the ``-score_samples`` scale (default 0.65 / 0.72 / 0.80).
        """
        if min_history < 8 or window < min_history or refit_every < 1:
            raise ValueError("need 8 <= min_history <= window and refit_every >= 1")
        self.window = window
        self.min_history = min_history
        self.refit_every = refit_every
        self.n_estimators = n_estimators
        self.random_state = random_state
        self._thresholds = thresholds or Thresholds(0.65, 0.72, 0.80)
        self._hist: deque[NDArray[np.float64]] = deque(maxlen=window)
        self._seen = 0
        self._since_fit = 0
        self._model: IsolationForest | None = None

    @property
    def thresholds(self) -> Thresholds:
        """Score levels for WARNING / CRITICAL / EMERGENCY."""
        return self._thresholds

    def reset(self) -> None:
        """Forget all history and the fitted forest."""
        self._hist.clear()
        self._seen = 0
        self._since_fit = 0
        self._model = None

    def _fit(self, train: NDArray[np.float64]) -> IsolationForest:
        model = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(256, train.shape[0]),
            random_state=self.random_state,
        )
        model.fit(train)
        return model

    def _due(self) -> bool:
        """Whether a (re)fit must happen before scoring the next observation."""
        if len(self._hist) < self.min_history:
            return False
        return self._model is None or self._since_fit >= self.refit_every

    def update(self, value: ArrayLike) -> Detection:
        """Score the next observation (a float or a vector of metrics), then remember it."""
        x = np.atleast_1d(np.asarray(value, dtype=np.float64))
        if not np.all(np.isfinite(x)):
            return Detection(score=float("nan"), severity=Severity.INFO, evidence={"nan": 1.0})
        if self._due():
            self._model = self._fit(np.vstack(list(self._hist)))
            self._since_fit = 0
        s = float("nan")
        if self._model is not None:
            s = float(-self._model.score_samples(x.reshape(1, -1))[0])
        self._hist.append(x)
        self._seen += 1
        self._since_fit += 1
        ev = {"trained_on": float(min(len(self._hist) - 1, self.window))}
        if math.isnan(s):
            ev["warming_up"] = 1.0
        return Detection(score=s, severity=self._thresholds.classify(s), evidence=ev)

    def score(self, values: ArrayLike) -> DetectionResult:
        """Score rows of ``values`` (shape ``(n,)`` or ``(n, metrics)``) causally.

        Identical to feeding the rows to :meth:`update` from a fresh state, but each forest
        scores its whole segment in one call. Rows with NaN score NaN and are not learnt.
        """
        data = np.asarray(values, dtype=np.float64)
        if data.ndim == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2:
            raise ValueError(f"expected (n,) or (n, metrics), got {data.shape}")
        n = data.shape[0]
        scores = np.full(n, np.nan)
        ok = np.all(np.isfinite(data), axis=1)
        rows = np.flatnonzero(ok)
        clean = data[rows]
        # Refit positions in "clean row" time: before clean row j when j >= min_history and
        # (first fit, or refit_every rows since the last fit).
        j = self.min_history
        while j < clean.shape[0]:
            model = self._fit(clean[max(0, j - self.window) : j])
            end = min(j + self.refit_every, clean.shape[0])
            scores[rows[j:end]] = -model.score_samples(clean[j:end])
            j = end
        return DetectionResult(
            detector=self.name,
            scores=scores,
            severities=self._thresholds.classify_many(scores),
            thresholds=self._thresholds,
        )
