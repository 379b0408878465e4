"""`kubectl xynergy forecast NAME`: a ScalingPolicy's recent load, forecast and bounds, and the
replica plan, as an 80-column terminal chart (or `--output json` for scripts).

Everything comes from the policy's status (forecast points with lower/upper bounds, current
and desired instances, mode), read through the `apis` model; the recent load is read from the
policy's Prometheus (`metric.prometheusUrl`, else `--prometheus-url` /
XYNERGY_SCALING_PROMETHEUS_URL) when one is configured and answers, else the chart shows the
forecast alone and says why. The plan is the instances each forecast point's upper bound needs
at `metric.targetPerInstance`, within the policy's bounds (the controller's behaviour limits
may take longer to get there).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import click
from lightkube import ApiError, Client
from lightkube.generic_resource import create_namespaced_resource

from apis.base import parse_duration
from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.scalingpolicy import MetricSource, ScalingPolicy
from controllers.plugin.kinds import names_of, namespace_option
from controllers.plugin.output import emit, output_option

__all__ = ["forecast", "plan", "render"]

RESOURCE = create_namespaced_resource(GROUP, VERSION, "ScalingPolicy", "scalingpolicies")
HEIGHT = 12
LABEL = 9  # "12345.6 |"
Recent = list[tuple[float, float]]


@dataclass(frozen=True)
class _Point:
    time: float
    value: float
    lower: float
    upper: float
    instances: int | None


def _points(policy: ScalingPolicy) -> list[_Point]:
    status = policy.status
    per = policy.spec.metric.target_per_instance
    low, high = policy.spec.min_instances, policy.spec.max_instances
    out = []
    for p in (status.forecast if status else None) or []:
        lower = p.value if p.lower is None else p.lower
        upper = p.value if p.upper is None else p.upper
        need = math.ceil(upper / per - 1e-9)
        need = max(need, low) if low is not None else need
        need = min(need, high) if high is not None else need
        out.append(_Point(p.time.timestamp(), p.value, lower, upper, need))
    return out


def plan(obj: dict[str, Any], *, recent: Recent | None, now: float) -> dict[str, Any]:
    """The view as data (what `--output json` prints)."""
    policy = ScalingPolicy.model_validate(obj)
    s = policy.status
    return {
        "name": policy.metadata.name,
        "namespace": policy.metadata.namespace,
        "target": policy.spec.target_ref.name,
        "now": _iso(now),
        "mode": str(s.mode) if s and s.mode else None,
        "modeReason": s.mode_reason if s else None,
        "currentInstances": s.current_instances if s else None,
        "desiredInstances": s.desired_instances if s else None,
        "currentLoad": s.current_load if s else None,
        "targetPerInstance": policy.spec.metric.target_per_instance,
        "model": s.model if s else None,
        "modelError": s.model_error if s else None,
        "recent": [[_iso(t), v] for t, v in recent or []],
        "forecast": [
            {
                "time": _iso(p.time),
                "value": p.value,
                "lower": p.lower,
                "upper": p.upper,
                "instances": p.instances,
            }
            for p in _points(policy)
        ],
    }


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _offset(seconds: float) -> str:
    if abs(seconds) < 30:
        return "now"
    sign, m = ("+" if seconds > 0 else "-"), round(abs(seconds) / 60)
    return f"{sign}{m // 60}h{m % 60:02d}m" if m >= 60 else f"{sign}{m}m"


def _num(v: float) -> str:
    """A number in at most LABEL - 2 characters."""
    text = f"{v:.4g}"
    return text if len(text) <= LABEL - 2 else f"{v:.1e}"


class _Canvas:
    """A character grid over [t0, t1] x [lo, hi]."""

    def __init__(self, *, t0: float, t1: float, lo: float, hi: float, width: int) -> None:
        self.t0, self.t1, self.lo, self.hi = t0, t1, lo, hi
        self.cols = width - LABEL
        self.grid = [[" "] * self.cols for _ in range(HEIGHT)]

    def col(self, t: float) -> int:
        return round((t - self.t0) / (self.t1 - self.t0) * (self.cols - 1))

    def row(self, v: float) -> int:
        r = round((self.hi - v) / (self.hi - self.lo) * (HEIGHT - 1))
        return min(HEIGHT - 1, max(0, r))

    def put(self, t: float, v: float, ch: str) -> None:
        c = self.col(t)
        if 0 <= c < self.cols:
            self.grid[self.row(v)][c] = ch

    def lines(self) -> list[str]:
        out = []
        for r, cells in enumerate(self.grid):
            label = ""
            if r in (0, HEIGHT // 2, HEIGHT - 1):
                label = _num(self.hi - (self.hi - self.lo) * r / (HEIGHT - 1))
            out.append(f"{label:>{LABEL - 2}} |{''.join(cells)}".rstrip())
        return out


def _interpolated(points: list[_Point], t: float) -> tuple[float, float, float] | None:
    for a, b in itertools.pairwise(points):
        if a.time <= t <= b.time:
            w = (t - a.time) / (b.time - a.time) if b.time > a.time else 0.0
            return tuple(
                x + w * (y - x)
                for x, y in ((a.value, b.value), (a.lower, b.lower), (a.upper, b.upper))  # type: ignore[return-value]
            )
    return None


def _chart(
    policy: ScalingPolicy, points: list[_Point], recent: Recent, *, now: float, width: int
) -> list[str]:
    horizon = parse_duration(policy.spec.forecast.horizon)
    t0 = now - max(horizon, 3600.0)
    t1 = max([now + horizon, *(p.time for p in points)])
    values = [v for _, v in recent] + [x for p in points for x in (p.lower, p.upper)]
    status = policy.status
    per = policy.spec.metric.target_per_instance
    capacity = (status.desired_instances or 0) * per if status else 0.0
    lo, hi = min(values, default=0.0), max([*values, capacity], default=1.0)
    lo, hi = (lo - 1, hi + 1) if hi - lo < 1e-9 else (lo, hi)
    canvas = _Canvas(t0=t0, t1=t1, lo=lo, hi=hi, width=width)
    for c in range(canvas.cols):
        t = t0 + (t1 - t0) * c / (canvas.cols - 1)
        band = _interpolated(points, t)
        if band is not None:
            for r in range(canvas.row(band[2]), canvas.row(band[1]) + 1):
                canvas.grid[r][c] = ":"
            canvas.put(t, band[0], "o")
        elif capacity > 0 and canvas.grid[canvas.row(capacity)][c] == " ":
            canvas.grid[canvas.row(capacity)][c] = "-"
    for t, v in recent:
        canvas.put(t, v, "*")
    c = canvas.col(now)
    for r in range(HEIGHT):
        if canvas.grid[r][c] == " ":
            canvas.grid[r][c] = "|"
    axis = [" "] * canvas.cols
    for t in (t0, now, t1):
        text = _offset(t - now)
        start = min(max(0, canvas.col(t) - len(text) // 2), canvas.cols - len(text))
        axis[start : start + len(text)] = text
    return [
        *canvas.lines(),
        " " * (LABEL - 1) + "+" + "-" * canvas.cols,
        " " * LABEL + "".join(axis).rstrip(),
    ]


def _plan_lines(points: list[_Point], *, now: float, width: int) -> list[str]:
    if not points:
        return []
    step = max(1, math.ceil(len(points) / 6))
    chosen = points[::step]
    cells = [f"{_offset(p.time - now)}: {p.instances}" for p in chosen]
    line, out = "Plan:", []
    for cell in cells:
        if len(line) + len(cell) + 3 > width:
            out.append(line)
            line = "     "
        line += f" {cell} |"
    out.append(line.rstrip(" |"))
    return out


def render(
    obj: dict[str, Any],
    *,
    recent: Recent | None,
    now: float,
    width: int = 80,
    why_no_recent: str = "",
) -> str:
    """The terminal view: header, chart (`*` recent load, `o` forecast, `:` its bounds, `-`
    the desired instances' capacity, `|` now) and the replica plan."""
    policy = ScalingPolicy.model_validate(obj)
    s = policy.status
    name = f"{policy.metadata.namespace}/{policy.metadata.name}"
    if s is None:
        return f"ScalingPolicy {name}: no status yet"
    points = _points(policy)
    per = policy.spec.metric.target_per_instance
    lines = [
        f"ScalingPolicy {name} -> {policy.spec.target_ref.name}   mode {s.mode or '-'}",
        f"instances {s.current_instances} -> {s.desired_instances}   load {s.current_load}"
        f"   {per:g} per instance",
        f"model {s.model or '-'}   sMAPE {s.model_error if s.model_error is not None else '-'}%",
    ]
    if s.mode_reason:
        lines.append(f"why: {s.mode_reason}")
    lines = [line[:width] for line in lines]
    if not points and not recent:
        return "\n".join([*lines, "no forecast in status yet"])
    lines += _chart(policy, points, recent or [], now=now, width=width)
    lines.append("* load  o forecast  : bounds  - desired capacity  | now")
    if not recent:
        lines.append(f"recent load not shown: {why_no_recent or 'no metrics source'}"[:width])
    lines += _plan_lines(points, now=now, width=width)
    return "\n".join(lines)


def _recent(policy: ScalingPolicy, url: str | None, now: float) -> tuple[Recent | None, str]:
    """The last hour or horizon of load from the policy's Prometheus, or why not."""
    from controllers.providers.metrics import MetricsError
    from controllers.providers.prometheus import PrometheusProvider, range_step

    metric = policy.spec.metric
    url = metric.prometheus_url or url
    if metric.source is not MetricSource.PROMETHEUS or not url or not metric.query:
        return None, "the policy's metric is not read from a Prometheus this plugin can reach"
    query = metric.query
    span = max(parse_duration(policy.spec.forecast.horizon), 3600.0)

    async def read() -> Recent:
        provider = PrometheusProvider(url, timeout=5.0)
        try:
            step = range_step(span, minimum=15.0, points=120)
            samples = await provider.query_range(query, start=now - span, end=now, step=step)
        finally:
            await provider.close()
        return list(zip(samples.timestamps.tolist(), samples.values.tolist(), strict=True))

    try:
        return asyncio.run(read()), ""
    except MetricsError as exc:
        return None, exc.message


@click.command()
@click.argument("name", shell_complete=names_of("ScalingPolicy"))
@namespace_option
@output_option
@click.option(
    "--prometheus-url",
    default=lambda: os.environ.get("XYNERGY_SCALING_PROMETHEUS_URL"),
    help="Prometheus for the recent load when the policy names none.",
)
@click.option("--width", type=click.IntRange(60, 400), default=80, show_default=True)
@click.pass_context
def forecast(
    ctx: click.Context,
    name: str,
    namespace: str,
    output: str,
    prometheus_url: str | None,
    width: int,
) -> None:
    """Recent load, forecast and bounds, and the replica plan of ScalingPolicy NAME."""
    factory = (ctx.obj or {}).get("client_factory", Client)
    try:
        obj: Any = factory().get(RESOURCE, name, namespace=namespace)
    except ApiError as exc:
        raise click.ClickException(
            f"scalingpolicy {namespace}/{name}: {exc.status.message}"
        ) from exc
    body: dict[str, Any] = obj.to_dict()
    now = time.time()
    recent, why = _recent(ScalingPolicy.model_validate(body), prometheus_url, now)
    emit(
        plan(body, recent=recent, now=now) if output != "text" else None,
        output,
        lambda: render(body, recent=recent, now=now, width=width, why_no_recent=why),
    )
