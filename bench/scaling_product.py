"""What a ScalingPolicy manifest gets, replayed on the protocol's traces.

The replay protocol (`scaling_replay.py`) scores `ScalingParams` built by the bench
(`scaling_replay.Config`); a user writes a ScalingPolicy, and the operator builds the
parameters from it with `adapters.scaling.scaling_params`. This bench builds them the
operator's way from manifests and replays them in the same harness, deciding every 5 s (the
protocol's cadence) and every 15 s (the operator's default `interval`, as
`scaling_interval.py` replays it), against the harness's HPA:

* `minimal`: `metric.targetPerInstance`, `forecast.startupSeconds` and the bounds; nothing
  else written.
* `capacity+window`: also `metric.capacityPerInstance` (the harness's capacity) and
  `metric.averagingWindowSeconds: 15` (the harness's metric), as docs/scalingpolicy.md advises.
  `forecast.minimumHistory` keeps its 24 h, longer than every trace: the envelope decides
  throughout, as it does in a policy's first day.
* `... trusted after 10m`: `capacity+window` with `forecast.minimumHistory: 10m`, the
  harness's trust rule: what a policy gets once its forecast is trusted (its lead beyond
  start-up, `forecast.bufferSeconds`, is 15 s by default, the protocol's horizon;
  `scaling_buffer.py` replays others).
* `..., scaleDown 300 s`: the same with `behavior.scaleDown.stabilizationWindowSeconds: 300`
  written: every mode keeps instances for HPA's window, as every policy did before the
  adapter's mode windows (`adapters.scaling.MODE_SCALE_DOWN_WINDOW_SECONDS`).
* `..., envelope 60 s`: the protocol's envelope window (60 s) instead of the adapter's 120 s
  (not expressible in the API: a written window is every mode's).
* `adopted`: the protocol's `ADOPTED` configuration, for reference.
* `..., operator's backtest` (`... trusted after 10m` and `adopted`): forecasts fitted as the
  operator fits them (`ForecastTape.load(backtest="operator")`: models chosen, and the trust
  rule's sMAPE measured, by a backtest over a third of the trace's day at 3 origins,
  `controllers.scalingpolicy.models.backtest_steps`), not at the decision's lead over 4
  origins as the protocol's tapes are.

Nothing here is a configuration of the protocol: it scores no setting and adds nothing to
the count.

    .venv/bin/python bench/scaling_product.py      # ~2 min with the forecast tapes cached
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scaling_interval import Interval  # noqa: E402
from scaling_replay import ADOPTED, STARTUPS, loss, ratios, replay, traces_by_name  # noqa: E402
from scaling_sim import ForecastTape, Ours, Outcome, Trace, service, simulate  # noqa: E402

from adapters.scaling import scaling_params  # noqa: E402
from apis.v1alpha1.scalingpolicy import ScalingPolicy  # noqa: E402
from intelligence.scaling import ScalingParams  # noqa: E402

INTERVALS = (5, 15)
TRUSTED = {"minimumHistory": "10m"}
HPA_WINDOW = {"scaleDown": {"stabilizationWindowSeconds": 300}}


def manifest(
    trace: Trace,
    startup: int,
    *,
    sized: bool = True,
    forecast: dict[str, Any] | None = None,
    behavior: dict[str, Any] | None = None,
) -> ScalingPolicy:
    """The ScalingPolicy a user of the harness's service would write."""
    target, capacity = service(trace)
    metric: dict[str, Any] = {"source": "prometheus", "query": "load", "targetPerInstance": target}
    if sized:
        metric |= {"capacityPerInstance": capacity, "averagingWindowSeconds": 15}
    spec: dict[str, Any] = {
        "targetRef": {"name": trace.name.replace("_", "-")},
        "metric": metric,
        "minInstances": 1,
        "maxInstances": 1000,
        "forecast": {"startupSeconds": startup, **(forecast or {})},
    }
    if behavior is not None:
        spec["behavior"] = behavior
    return ScalingPolicy.model_validate(
        {"apiVersion": "xynergy.io/v1alpha1", "kind": "ScalingPolicy", "metadata": {"name": "p"}}
        | {"spec": spec}
    )


