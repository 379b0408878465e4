"""What a ScalingPolicy's `status.observedUnderProvisioning` reads against the harness's truth.

The status reports the share of recent time the load was above what the serving instances
carry, as the policy sees it: the 15 s metric at each decision, instances serving from one
start-up after they were asked for (`intelligence/scaling/exceedance.py`). The harness
(`scaling_sim.simulate`) knows the truth: every second's load against the instances ready at
that second. This bench replays the adopted default (`scaling_replay.ADOPTED`) on every trace
at both start-ups and prints both shares over the whole trace, so a user can read how far the
status understates the time short on each kind of traffic.

Nothing here is a configuration: it scores no setting and adds nothing to the count.

    nice -n 10 .venv/bin/python bench/scaling_observed.py    # ~4 min
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scaling_replay import ADOPTED, STARTUPS  # noqa: E402
from scaling_sim import ForecastTape, Ours, all_traces, service, simulate  # noqa: E402


def main() -> int:
    print(f"{'trace':<22}{'start-up':>9}{'harness':>9}{'status':>8}  (share of the trace's time)")
    for trace in all_traces():
        for startup in STARTUPS:
            _, capacity = service(trace)
            tape = ForecastTape.load(trace, startup=startup, sync=5) if ADOPTED.forecast else None
            scaler = Ours(ADOPTED.params(trace, startup), tape=tape)
            truth = simulate(trace, scaler, capacity=capacity, startup=startup).under_all
            seen = scaler.state.exceedance.share
            print(f"{trace.name:<22}{startup:>8}s{truth:>9.4f}{seen:>8.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
