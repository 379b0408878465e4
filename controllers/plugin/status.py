"""`kubectl xynergy get KIND [NAME]` and `kubectl xynergy status KIND NAME`: any of the four
kinds with the kstatus verdict (what Flux reads) and the conditions; `-o json|yaml` for scripts.
"""

from __future__ import annotations

from typing import Any

import click
from lightkube import ALL_NS

from apis.conditions import Condition, kstatus
from controllers.plugin.kinds import (
    Kind,
    client,
    complete_kind,
    fetch,
    kind_named,
    names_of,
    namespace_option,
)
from controllers.plugin.output import emit, output_option

__all__ = ["get", "status", "summary"]


def summary(obj: dict[str, Any]) -> dict[str, Any]:
    """Name, kstatus verdict, phase, Ready and its reason/message, conditions (data)."""
    meta, st = obj.get("metadata") or {}, obj.get("status") or {}
    conditions = [Condition.model_validate(c) for c in st.get("conditions") or []]
    ready = next((c for c in conditions if c.type == "Ready"), None)
    return {
        "kind": obj.get("kind"),
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "kstatus": kstatus(
            generation=meta.get("generation"),
            observed_generation=st.get("observedGeneration"),
            conditions=conditions,
        ).value,
        "phase": st.get("phase"),
        "ready": ready.status if ready else None,
        "reason": ready.reason if ready else None,
        "message": ready.message if ready else None,
        "generation": meta.get("generation"),
        "observedGeneration": st.get("observedGeneration"),
        "conditions": [c.model_dump(mode="json", by_alias=True) for c in conditions],
    }


def _status_text(s: dict[str, Any]) -> str:
    lines = [
        f"{s['kind']} {s['namespace']}/{s['name']}: {s['kstatus']}"
        + (f" ({s['phase']})" if s["phase"] else ""),
        f"generation {s['generation']}, observed {s['observedGeneration']}",
    ]
    lines += [
        f"{c['type']}={c['status']} {c.get('reason', '')}: {c.get('message', '')}"
        for c in s["conditions"]
    ]
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]], *, namespaces: bool) -> str:
    if not rows:
        return "No resources found."
    cols = ["NAMESPACE"] * namespaces + ["NAME", "KSTATUS", "READY", "REASON", "MESSAGE"]
    cells = [
        [r["namespace"]] * namespaces
        + [r["name"], r["kstatus"], r["ready"] or "-", r["reason"] or "-", r["message"] or ""]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *cells, strict=True)]
    return "\n".join(
        "   ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in [cols, *cells]
    )


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name", shell_complete=names_of())
@namespace_option
@output_option
@click.pass_context
def status(ctx: click.Context, kind: str, name: str, namespace: str, output: str) -> None:
    """kstatus verdict, phase and conditions of one object (KIND: xs, sp, ro, oc, ...)."""
    found = summary(fetch(ctx, kind_named(kind), name, namespace))
    emit(found, output, lambda: _status_text(found))


def _list(ctx: click.Context, kind: Kind, namespace: str | None) -> list[dict[str, Any]]:
    items: Any = client(ctx).list(kind.resource, namespace=namespace or ALL_NS)
    return [summary(o.to_dict()) for o in items]


@click.command()
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name", required=False, shell_complete=names_of())
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@output_option
@click.pass_context
def get(
    ctx: click.Context,
    kind: str,
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    output: str,
) -> None:
    """List objects of KIND (or one, NAME) with their kstatus verdict and Ready reason."""
    found = kind_named(kind)
    if name:
        rows = [summary(fetch(ctx, found, name, namespace))]
    else:
        rows = _list(ctx, found, None if all_namespaces else namespace)
    emit(
        rows if name is None else rows[0],
        output,
        lambda: _table(rows, namespaces=all_namespaces),
    )