Build = Callable[[Trace, int], ScalingParams]
VARIANTS: dict[str, Build] = {
    "minimal": lambda t, s: scaling_params(manifest(t, s, sized=False)),
    "capacity+window": lambda t, s: scaling_params(manifest(t, s)),
    "capacity+window, scaleDown 300 s": lambda t, s: scaling_params(
        manifest(t, s, behavior=HPA_WINDOW)
    ),
    "... trusted after 10m": lambda t, s: scaling_params(manifest(t, s, forecast=TRUSTED)),
    "... trusted after 10m, scaleDown 300 s": lambda t, s: scaling_params(
        manifest(t, s, forecast=TRUSTED, behavior=HPA_WINDOW)
    ),
    "capacity+window, envelope 60 s": lambda t, s: replace(
        scaling_params(manifest(t, s)), burst_scale_down_window_seconds=60
    ),
    "... trusted after 10m, envelope 60 s": lambda t, s: replace(
        scaling_params(manifest(t, s, forecast=TRUSTED)), burst_scale_down_window_seconds=60
    ),
    "adopted": lambda t, s: ADOPTED.params(t, s),
    "... trusted after 10m, operator's backtest": lambda t, s: scaling_params(
        manifest(t, s, forecast=TRUSTED)
    ),
    "adopted, operator's backtest": lambda t, s: ADOPTED.params(t, s),
}
OPERATOR_FITS = {"... trusted after 10m, operator's backtest", "adopted, operator's backtest"}
"""Variants whose forecasts are fitted as the operator fits them (`ForecastTape.load`'s
`backtest="operator"`); the others use the protocol's tapes."""


def run(
    params: ScalingParams, trace: Trace, startup: int, interval: int, *, operator: bool = False
) -> Outcome:
    _, capacity = service(trace)
    tape = ForecastTape.load(
        trace, startup=startup, sync=5, backtest="operator" if operator else "lead"
    )
    scaler = (
        Ours(params, tape=tape) if interval == 5 else Interval(params, tape=tape, interval=interval)
    )
    return simulate(trace, scaler, capacity=capacity, startup=startup)


def main() -> int:
    met = {(name, i): 0 for name in VARIANTS for i in INTERVALS}
    for interval in INTERVALS:
        print(f"\ndeciding every {interval} s: under x HPA's / hours x HPA's (* meets the box)")
        print(
            f"{'trace':<18} {'start':>5}  "
            + "  ".join(f"{'v' + str(k):>16}" for k in range(len(VARIANTS)))
        )
        for trace in traces_by_name().values():
            for startup in STARTUPS:
                hpa = replay(trace, None, startup)
                cells = []
                for name, build in VARIANTS.items():
                    ours = run(
                        build(trace, startup),
                        trace,
                        startup,
                        interval,
                        operator=name in OPERATOR_FITS,
                    )
                    under, hours = ratios(ours, hpa)
                    ok = loss(ours, hpa) <= 1.0
                    met[name, interval] += ok
                    cells.append(f"{under:5.2f}/{hours:5.3f}{'*' if ok else ' '}")
                print(f"{trace.name:<18} {startup:>4}s  " + "  ".join(f"{c:>16}" for c in cells))
    total = 2 * len(traces_by_name())
    print(f"\ncells meeting the box (of {total}):")
    print(f"   {'manifest':<40} " + " ".join(f"{f'every {i} s':>10}" for i in INTERVALS))
    for k, name in enumerate(VARIANTS):
        print(f"v{k} {name:<40} " + " ".join(f"{met[name, i]:>10}" for i in INTERVALS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
