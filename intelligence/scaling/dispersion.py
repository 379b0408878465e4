"""Dispersion headroom: margin for the per-second noise the averaged metric hides.

Every autoscaler sees a mean over a window (15 s), while a service is short of capacity in the
seconds its load is above what it can serve. Per-second request counts scatter around their
rate (a Poisson count's variance equals its mean; bursty arrivals scatter more), and that
scatter is invisible in the window means: if per-second counts are independent around a smooth
rate with variance `v`, successive window means scatter by `v / window` only. Read backwards,
the scatter of the means around their local trend estimates the per-second variance:
`v ~ window * var(means)`, and the index of dispersion `D = v / rate` (1 for Poisson counts in
requests per second) carries it over to another rate. The level that the per-second load
stays under with about normal probability `z` sigmas is then

    level = rate + z * sqrt(rate * D),

and the decision provisions it under `capacity_per_instance`: it adds instances only where the
per-second noise is large against the margin the target already leaves (low rates, bursty
arrivals), and none on a smooth series.

The scatter is read from second differences of means taken `sample` seconds apart,
`d_t = m_t - 2 m_{t-1} + m_{t-2}` (a straight-line trend cancels). With `k = window / sample`
(an integer: non-overlapping means for k = 1, overlapping ones for k > 1) and per-second white
noise of variance `v`, `E[d_t d_{t-1}] = -c_k * sample * v / window**2`, `c_1 = 4`, `c_2 = 1`,
`c_k = 2` beyond (the block sums the two differences share, with opposite signs); a smooth
curve (a ramp that bends, a linearly interpolated series at its knots) makes successive second
differences of the same sign instead. So `v = max(0, -mean(d_t d_{t-1})) * window**2 /
(c_k * sample)`, exponentially weighted with half-life `half_life` seconds, counts the noise
and not the curvature. Overlapping means see the load at `sample`-second resolution: noise that
is white at the window's scale but smooth at the sample's (a moving average, bursts lasting
several seconds, a series interpolated between coarse points) reads as correlated, not as
per-second noise; non-overlapping means cannot tell the two apart and read both as per-second
noise (k = 1 overstates the per-second spread of such traffic, up to sqrt(window) times).
State: a handful of numbers (`Dispersion`), O(1) per decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from intelligence.scaling._evolve import evolve

__all__ = [
    "Dispersion",
    "dispersion_level",
    "observe_dispersion",
    "quadrature_level",
    "relative_sigmas",
]

MIN_PRODUCTS = 8  # products of successive second differences before the estimate is used


@dataclass(frozen=True)
class Dispersion:
    """The estimator's state: when the last window mean was taken (`last`), the last two
    means (`m1` newest), the last second difference (`d1`), the exponentially weighted mean
    load (`mean`) and mean product of successive second differences (`cross`, bias-corrected:
    the weighted sum over the sum of weights `weight`, so the first products do not stand for
    the whole average), and how many products were averaged (`products`, capped)."""

    last: float | None = None
    m1: float | None = None
    m2: float | None = None
    d1: float | None = None
    mean: float | None = None
    cross: float = 0.0
    weight: float = 0.0
    products: int = 0

    def index(self, window: float, sample: float) -> float | None:
        """The per-second index of dispersion `v / mean` (None until estimated), for means
        over `window` seconds taken every `sample` seconds."""
        if self.products < MIN_PRODUCTS or self.mean is None or self.mean <= 0:
            return None
        if self.weight <= 0:
            return None
        k = max(1, round(window / sample))
        shared = 4.0 if k == 1 else 1.0 if k == 2 else 2.0
        cross = self.cross / self.weight
        return max(0.0, -cross) * window * window / (shared * sample) / self.mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "last": self.last,
            "m1": self.m1,
            "m2": self.m2,
            "d1": self.d1,
            "mean": self.mean,
            "cross": self.cross,
            "weight": self.weight,
            "products": self.products,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dispersion:
        def num(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            last=num("last"),
            m1=num("m1"),
            m2=num("m2"),
            d1=num("d1"),
            mean=num("mean"),
            cross=float(data.get("cross", 0.0)),
            weight=float(data.get("weight", 0.0)),
            products=int(data.get("products", 0)),
        )


def observe_dispersion(
    disp: Dispersion, *, now: float, load: float, sample: float, half_life: float
) -> Dispersion:
    """`disp` after the window mean `load` seen at `now`: a sample is taken once per `sample`
    seconds; after a gap of more than two samples the chain of differences restarts (the
    averages are kept)."""
    if disp.last is not None and now - disp.last < sample * (1 - 1e-9):
        return disp
    gap = math.inf if disp.last is None else now - disp.last
    weight = 1.0 - 0.5 ** (min(gap, 4 * half_life) / half_life)
    mean = load if disp.mean is None else disp.mean + weight * (load - disp.mean)
    if gap > 2 * sample or disp.m1 is None:
        return evolve(disp, last=now, m1=load, m2=None, d1=None, mean=mean)
    if disp.m2 is None:
        return evolve(disp, last=now, m1=load, m2=disp.m1, mean=mean)
    d = load - 2 * disp.m1 + disp.m2
    cross, total, products = disp.cross, disp.weight, disp.products
    if disp.d1 is not None:  # exponentially weighted sums of products and of weights
        cross = (1 - weight) * cross + weight * d * disp.d1
        total = (1 - weight) * total + weight
        products = min(products + 1, 1_000_000)
    return Dispersion(now, load, disp.m1, d, mean, cross, total, products)


def dispersion_level(rate: float, *, index: float, sigmas: float) -> float:
    """`rate + sigmas * sqrt(rate * index)`: the per-second level at `rate`."""
    rate = max(0.0, rate)
    return rate + sigmas * math.sqrt(rate * max(0.0, index))


def quadrature_level(centre: float, margin: float, *, index: float, sigmas: float) -> float:
    """`centre + sqrt(margin^2 + sigmas^2 * centre * index)`: a mode's margin above `centre`
    and the per-second noise at `centre` taken as independent deviations (variances add)."""
    centre = max(0.0, centre)
    noise = sigmas * sigmas * centre * max(0.0, index)
    return centre + math.sqrt(max(0.0, margin) ** 2 + noise)


def relative_sigmas(
    rate: float,
    *,
    index: float,
    spare: float,
    risk_ratio: float,
    sigmas: float,
    cantelli: bool = False,
) -> float:
    """The z at which the per-second level is exceeded `risk_ratio` times as often as the
    level the target alone provisions, `rate x (1 + spare)` (`spare` = capacity / target - 1,
    0 without a capacity), under a normal approximation of the per-second load (with
    `cantelli`, under Cantelli's bound `1 / (1 + z^2)` instead); at most `sigmas`. The
    target's own margin is `z_t = spare x sqrt(rate / index)` sigmas, exceeded with
    probability `Q(z_t)`, and `z = Q^-1(risk_ratio x Q(z_t))`: near `z_t` where the target
    already covers the noise (high rates), a fixed small z where it covers little (low rates),
    so the margin bought is priced against the risk the target leaves, not fixed in sigmas."""
    rate, index = max(0.0, rate), max(0.0, index)
    if rate == 0 or index == 0:
        return sigmas
    covered = max(0.0, spare) * math.sqrt(rate / index)
    if covered >= sigmas:
        return sigmas  # the target's margin covers `sigmas` already: nothing to add
    if cantelli:  # risk_ratio / (1 + z_t^2) = 1 / (1 + z^2)
        return min(sigmas, math.sqrt((1.0 + covered * covered) / risk_ratio - 1.0))
    risk = risk_ratio * 0.5 * math.erfc(covered / math.sqrt(2.0))
    return min(sigmas, -NormalDist().inv_cdf(risk))
