"""What the replay's figures become at the operator's decision interval.

The replay harness lets the policy decide every 5 s; a ScalingPolicy decides every
`spec.interval`, 30 s by default. Each sync, the operator reads the metric's means at 5 s
steps since the previous one and passes them to `decide` as `Observation.recent_means`
(the dispersion headroom sees the same samples as at 5 s decisions), with the recent load
for the burst envelope. This bench replays the adopted default (`scaling_replay.ADOPTED`)
deciding every 5, 15 and 30 s with exactly that information (the same 15 s metric read every
5 s, the same forecasts), so only the decision cadence changes, against the harness's HPA
(15 s sync, phase 0), and prints each cell's ratios and how many cells meet the box.

Nothing here is a configuration of the policy: it scores no setting and adds nothing to the
count.

    .venv/bin/python bench/scaling_interval.py      # ~15 s with the forecast tapes cached
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scaling_replay import ADOPTED, STARTUPS, loss, ratios, replay, traces_by_name  # noqa: E402
from scaling_sim import T0, ForecastTape, Ours, Outcome, service, simulate  # noqa: E402

INTERVALS = (5, 15, 30)
READ_STEP = 5  # seconds between the means the operator reads (and the harness's sync)


@dataclass
class Interval(Ours):
    """The adopted policy as the operator runs it: stepped by the harness every 5 s, it reads
    the metric each time and decides only every `interval` s, passing the means read since
    its last decision as `recent_means`."""

    interval: int = 30
    pending: list[tuple[float, float]] = field(default_factory=list)

    def step(self, now: float, current: int, metric: float) -> int:
        if round(now - T0) % self.interval:
            self.first = now if self.first is None else self.first
            self.seen.append((now, metric))
            self.pending.append((now, metric))
            return current
        means, self.pending = tuple(self.pending), []
        return self.decide_at(now, current, metric, means)


def run(interval: int, startup: int, trace_name: str) -> Outcome:
    trace = traces_by_name()[trace_name]
    if interval == READ_STEP:
        return replay(trace, ADOPTED, startup)  # the harness's own replay
    _, capacity = service(trace)
    tape = ForecastTape.load(trace, startup=startup, sync=READ_STEP)
    scaler = Interval(ADOPTED.params(trace, startup), tape=tape, interval=interval)
    return simulate(trace, scaler, capacity=capacity, startup=startup)


def main() -> int:
    print(f"ours = {ADOPTED.name}, deciding every {', '.join(map(str, INTERVALS))} s")
    header = f"{'trace':<18} {'start':>5}  " + "  ".join(
        f"{f'every {i} s: under x / hours x':>30}" for i in INTERVALS
    )
    print(header)
    met = dict.fromkeys(INTERVALS, 0)
    for trace in traces_by_name().values():
        for startup in STARTUPS:
            hpa = replay(trace, None, startup)
            cells = []
            for interval in INTERVALS:
                ours = run(interval, startup, trace.name)
                under, hours = ratios(ours, hpa)
                ok = loss(ours, hpa) <= 1.0
                met[interval] += ok
                cells.append(f"{under:5.2f} / {hours:5.3f} {'meets' if ok else 'misses':>6}")
            print(f"{trace.name:<18} {startup:>4}s  " + "  ".join(f"{c:>30}" for c in cells))
    print(
        "\ncells meeting the box: "
        + ", ".join(f"{met[i]}/{2 * len(traces_by_name())} deciding every {i} s" for i in INTERVALS)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
