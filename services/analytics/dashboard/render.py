"""The Platform Dashboard's panels as server-rendered HTML with plain SVG plots.

Pure: the answer of ``/phase3/complete-dashboard`` (a dict) in, an HTML fragment out; every
value from the cluster or the store goes through ``html.escape``. The page swaps the fragment
in whenever the event stream says something changed, so there is no client-side templating
and no charting library: a plot is an ``<svg>`` with a forecast band (``polygon.band``), the
point forecast and data points (``circle.pt``), the load now and the capacity the replicas
give (replicas x target per instance).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["panels", "scaling_plot"]

W, H, PAD = 360.0, 150.0, 28.0


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str) -> str:
    """A table; ``rows`` cells are already-escaped HTML."""
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _section(title: str, key: str, content: Any, body: Callable[[Any], str]) -> str:
    """A panel; a section the service could not read shows why."""
    if content is None:
        inner = '<p class="unavailable">not available</p>'
    elif isinstance(content, dict) and "error" in content:
        inner = f'<p class="unavailable">{e(content["error"])}</p>'
    else:
        inner = body(content)
    return f'<section class="panel" id="{key}"><h2>{e(title)}</h2>{inner}</section>'


def _health(ready: dict[str, Any] | None) -> str:
    status = (ready or {}).get("status", "Unknown")
    cls = {"True": "ok", "False": "bad"}.get(status, "unknown")
    why = " ".join(x for x in ((ready or {}).get("reason"), (ready or {}).get("message")) if x)
    return (
        f'<span class="health {cls}" data-ready="{e(status)}" title="{e(why)}">{e(status)}</span>'
    )


def _services(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<p class="empty">no services of this tenant</p>'
    rows = [
        [
            f'<span class="name">{e(s["name"])}</span>',
            _health(s.get("ready")),
            e((s.get("ready") or {}).get("reason")),
            f"{e(s.get('ready_replicas'))}/{e(s.get('replicas'))}",
            e(s.get("profile")),
            e(s.get("backend")),
        ]
        for s in items
    ]
    head = ["service", "ready", "reason", "ready/replicas", "profile", "backend"]
    return _table(head, rows, "services")


def _verdicts(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "-"
    parts = []
    for run in runs:
        verdict = run.get("verdict") or "?"
        step = run.get("step_index")
        label = "" if step is None else f"step {step}:"
        parts.append(
            f'<span class="verdict v-{e(str(verdict).lower())}">{e(label)} {e(verdict)}</span>'
        )
    return " ".join(parts)


def _rollouts(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<p class="empty">no rollouts</p>'
    rows = [
        [
            e(r["name"]),
            e(r.get("target")),
            e(r.get("strategy")),
            e(r.get("phase")),
            e(r.get("step")),
            e(r.get("canary_weight")),
            _verdicts(r.get("verdicts") or []),
            e(r.get("message")),
        ]
        for r in items
    ]
    head = ["rollout", "service", "strategy", "phase", "step", "weight", "verdicts", "message"]
    return _table(head, rows, "rollouts")


def _points(policy: dict[str, Any]) -> list[tuple[float, float, float, float]]:
    """(t, value, lower, upper) of the forecast, in time order."""
    out = []
    for p in policy.get("forecast") or []:
        t = dt.datetime.fromisoformat(str(p["time"]).replace("Z", "+00:00")).timestamp()
        v = float(p["value"])
        low = float(p["lower"]) if p.get("lower") is not None else v
        high = float(p["upper"]) if p.get("upper") is not None else v
        out.append((t, v, low, high))
    return sorted(out)


def scaling_plot(policy: dict[str, Any], *, now: float) -> str:
    """One policy's plot: forecast band and points, load now, replica capacity (SVG)."""
    pts = _points(policy)
    load = policy.get("current_load")
    per = float(policy.get("target_per_instance") or 1)
    replicas = [
        float(x) for x in (policy.get("current_instances"), policy.get("desired_instances")) if x
    ]
    if not pts and load is None:
        return '<p class="empty">no load or forecast observed yet</p>'
    t0 = min([now] + [p[0] for p in pts])
    t1 = max([now + 1] + [p[0] for p in pts])
    ys = (
        [p[3] for p in pts] + [p[2] for p in pts] + [float(load or 0)] + [r * per for r in replicas]
    )
    y1: float = max([*ys, 1.0]) * 1.1

    def x(t: float) -> float:
        return PAD + (W - 2 * PAD) * (t - t0) / (t1 - t0)

    def y(v: float) -> float:
        return H - PAD - (H - 2 * PAD) * v / y1

    parts = [f'<line class="axis" x1="{PAD}" y1="{y(0):.1f}" x2="{W - PAD}" y2="{y(0):.1f}"/>']
    if pts:
        upper = " ".join(f"{x(t):.1f},{y(hi):.1f}" for t, _, _, hi in pts)
        lower = " ".join(f"{x(t):.1f},{y(lo):.1f}" for t, _, lo, _ in reversed(pts))
        parts.append(f'<polygon class="band" points="{upper} {lower}"/>')
        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v, _, _ in pts)
        parts.append(f'<polyline class="forecast" points="{line}"/>')
        parts += [
            f'<circle class="pt" cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" data-value="{v:g}"/>'
            for t, v, _, _ in pts
        ]
    for name in ("current", "desired"):
        count = policy.get(f"{name}_instances")
        if count:
            yy = y(count * per)
            parts.append(
                f'<line class="replicas {name}" x1="{PAD}" y1="{yy:.1f}" x2="{W - PAD}" '
                f'y2="{yy:.1f}"><title>{name}: {e(count)} replicas</title></line>'
            )
    if load is not None:
        parts.append(
            f'<circle class="load" cx="{x(now):.1f}" cy="{y(float(load)):.1f}" r="4">'
            f"<title>load now {e(load)}</title></circle>"
        )
    parts.append(f'<text class="ymax" x="2" y="{PAD - 6}">{y1:.3g}</text>')
    label = e(f"{policy.get('target')}: forecast band, load and replicas")
    return (
        f'<svg class="plot scaling" viewBox="0 0 {W:g} {H:g}" role="img" aria-label="{label}" '
        f'data-target="{e(policy.get("target"))}">{"".join(parts)}</svg>'
    )


