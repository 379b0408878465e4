"""Rolling-origin evaluation of the forecasters on real series, and the fitting-speed figure.

Series (read from ../shared/data, never copied): NAB realKnownCause/nyc_taxi (30 min, daily and
weekly seasons), every NAB realTraffic series (5-10 min, irregular with multi-day gaps), and
per-minute request counts built from the two Azure LLM inference traces (one hour each: no
season is visible, so this checks the short-history path).

For each series the last `--origins` non-overlapping windows of one horizon are forecast by
every model (and by AutoForecaster, which runs its own inner backtest on each training head);
every model sees only the history before each origin. Errors are counted at observed points
only. MASE is scaled by the in-sample seasonal naive error; "vs naive" is the model's MAE over
seasonal naive's MAE on the very same windows (below 1.0 beats the baseline).

Speed: fitting 14 days of 1-minute data (20,160 points; real values from NAB
machine_temperature re-stamped at 1-minute spacing), median of 5 fits per model.

Run from the repository root::

    .venv/bin/python bench/forecast_eval.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread: predictable on a busy host

import argparse
import csv
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("XYNERGY_SHARED_DATA") or ROOT.parent / "shared" / "data")

from intelligence.forecasting import (  # noqa: E402
    DAY,
    WEEK,
    AutoForecaster,
    HoltWinters,
    RidgeSeasonal,
    SeasonalNaive,
    resample,
)
from intelligence.forecasting.metrics import mape, naive_scale, smape  # noqa: E402
from intelligence.forecasting.resampling import relevel, season_steps  # noqa: E402


def load_nab(rel: str) -> tuple[np.ndarray, np.ndarray]:
    with open(DATA / "nab" / "data" / rel) as fh:
        rows = list(csv.reader(fh))[1:]
    t = np.array([datetime.fromisoformat(r[0] + "+00:00").timestamp() for r in rows])
    return t, np.array([float(r[1]) for r in rows])


def load_azure_per_minute(name: str) -> tuple[np.ndarray, np.ndarray]:
    with open(DATA / "azure-llm" / f"AzureLLMInferenceTrace_{name}.csv") as fh:
        rows = list(csv.reader(fh))[1:]
    t = np.array([datetime.fromisoformat(r[0][:26] + "+00:00").timestamp() for r in rows])
    minute = np.floor((t - t[0]) / 60).astype(int)
    counts = np.bincount(minute)[:-1]  # drop the partial last minute
    return t[0] + 60.0 * np.arange(counts.size), counts.astype(float)


Factory = Callable[[], object]


def models(periods: tuple[float, ...], step: float, horizon: int) -> dict[str, Factory]:
    main = periods[0] if periods else DAY
    harm = tuple(8 if i == 0 else 4 for i in range(len(periods)))
    return {
        "seasonal_naive": lambda: SeasonalNaive(period=main, step=step),
        "holt_winters": lambda: HoltWinters(period=main, step=step),
        "ridge": lambda: RidgeSeasonal(periods=periods, harmonics=harm, step=step),
        "auto": lambda: AutoForecaster(periods=periods, step=step, horizon=horizon, origins=3),
    }


def evaluate(
    name: str,
    t: np.ndarray,
    y: np.ndarray,
    *,
    step: float,
    periods: tuple[float, ...],
    horizon: int,
    origins: int,
) -> list[tuple[str, ...]]:
    raw = resample(t, y, step=step)
    m = season_steps(step, periods[0]) if periods else 1
    facts = models(periods, step, horizon)
    errs: dict[str, list[np.ndarray]] = {k: [] for k in facts}
    cover: dict[str, int] = dict.fromkeys(facts, 0)
    scaled: dict[str, list[float]] = {k: [] for k in facts}
    truths: list[np.ndarray] = []
    preds: dict[str, list[np.ndarray]] = {k: [] for k in facts}
    chosen: dict[str, int] = {}
    used = 0
    for i in range(origins, 0, -1):
        cut = raw.n - i * horizon
        seen = ~raw.filled[cut : cut + horizon]
        if cut < 2 * horizon or not seen.any():
            continue
        used += 1
        head = raw.head(cut)
        truth = raw.values[cut : cut + horizon][seen]
        truths.append(truth)
        scale = naive_scale(relevel(head, period_steps=m).values, period=m)
        for key, make in facts.items():
            model = make()
            if key == "auto":
                model.fit_series(head)  # type: ignore[attr-defined]
                tag = model.predict(1).model  # type: ignore[attr-defined]
                chosen[tag] = chosen.get(tag, 0) + 1
            else:
                model.fit_series(relevel(head, period_steps=m))  # type: ignore[attr-defined]
            fc = model.predict(horizon)  # type: ignore[attr-defined]
            p = fc.point[seen]
            preds[key].append(p)
            errs[key].append(np.abs(truth - p))
            scaled[key].append(float(np.mean(np.abs(truth - p))) / scale if scale > 0 else np.nan)
            cover[key] += int(np.sum((truth >= fc.lower[seen]) & (truth <= fc.upper[seen])))
    rows: list[tuple[str, ...]] = []
    a = np.concatenate(truths)
    naive_mae = float(np.mean(np.concatenate(errs["seasonal_naive"])))
    for key in facts:
        p = np.concatenate(preds[key])
        mae = float(np.mean(np.concatenate(errs[key])))
        extra = ""
        if key == "auto":
            extra = " ".join(f"{k}:{v}" for k, v in sorted(chosen.items()))
        rows.append(
            (
                name,
                key,
                f"{used}x{horizon}",
                f"{np.nanmean(scaled[key]):.3f}",
                f"{mae / naive_mae:.3f}" if naive_mae > 0 else "nan",
                f"{smape(a, p):.1f}",
                f"{mape(a, p):.1f}",
                f"{cover[key] / a.size:.2f}",
                extra,
            )
        )
    return rows


def speed() -> list[tuple[str, str]]:
    _, values = load_nab("realKnownCause/machine_temperature_system_failure.csv")
    n = 14 * 1440
    y = values[:n]
    t = 1_700_000_000.0 + 60.0 * np.arange(n)
    out = []
    makers: dict[str, Factory] = {
        "seasonal_naive": lambda: SeasonalNaive(period=DAY),
        "holt_winters": lambda: HoltWinters(period=DAY),
        "ridge": lambda: RidgeSeasonal(periods=(DAY, WEEK)),
        "auto (3 origins x 60 steps backtest + refit)": lambda: AutoForecaster(
            periods=(DAY, WEEK), horizon=60, origins=3
        ),
    }
    for key, make in makers.items():
        make().fit(t, y)  # type: ignore[attr-defined]  # warm-up
        times = []
        for _ in range(5):
            start = time.perf_counter()
            make().fit(t, y)  # type: ignore[attr-defined]
            times.append(time.perf_counter() - start)
        out.append((key, f"{1000 * float(np.median(times)):.0f} ms"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    table: list[tuple[str, ...]] = []
    t, y = load_nab("realKnownCause/nyc_taxi.csv")
    table += evaluate(
        "nyc_taxi", t, y, step=1800, periods=(DAY, WEEK), horizon=48, origins=args.origins
    )
    for path in sorted((DATA / "nab" / "data" / "realTraffic").glob("*.csv")):
        t, y = load_nab(f"realTraffic/{path.name}")
        step = float(np.median(np.diff(t)))
        table += evaluate(
            path.stem, t, y, step=step, periods=(DAY,), horizon=12, origins=args.origins
        )
    for name in ("code", "conv"):
        t, y = load_azure_per_minute(name)
        table += evaluate(f"azure_{name}/min", t, y, step=60, periods=(DAY,), horizon=5, origins=6)
    head = ("series", "model", "windows", "MASE", "vs naive", "sMAPE%", "MAPE%", "cover80", "")
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    for r in [head, *table]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    auto_rows = [r for r in table if r[1] == "auto"]
    beats = sum(1 for r in auto_rows if float(r[4]) <= 1.0)
    print(f"\nauto at or below seasonal naive's MAE on {beats}/{len(auto_rows)} series")
    print("\nspeed: fit 14 days of 1-minute data (20,160 points); target <= 200 ms")
    for key, value in speed():
        print(f"  {key:48s} {value}")
    print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
