"""Tail-probability detector: complementary causal features, each calibrated against its own past.

Three raw features (four with ``context``, five with the optional ``resonance``) are computed
per point, all from data up to ``t`` only:

* ``value``: robust z of ``x[t]`` against the median and interquartile range of the trailing
  ``window`` points (spikes and dips);
* ``level``: the mean of the last ``short_window`` points against the median / scale of the
  ``window`` points before them, in standard errors (a two-window test for a change of level);
* ``seasonal``: robust z of the seasonal difference ``x[t] - x[t - P]`` against its own trailing
  window, once a period ``P`` is trusted (:mod:`intelligence.anomaly.season`: at least
  ``season_min_cycles`` cycles in the searched history and the autocorrelation high at every
  multiple of ``P``; the search starts at the end of the warm-up and goes on over a bounded
  window until a period is found). It catches a day that does not look like the day before;
* ``context`` (``context_order``): the bits needed to encode the last ``short_window`` values
  under an online n-gram model of the discretised series (:mod:`intelligence.anomaly.context`,
  after CAD-OSE's contextual novelty): a series that stays in range but moves in a new way.

Raw features have different, file-dependent scales, so each is turned into a tail probability
against its own history (:class:`TailCalibrator`, :mod:`intelligence.anomaly.calibration`: a
uniform sample of ``calibration_window`` past values; an exponential tail fitted from their
90th and 95th percentiles, never below the empirical frequency of values at least as large).
Each feature's surprise is ``-log10`` of that probability. The detector's score is the gated
combination of :mod:`intelligence.anomaly.alarms` (each feature discounted by its own recent
exceedance rate; lone weak evidence penalised), so one threshold means the same thing on every
series and can be chosen per application profile.

Feature calibration options, all off by default (:class:`FeatureOptions`: scored on NAB and
not adopted, see docs/intelligence/anomaly.md): a two-scale value z, the value feature on first
differences, the context code length relative to its recent mean, a minimum history per
calibrator, a generalised Pareto tail, the tails' quantiles, the context tail's scale, and
features kept as context only; and (fourth round, also off by default) a fifth feature,
``resonance``: how far the recent downsampled window lies from every window a fuzzy ART table
has learned (:mod:`intelligence.anomaly.resonance`, after ARTime), calibrated like the others
or turned into an HTM-style likelihood.

Alarms are sparse: the first point at or above ``alarm_level`` raises an alarm (reported as
``evidence["alarm"] == 1``) and further alarms are suppressed for ``refractory`` points unless
the score escalates by ``escalation``. State is bounded (windows, a fixed-size context table)
and the work per point is constant. Pure: numpy only, no I/O, no clock reads.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from intelligence.anomaly._recent import RecentMean
from intelligence.anomaly._streaming import UnivariateDetector
from intelligence.anomaly._windows import SortedWindow
from intelligence.anomaly.alarms import GateScorer, Refractory
from intelligence.anomaly.base import Direction, RingBuffer, Thresholds, signed_deviation
from intelligence.anomaly.calibration import GPDTailCalibrator, TailCalibrator
from intelligence.anomaly.context import ContextNovelty
from intelligence.anomaly.resonance import SHAPES, ErrorLikelihood, ResonanceNovelty
from intelligence.anomaly.season import SeasonSearch, detect_season

__all__ = ["FeatureOptions", "TailCalibrator", "TailProbabilityDetector", "detect_season"]

MAD_TO_SIGMA = 1.4826
IQR_TO_MAD = 0.5
"""For a symmetric distribution the interquartile range is twice the MAD."""
FEATURES = ("value", "level", "seasonal", "context", "resonance")
STEP_TO_SIGMA = 2.0 / math.sqrt(math.pi)
"""Mean absolute first difference of white noise, in its standard deviations."""
CONTEXT_MIN_SCALE = 1.0
"""Smallest tail scale of the context feature, in bits: less than a factor of two in probability
per event is not evidence (a perfectly repeating series otherwise alarms on a 0.1-bit wobble)."""
Z_MIN_SCALE = 0.25
"""Smallest tail scale of the value, level and seasonal features, in robust z units (eleventh
round, ``bench/anomaly_cap.py --z-floor``): after a flat stretch the first 0.02 % wobble is
not an alarm; 0.05-0.25 change no NAB alarm at the surprise ceiling, 0.5 loses a window. On a
bounded series (a sine plus noise) the value feature's fitted scale is ~0.06-0.09, so the floor
also raises its bar there (docs/intelligence/anomaly.md, eleventh round)."""
MAX_SURPRISE = 6.0
"""Most a feature's surprise may claim: a tail probability of one in a million points. The
exponential tail is fitted to the 90th-95th percentiles of at most 2000 past values; beyond
~1e-6 it is extrapolation, and where the history is a point mass (a flat stretch) its scale is
~0 and a small change scored up to 1e21. Chosen by the NAB protocol (eleventh round,
``bench/anomaly_cap.py``); at the default levels it keeps EMERGENCY (alarm level + 3.5)
reachable."""


class _RollingZ:
    """Robust z of each value against the trailing ``window`` values (expanding while warming).

    Centre: the median; scale: the interquartile range as a MAD-equivalent sigma.
    """

    def __init__(self, window: int, min_history: int) -> None:
        self.min_history = min_history
        self._hist = SortedWindow(window)
        self._sorted = self._hist.sorted_values()

    def update(self, x: float) -> tuple[float, float, float]:
        """Return ``(z, median, scale)`` of ``x`` (NaNs while warming up) and absorb it."""
        hist = self._hist
        srt = self._sorted  # the window's median() and at(), inlined: two per point
        n = len(srt)
        if n < self.min_history:
            hist.append(x)
            return float("nan"), float("nan"), float("nan")
        half = n // 2
        med = srt[half] if n % 2 else 0.5 * (srt[half - 1] + srt[half])
        iqr = srt[int(0.75 * (n - 1))] - srt[int(0.25 * (n - 1))]
        scale = max(MAD_TO_SIGMA * IQR_TO_MAD * iqr, 1e-9, 1e-3 * abs(med))
        hist.append(x)
        return abs(x - med) / scale, med, scale

    def clear(self) -> None:
        self._hist.clear()

    def __len__(self) -> int:
        return len(self._hist)


VALUE_MODES = ("value", "diff", "min")
CALIBRATION_TAILS = ("exponential", "gpd")
RESONANCE_OUTPUTS = ("calibrated", "likelihood")
VETO_FLOOR = 2.0
"""Scores below this are never vetoed (nor is the window's familiarity computed for them: it costs
a match against the table); no alarm level the NAB protocol offers is below it."""
RESONANCE_WINDOWS_PER_WINDOW = 13
"""Coded resonance windows per detector window when the step is derived (ARTime: 13 per
probationary period)."""


@dataclass(frozen=True)
class FeatureOptions:
    """Feature calibration options of issue 22's third round, all off by default but one.

    Each was scored on NAB under the cross-validated protocol and none was adopted
    (docs/intelligence/anomaly.md); they stay so that the bench can reprint their figures and a
    held-out check can try them. The exception is ``z_min_scale`` (eleventh round), on by
    default.

    Attributes:
        value_mode: raw input of the ``value`` feature: ``"value"`` (robust z of ``x[t]``),
            ``"diff"`` (robust z of the first difference ``x[t] - x[t-1]``, for random-walk-like
            series) or ``"min"`` (the smaller of the two).
        value_step_window: if > 0, the value z is taken against the larger of the window's scale
            and the recent step scale (mean ``|x[t] - x[t-1]|`` over this many points, as a
            sigma): a two-scale z, so a noisy stretch does not alarm on every bump.
        context_relative_window: if > 0, the context feature is the code length less its mean
            over this many previous points (novelty relative to recent novelty).
        context_min_scale: smallest tail scale of the context feature, in bits.
        z_min_scale: smallest tail scale of the value, level and seasonal features, in robust
            z units (0: none, the 1e-12 floor; on by default since the eleventh round): a
            history of identical values (a flat stretch) has no tail scale, and the first
            0.02 % wobble after it is otherwise an alarm.
        calibration_min_history: feature values a calibrator needs before it gives any surprise
            (None: the detector's ``min_history``).
        calibration_tail: ``"exponential"`` (:class:`TailCalibrator`) or ``"gpd"`` (a
            generalised Pareto tail fitted to the excesses, :class:`GPDTailCalibrator`).
        calibration_quantiles: the calibrators' ``lower`` and ``upper`` quantiles (where the tail
            starts, and the second quantile its scale is read from).
        scored_features: the features that may carry the score; the others are context only
            (:class:`GateScorer`'s ``silent``): they support other features and break the quiet
            lead-in, and their surprises stay in the evidence.
        resonance_window: if > 0, the ``resonance`` feature is on (fourth round,
            :mod:`intelligence.anomaly.resonance`): downsampled values per coded window.
        resonance_step: raw points per downsampled value (0: ``window / (13 * resonance_window)``
            rounded, at least 1, so a detector window holds about 13 coded windows).
        resonance_vigilance: match a window needs to resonate with a learned category.
        resonance_categories: most categories the resonance table keeps.
        resonance_output: ``"calibrated"`` (the novelty's tail probability, as for the other
            features) or ``"likelihood"`` (HTM's: the short mean of the novelty against its long
            history as a Gaussian tail, :class:`~intelligence.anomaly.resonance.ErrorLikelihood`).
        resonance_shape: how a window's shape is scaled, ``"window"`` (its own range, ARTime's)
            or ``"reference"`` (the warm-up's range, amplitude kept).
        resonance_veto: if > 0 (and the resonance feature on), taken off a score of at least
            ``VETO_FLOOR`` when the window ending at the point is familiar: its novelty is no
            larger than a ``resonance_familiar`` fraction of past windows' (ARTime's rule: a
            window that resonates with a learned category is not an anomaly).
        resonance_familiar: fraction of past window novelties at least as large as the
            current one's for the window to count as familiar (0.5: at most the median).
        season_refine_gain: if set, keep searching after a period is trusted and replace it
            by a trusted multiple of itself that removes at least this share of what the
            period leaves unexplained (``1 - acf``; 0: any trusted multiple). A weekly cycle
            then takes over from the daily one found in a short warm-up, and the seasonal
            feature is rebuilt from the searched history. Keeps ``season_horizon`` points for
            good instead of releasing them.
    """

    value_mode: str = "value"
    value_step_window: int = 0
    context_relative_window: int = 0
    context_min_scale: float = CONTEXT_MIN_SCALE
    z_min_scale: float = Z_MIN_SCALE
    calibration_min_history: int | None = None
    calibration_tail: str = "exponential"
    calibration_quantiles: tuple[float, float] = (0.90, 0.95)
    scored_features: tuple[str, ...] = FEATURES
    resonance_window: int = 0
    resonance_step: int = 0
    resonance_vigilance: float = 0.9
    resonance_categories: int = 64
    resonance_output: str = "calibrated"
    resonance_shape: str = "window"
    resonance_veto: float = 0.0
    resonance_familiar: float = 0.5
    season_refine_gain: float | None = None

    def __post_init__(self) -> None:
        """Refuse options the detector cannot work with, naming each."""
        if self.value_mode not in VALUE_MODES:
            raise ValueError(f"value_mode must be one of {VALUE_MODES}, got {self.value_mode!r}")
        for name in (
            "value_step_window",
            "context_relative_window",
            "context_min_scale",
            "z_min_scale",
            "resonance_step",
            "resonance_veto",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        low = self.calibration_min_history
        if low is not None and low < 2:
            raise ValueError(f"calibration_min_history must be >= 2 or None, got {low}")
        if self.calibration_tail not in CALIBRATION_TAILS:
            raise ValueError(
                f"calibration_tail must be one of {CALIBRATION_TAILS}, "
                f"got {self.calibration_tail!r}"
            )
        lower, upper = self.calibration_quantiles
        if not 0.0 < lower < upper < 1.0:
            raise ValueError(
                f"calibration_quantiles need 0 < lower < upper < 1, got {lower}, {upper}"
            )
        _check_resonance(self)
        gain = self.season_refine_gain
        if gain is not None and not 0.0 <= gain < 1.0:
            raise ValueError(f"season_refine_gain must be in [0, 1) or None, got {gain}")
        if not self.scored_features or any(k not in FEATURES for k in self.scored_features):
            raise ValueError(
                f"scored_features must be a non-empty subset of {FEATURES}, "
                f"got {self.scored_features}"
            )


def _check_resonance(opts: FeatureOptions) -> None:
    """Refuse resonance options the model cannot work with, naming each."""
    if opts.resonance_window < 0 or opts.resonance_window == 1:
        raise ValueError(f"resonance_window must be 0 (off) or >= 2, got {opts.resonance_window}")
    if not 0.0 < opts.resonance_vigilance <= 1.0:
        raise ValueError(f"resonance_vigilance must be in (0, 1], got {opts.resonance_vigilance}")
    if opts.resonance_categories < 1:
        raise ValueError(f"resonance_categories must be >= 1, got {opts.resonance_categories}")
    if not 0.0 <= opts.resonance_familiar <= 1.0:
        raise ValueError(f"resonance_familiar must be in [0, 1], got {opts.resonance_familiar}")
    if opts.resonance_veto and not opts.resonance_window:
        raise ValueError("resonance_veto needs the resonance feature (resonance_window > 0)")
    if opts.resonance_shape not in SHAPES:
        raise ValueError(f"resonance_shape must be one of {SHAPES}, got {opts.resonance_shape!r}")
    if opts.resonance_output not in RESONANCE_OUTPUTS:
        raise ValueError(
            f"resonance_output must be one of {RESONANCE_OUTPUTS}, got {opts.resonance_output!r}"
        )


class TailProbabilityDetector(UnivariateDetector):
    """Value, level, seasonal and context surprise as tail probabilities; gated, sparse alarms.

    The score is the gated combination of the features' ``-log10`` tail probabilities (see the
    module docstring); severities follow :class:`Thresholds` on that scale, and
    ``evidence["alarm"]`` marks the first point of each event.
    """

    name = "tail_probability"

    def __init__(
        self,
        *,
        window: int = 300,
        min_history: int = 50,
        short_window: int = 6,
        season_min_acf: float = 0.5,
        season_min_cycles: int = 4,
        season_horizon: int | None = None,
        alarm_level: float = 2.375,
        refractory: int | None = None,
        context_order: int | None = 4,
        context_bins: int = 8,
        context_max_contexts: int = 4096,
        escalation: float | None = 1.0,
        escalation_gap: int = 0,
        calibration_window: int = 2000,
        options: FeatureOptions | None = None,
        rate_window: int = 0,
        rate_level: float = 2.0,
        lone_penalty: float = 0.0,
        support_level: float = 1.3,
        quiet_window: int = 0,
        quiet_level: float = 2.0,
        quiet_penalty: float = 0.0,
        thresholds: Thresholds | None = None,
        direction: Direction = "both",
        max_surprise: float | None = MAX_SURPRISE,
    ) -> None:
        """Configure the detector.

        Args:
            window: trailing points for the medians / scales, and the warm-up after which the
                seasonal search starts (NAB: the probationary length).
            min_history: points needed before a feature is scored, and scores needed before a
                feature is calibrated.
            short_window: points in the recent window of the level test.
            season_min_acf: autocorrelation needed at the period and its multiples.
            season_min_cycles: cycles the searched history must hold for a period to count.
            season_horizon: points kept for the seasonal search (default ``4 * window``).
            alarm_level: score at which an alarm is raised.
            refractory: points after an alarm during which no new alarm is raised
                (default ``window // 2``).
            context_order: longest context of the context-novelty feature; None leaves the
                feature out. Its grid is fitted on the warm-up, which is then replayed through
                it (as for the seasonal feature).
            context_bins: quantiser cells across the warm-up's central 90%.
            context_max_contexts: most contexts the context model keeps.
            escalation: if set, a point inside the refractory period alarms anyway when its
                score is at least the last alarm's plus this much.
            escalation_gap: points an escalation must come after the alarm it breaks through
                (0: at once; fifth round, not adopted: a growing level shift then alarms once).
            calibration_window: size of the sample of past feature values each tail
                calibration is fitted on.
            options: feature calibration options of the third round (:class:`FeatureOptions`;
                the default, all off, is the adopted detector).
            rate_window: points over which each feature's own exceedances of ``rate_level``
                discount its surprise (0, the default, turns the discount off).
            rate_level: the surprise counted as an exceedance by the rate discount.
            lone_penalty: taken off the score when no second feature reaches
                ``support_level`` (weak evidence needs agreement).
            support_level: surprise a second feature needs to count as agreement.
            quiet_window: points before a point that must have been quiet (no raw surprise at
                or above ``quiet_level``) for its score to count in full, after contextOSE's
                rest period; 0 turns the rule off.
            quiet_level: the raw surprise that breaks the quiet.
            quiet_penalty: taken off the score of a point whose lead-in was not quiet.
            thresholds: severities on the score scale (default ``alarm_level`` / +1.5 / +3.5).
            direction: which alarms are raised: ``"up"`` only for a point above the trailing
                median, ``"down"`` only below it (an error rate only going up). A point the
                other way is scored as usual but neither alarms nor starts a refractory period,
                so it cannot hide an alarm the right way. ``"both"`` (the default) is the
                detector the NAB protocol measures.
            max_surprise: ceiling on every feature's surprise, hence on the score (None: no
                ceiling, the detector before the eleventh round). Must exceed
                ``alarm_level``; the default thresholds stop at it.
        """
        self.max_surprise = max_surprise
        super().__init__(thresholds=_thresholds(alarm_level, max_surprise, thresholds))
        self.options = opts = options or FeatureOptions()
        self._set_windows(window=window, min_history=min_history, short_window=short_window)
        self._set_context(order=context_order, bins=context_bins, max_contexts=context_max_contexts)
        self._set_calibration(window=calibration_window, min_history=opts.calibration_min_history)
        self._set_season(
            min_acf=season_min_acf, min_cycles=season_min_cycles, horizon=season_horizon
        )
        self._set_alarms(
            alarm_level=alarm_level,
            refractory=refractory,
            escalation=escalation,
            escalation_gap=escalation_gap,
            direction=direction,
        )
        self._set_gate(
            rate_window=rate_window,
            rate_level=rate_level,
            lone_penalty=lone_penalty,
            support_level=support_level,
            quiet_window=quiet_window,
            quiet_level=quiet_level,
            quiet_penalty=quiet_penalty,
        )
        self._reset_state()

    # The parts of the configuration, in the order __init__ checks them (so a detector given
    # several bad parameters names the same one first as ever). Each checks its parameters,
    # naming the one that is wrong, and stores them.

    def _set_windows(self, *, window: int, min_history: int, short_window: int) -> None:
        """The trailing window of the medians and scales (also the warm-up), the history a
        feature needs before it is scored, and the level test's recent window."""
        if min_history < 2 or window < min_history:
            raise ValueError(f"need 2 <= min_history <= window, got {min_history} and {window}")
        if short_window < 1:
            raise ValueError(f"short_window must be >= 1, got {short_window}")
        self.window = window
        self.min_history = min_history
        self.short_window = short_window

    def _set_context(self, *, order: int | None, bins: int, max_contexts: int) -> None:
        """The context-novelty feature's model: longest context (None: no feature), quantiser
        cells and the table's cap."""
        if order is not None and order < 0:
            raise ValueError(f"context_order must be >= 0 or None, got {order}")
        if bins < 1:
            raise ValueError(f"context_bins must be >= 1, got {bins}")
        self.context_order = order
        self.context_bins = bins
        self.context_max_contexts = max_contexts

    def _set_calibration(self, *, window: int, min_history: int | None) -> None:
        """The tail calibrators' sample size and the history they need (None: the detector's
        ``min_history``, which `_set_windows` stored)."""
        if window < self.min_history:
            raise ValueError(
                f"calibration_window must be >= min_history ({self.min_history}), got {window}"
            )
        if min_history is not None and window < min_history:
            raise ValueError(
                f"calibration_window must be >= options.calibration_min_history "
                f"({min_history}), got {window}"
            )
        self.calibration_window = window
        self.calibration_min_history = self.min_history if min_history is None else min_history

    def _set_season(self, *, min_acf: float, min_cycles: int, horizon: int | None) -> None:
        """The seasonal search's bar (autocorrelation and cycles) and the history it keeps
        (default four windows)."""
        self.season_min_acf = min_acf
        self.season_min_cycles = min_cycles
        self.season_horizon = 4 * self.window if horizon is None else horizon

    def _set_alarms(
        self,
        *,
        alarm_level: float,
        refractory: int | None,
        escalation: float | None,
        escalation_gap: int,
        direction: Direction,
    ) -> None:
        """The alarm level, the refractory rule (default half a window) and the direction
        alarms are raised in."""
        self.alarm_level = alarm_level
        self.refractory = self.window // 2 if refractory is None else refractory
        self.escalation = escalation
        self._refractory = Refractory(
            refractory=self.refractory, escalation=escalation, escalation_gap=escalation_gap
        )
        if direction not in ("both", "up", "down"):
            raise ValueError(f"direction must be 'both', 'up' or 'down', got {direction!r}")
        self.direction: Direction = direction

    def _set_gate(
        self,
        *,
        rate_window: int,
        rate_level: float,
        lone_penalty: float,
        support_level: float,
        quiet_window: int,
        quiet_level: float,
        quiet_penalty: float,
    ) -> None:
        """The gate that combines the features' surprises (:class:`GateScorer`; the features
        ``options.scored_features`` leaves out are its silent ones), and its rate and
        agreement parameters, exposed."""
        scored = self.options.scored_features
        self._gate = gate = GateScorer(
            features=len(FEATURES),
            rate_window=rate_window,
            rate_level=rate_level,
            lone_penalty=lone_penalty,
            support_level=support_level,
            quiet_window=quiet_window,
            quiet_level=quiet_level,
            quiet_penalty=quiet_penalty,
            silent=tuple(i for i, k in enumerate(FEATURES) if k not in scored),
        )
        self.rate_window = gate.rate_window
        self.rate_level = gate.rate_level
        self.lone_penalty = gate.lone_penalty
        self.support_level = gate.support_level

    def _reset_state(self) -> None:
        opts = self.options
        self._t = 0
        self._value_z = _RollingZ(self.window, self.min_history)
        self._diff_z = (
            _RollingZ(self.window, self.min_history) if opts.value_mode != "value" else None
        )
        self._last = float("nan")
        self._steps = RecentMean(opts.value_step_window) if opts.value_step_window else None
        self._recent_bits = (
            RecentMean(opts.context_relative_window) if opts.context_relative_window else None
        )
        self._value_options = self._steps is not None or self._diff_z is not None
        self._seasonal_z = _RollingZ(self.window, self.min_history)
        self._calib = {k: self._calibrator(k) for k in FEATURES}
        self._context: ContextNovelty | None = None
        self._resonance: ResonanceNovelty | None = None
        self._likelihood: ErrorLikelihood | None = None
        self._veto = opts.resonance_veto
        self._step_familiarity = math.nan
        self._at_step = False
        self._recent: deque[float] = deque(maxlen=self.short_window)
        self._refs: deque[tuple[float, float]] = deque(maxlen=self.short_window)
        self._warmup: list[float] = []
        self._warm = True
        self._search = SeasonSearch(
            horizon=self.season_horizon,
            every=max(self.window // 2, 1),
            min_acf=self.season_min_acf,
            min_cycles=self.season_min_cycles,
            refine_gain=opts.season_refine_gain,
        )
        self._season_buf: RingBuffer | None = None
        self._gate.reset()
        self._refractory.reset()

    @property
    def period(self) -> int | None:
        """The trusted seasonal period (None until one is found)."""
        return self._search.period

    def state_size(self) -> dict[str, int]:
        """How many values each part of the state holds (bounded; for tests and monitoring)."""
        sizes = {f"calibrator.{k}": len(c) for k, c in self._calib.items()}
        sizes["value_window"] = len(self._value_z)
        sizes["seasonal_window"] = len(self._seasonal_z)
        sizes["diff_window"] = len(self._diff_z) if self._diff_z is not None else 0
        sizes["step_window"] = len(self._steps) if self._steps is not None else 0
        sizes["context_recent"] = len(self._recent_bits) if self._recent_bits is not None else 0
        sizes["season_search"] = self._search.history().size
        sizes["warmup"] = len(self._warmup)
        sizes["gate"] = len(self._gate)
        sizes["context_table"] = len(self._context.model) if self._context is not None else 0
        res, lik = self._resonance, self._likelihood
        sizes["resonance_table"] = len(res) if res is not None else 0
        sizes["resonance_likelihood"] = len(lik) if lik is not None else 0
        return sizes

    def _calibrator(self, feature: str) -> TailCalibrator:
        """A new, empty calibrator for ``feature`` as the options ask."""
        opts = self.options
        calibrator = GPDTailCalibrator if opts.calibration_tail == "gpd" else TailCalibrator
        return calibrator(
            min_history=self.calibration_min_history,
            min_scale={"context": opts.context_min_scale, "resonance": 0.0}.get(
                feature, opts.z_min_scale
            ),
            capacity=self.calibration_window,
            lower=opts.calibration_quantiles[0],
            upper=opts.calibration_quantiles[1],
        )

    def _feature(self, name: str, raw: float) -> float:
        calib = self._calib[name]
        s = calib.surprise(raw)
        calib.add(raw)
        return s

    def _value_raw(self, x: float, z: float, scale: float) -> float:
        """The value feature's raw input: ``z`` as configured by the value options."""
        last, self._last = self._last, x
        steps = self._steps
        if steps is not None:
            sigma = steps.mean() / STEP_TO_SIGMA
            steps.append(abs(x - last))
            if sigma > scale:
                z *= scale / sigma
        if self._diff_z is None:
            return z
        dz = self._diff_z.update(x - last)[0]
        return dz if self.options.value_mode == "diff" else min(z, dz)

    def _context_raw(self, bits: float) -> float:
        """The context feature's raw input: the code length, less its recent mean if asked."""
        recent = self._recent_bits
        if recent is None:
            return bits
        out = bits - recent.mean()
        recent.append(bits)
        return out

    def _seasonal_raw(self, x: float) -> float:
        """Seasonal-difference z of ``x`` (NaN before the period is known and history exists)."""
        buf = self._season_buf
        if buf is None:
            return float("nan")
        lagged = float(buf.view()[0])
        buf.append(x)
        return self._seasonal_z.update(x - lagged)[0]

    def _start_season(self, history: np.ndarray) -> None:
        """A period was just trusted: replay the searched history through the seasonal feature
        (from scratch when it replaces a shorter period, ``season_refine_gain``)."""
        period = self._search.period
        assert period is not None
        if self._season_buf is not None:
            self._seasonal_z = _RollingZ(self.window, self.min_history)
            self._calib["seasonal"] = self._calibrator("seasonal")
        self._season_buf = RingBuffer(period)
        for v in history[:period]:
            self._season_buf.append(float(v))
        for v in history[period:]:
            self._feature("seasonal", self._seasonal_raw(float(v)))
        self._search.release()

    def _end_warmup(self) -> None:
        """Fit the context grid on the warm-up, replay it, and run the first season search."""
        warm = np.asarray(self._warmup, dtype=np.float64)
        self._warmup = []
        self._warm = False
        if self.context_order is not None:
            self._context = ContextNovelty(
                warm,
                order=self.context_order,
                bins=self.context_bins,
                short_window=self.short_window,
                max_contexts=self.context_max_contexts,
            )
            for v in warm:
                self._calib["context"].add(self._context_raw(self._context.update(float(v))))
        if self.options.resonance_window:
            self._start_resonance(warm)
        if self._search.period is None and self._search.search():
            self._start_season(self._search.history().copy())

    def _start_resonance(self, warm: np.ndarray) -> None:
        """Fit the resonance coding on the warm-up and replay it (learning, calibrating)."""
        opts = self.options
        step = opts.resonance_step or max(
            1, round(self.window / (RESONANCE_WINDOWS_PER_WINDOW * opts.resonance_window))
        )
        self._resonance = ResonanceNovelty(
            warm,
            window=opts.resonance_window,
            step=step,
            vigilance=opts.resonance_vigilance,
            categories=opts.resonance_categories,
            shape=opts.resonance_shape,
        )
        if opts.resonance_output == "likelihood":
            long = max(2 * self.min_history, self.calibration_window // step)
            self._likelihood = ErrorLikelihood(long=long, min_history=self.min_history)
        for v in warm:
            self._resonance_surprise(float(v))

    def _resonance_surprise(self, x: float) -> float:
        """The resonance feature's surprise at ``x`` (0 between downsampled points)."""
        assert self._resonance is not None
        novelty = self._resonance.update(x)
        self._at_step = novelty == novelty
        if not self._at_step:
            return 0.0
        calib = self._calib["resonance"]
        self._step_familiarity = calib.fraction_at_least(novelty)
        if self._likelihood is not None:
            calib.add(novelty)  # the familiarity's history
            s = self._likelihood.update(novelty)
            return s if s == s else 0.0
        return self._feature("resonance", novelty)

    def resonance_familiarity(self) -> float:
        """Fraction of past window novelties at least as large as that of the window ending at
        the latest point (NaN without the resonance feature or history)."""
        if self._resonance is None:
            return math.nan
        if self._at_step:
            return self._step_familiarity
        novelty = self._resonance.pending()
        return (
            self._calib["resonance"].fraction_at_least(novelty) if novelty == novelty else novelty
        )

    def _level(self, x: float, med: float, scale: float) -> float:
        """Two-window level statistic: the recent mean against the window as it stood before."""
        self._recent.append(x)
        self._refs.append((med, scale))
        if len(self._refs) < self.short_window:
            return float("nan")
        ref_med, ref_scale = self._refs[0]
        if not math.isfinite(ref_med):
            return float("nan")
        mean = sum(self._recent) / self.short_window
        return abs(mean - ref_med) / (ref_scale / math.sqrt(self.short_window))

    def _our_way(self, x: float, median: float) -> bool:
        """Whether `x` lies on the side of the trailing median `direction` alarms on (a
        point before the median is known counts either way)."""
        if self.direction == "both" or not math.isfinite(median):
            return True
        return signed_deviation(x - median, self.direction) > 0.0

    def _observe_season(self, x: float) -> None:
        if self._search.update(x):
            self._start_season(self._search.history().copy())
        if self._warm:
            self._warmup.append(x)
            if len(self._warmup) >= self.window:
                self._end_warmup()

    def _score_point(self, x: float) -> tuple[float, dict[str, float]]:
        t = self._t
        self._t += 1
        z, med, scale = self._value_z.update(x)
        level = self._level(x, med, scale)
        if self._value_options:
            z = self._value_raw(x, z, scale)
        seasonal = self._seasonal_raw(x)
        bits = self._context.update(x) if self._context is not None else float("nan")
        calib = self._calib  # _feature(), inlined: four calls a point
        c = calib["value"]
        s_value = c.surprise(z)
        c.add(z)
        c = calib["level"]
        s_level = c.surprise(level)
        c.add(level)
        c = calib["seasonal"]
        s_seasonal = c.surprise(seasonal)
        c.add(seasonal)
        if self.context_order is not None:
            raw = self._context_raw(bits) if self._recent_bits is not None else bits
            c = calib["context"]
            s_context = c.surprise(raw)
            c.add(raw)
        else:
            s_context = 0.0
        s_resonance = self._resonance_surprise(x) if self._resonance is not None else 0.0
        cap = self.max_surprise
        if cap is not None:  # spelled out: a generator here costs a microsecond per point
            s_value, s_level, s_seasonal = (
                min(s_value, cap),
                min(s_level, cap),
                min(s_seasonal, cap),
            )
            s_context, s_resonance = min(s_context, cap), min(s_resonance, cap)
        surprises = (s_value, s_level, s_seasonal, s_context, s_resonance)
        self._observe_season(x)
        score = self._gate.update(surprises)
        if (
            self._veto
            and score >= VETO_FLOOR
            and self.resonance_familiarity() >= self.options.resonance_familiar
        ):
            score -= self._veto
        alarm = (
            score >= self.alarm_level and self._our_way(x, med) and self._refractory.check(t, score)
        )
        evidence = {
            "score": score,
            "raw_score": max(surprises),
            "alarm": 1.0 if alarm else 0.0,
            "value_z": z,
            "level_z": level,
            "seasonal_z": seasonal,
            "context_bits": bits,
            "season": float(self.period or 0),
            "value_surprise": s_value,
            "level_surprise": s_level,
            "seasonal_surprise": s_seasonal,
            "context_surprise": s_context,
            "resonance_surprise": s_resonance,
        }
        return score, evidence


def _thresholds(
    alarm_level: float, max_surprise: float | None, thresholds: Thresholds | None
) -> Thresholds:
    """The severities on the score scale: ``thresholds``, or the alarm level and 1.5 / 3.5
    above it, stopped at the ceiling. Refuses a ceiling no alarm could reach, and thresholds
    above it, naming each."""
    if max_surprise is not None and not max_surprise > alarm_level:
        raise ValueError(
            f"max_surprise must be above alarm_level ({alarm_level}) or None, got {max_surprise}"
        )
    cap = math.inf if max_surprise is None else max_surprise
    if thresholds is None:
        return Thresholds(alarm_level, min(alarm_level + 1.5, cap), min(alarm_level + 3.5, cap))
    if thresholds.emergency > cap:
        raise ValueError(
            f"thresholds.emergency ({thresholds.emergency}) is above max_surprise ({cap}): "
            "no score could reach it"
        )
    return thresholds