def _scaling(items: list[dict[str, Any]], now: float) -> str:
    if not items:
        return '<p class="empty">no scaling policies</p>'
    cards = []
    for p in items:
        if "error" in p:
            cards.append(f'<div class="card"><h3>{e(p["name"])}</h3><p>{e(p["error"])}</p></div>')
            continue
        facts = (
            f"load {e(p.get('current_load'))} · replicas {e(p.get('current_instances'))}"
            f" → {e(p.get('desired_instances'))} · mode {e(p.get('mode_in_effect') or p['mode'])}"
        )
        cards.append(
            f'<div class="card"><h3>{e(p.get("target"))} <small>{e(p["name"])}</small></h3>'
            f'<p class="facts">{facts}</p>{scaling_plot(p, now=now)}</div>'
        )
    return '<div class="cards">' + "".join(cards) + "</div>"


def _alerts(summary: dict[str, Any]) -> str:
    if not summary.get("enabled", True):
        return '<p class="empty">the anomaly engine is off (no Prometheus configured)</p>'
    live = summary.get("open") or []
    if not live:
        return '<p class="empty">no open alerts</p>'
    rows = [
        [
            e(a.get("service")),
            e(a.get("metric")),
            f'<span class="sev">{e(a.get("severity"))}</span>',
            e(a.get("value")),
        ]
        for a in live
    ]
    return _table(["service", "metric", "severity", "value"], rows, "alerts")


def _costs(report: dict[str, Any]) -> str:
    items = report.get("services") or []
    if not items:
        return '<p class="empty">no cost recorded yet</p>'
    rows = [[e(c["service"]), f"{float(c['cost_usd']):.6f}"] for c in items]
    total = f'<p class="total">total {float(report.get("total_usd") or 0):.6f} USD over '
    total += f"{e(report.get('window_hours'))} h</p>"
    return _table(["service", "cost (USD)"], rows, "costs") + total


def _last_run(run: dict[str, Any] | None) -> list[str]:
    if not run:
        return ["-", '<span class="outcome o-none">never run</span>', ""]
    outcome = str(run.get("outcome"))
    return [
        e(run.get("due")),
        f'<span class="outcome o-{e(outcome)}">{e(outcome)}</span>',
        e(run.get("error")),
    ]


def _schedules(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<p class="empty">no schedules</p>'
    rows = [
        [
            f'<span class="name" data-schedule="{e(s["id"])}">{e(s["workflow"])}</span>',
            f"<code>{e(s['cron'])}</code> {e(s['timezone'])}",
            e(s["missed_run_policy"]),
            "yes" if s.get("enabled") else "no",
            *_last_run(s.get("last_run")),
        ]
        for s in items
    ]
    head = ["workflow", "cron", "missed runs", "enabled", "last due", "outcome", "error"]
    return _table(head, rows, "schedules")


def panels(data: dict[str, Any], *, now: float) -> str:
    """Every panel of the dashboard from ``/phase3/complete-dashboard``'s answer."""
    return "".join(
        [
            f'<p class="generated" data-generated="{e(data.get("generated_at"))}">'
            f"tenant {e(data.get('tenant'))} · {e(data.get('generated_at'))}</p>",
            _section("Services", "services", data.get("services"), _services),
            _section("Rollouts", "rollouts", data.get("deployments"), _rollouts),
            _section("Scaling", "scaling", data.get("scaling"), lambda s: _scaling(s, now)),
            _section("Open alerts", "alerts", data.get("anomalies") or {}, _alerts),
            _section("Cost per service", "costs", data.get("costs"), _costs),
            _section("Schedules", "schedules", data["schedules"], _schedules)
            if "schedules" in data
            else "",
        ]
    )
