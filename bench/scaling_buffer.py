"""What scaling ahead costs: a ScalingPolicy's `forecast.bufferSeconds` replayed at 15 s to 30 min.

A trusted forecast is provisioned over start-up + `forecast.bufferSeconds` (its upper
quantile's peak over that span), and the harness's forecast tapes are backtested at that lead.
Until `bufferSeconds` existed the lead was `forecast.horizon`, 30 minutes by default; the
replay protocol runs 15 s. This bench builds the policy from a manifest the operator's way
(`scaling_product.manifest`: capacity, a 15 s averaging window, the forecast trusted after
10 minutes, the harness's trust rule) with `forecast.bufferSeconds` set to each of `BUFFERS`,
fits the tapes to reach that lead (`ForecastTape.load(horizon=...)`, cached) and replays every
trace at start-ups 30 and 60 s, deciding every 5 s, against the harness's HPA. It prints each
cell's ratios, the share of decisions the forecast made, and the cells meeting the box per
buffer (the 1800 s column is what every predictive policy did before `bufferSeconds`).

The traces' time is partly compressed (the `_30x` traces play a day in 48 minutes), so on them
a buffer of B seconds stands for 30 B of the original series: read the real-time traces
(`azure_*`) for what a buffer means in wall-clock time.

Nothing here is a configuration of the protocol: it scores no setting and adds nothing to the
count.

    .venv/bin/python bench/scaling_buffer.py      # ~5 min cold (tape fits), then ~3 min
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scaling_product import TRUSTED, manifest  # noqa: E402
from scaling_replay import STARTUPS, loss, ratios, replay, traces_by_name  # noqa: E402
from scaling_sim import ForecastTape, Ours, Trace, service, simulate  # noqa: E402

from adapters.scaling import scaling_params  # noqa: E402
from intelligence.scaling import DecisionMode  # noqa: E402

BUFFERS = (15, 60, 300, 1800)


def run(trace: Trace, startup: int, buffer: int) -> tuple[float, float, bool, float]:
    """(under x HPA's, hours x HPA's, meets the box, share of predictive decisions)."""
    policy = manifest(trace, startup, forecast=TRUSTED | {"bufferSeconds": buffer})
    tape = ForecastTape.load(trace, startup=startup, sync=5, horizon=buffer)
    scaler = Ours(scaling_params(policy), tape=tape)
    _, capacity = service(trace)
    ours = simulate(trace, scaler, capacity=capacity, startup=startup)
    hpa = replay(trace, None, startup)
    under, hours = ratios(ours, hpa)
    predictive = scaler.modes.get(DecisionMode.PREDICTIVE, 0) / max(1, sum(scaler.modes.values()))
    return under, hours, loss(ours, hpa) <= 1.0, predictive


def main() -> int:
    print("under x HPA's / hours x HPA's (* meets the box) [share of decisions by the forecast]")
    print(f"{'trace':<18} {'start':>5}  " + "  ".join(f"{f'buffer {b} s':>24}" for b in BUFFERS))
    met = dict.fromkeys(BUFFERS, 0)
    for trace in traces_by_name().values():
        for startup in STARTUPS:
            cells = []
            for buffer in BUFFERS:
                under, hours, ok, predictive = run(trace, startup, buffer)
                met[buffer] += ok
                cells.append(f"{under:5.2f}/{hours:5.3f}{'*' if ok else ' '} [{predictive:4.0%}]")
            print(f"{trace.name:<18} {startup:>4}s  " + "  ".join(f"{c:>24}" for c in cells))
    total = 2 * len(traces_by_name())
    print(
        f"\ncells meeting the box (of {total}): "
        + ", ".join(f"{met[b]} at buffer {b} s" for b in BUFFERS)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
