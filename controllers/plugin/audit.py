"""`kubectl xynergy audit`: the compliance report of the security policies (docs/security.md)
over the objects that exist, so a rule can be introduced in warn mode and its findings fixed
before it denies. The rules are `apis.policies` (the CEL policies' twin, tested to agree); the
parameters are the live ConfigMap the policies read. `-o json|yaml` for scripts, and
`--fail-on SEVERITY` makes findings at or above it the exit status (CI gates)."""

from __future__ import annotations

from typing import Any

import click
from lightkube import ALL_NS, ApiError, Client
from lightkube.resources.core_v1 import ConfigMap, Namespace

from apis.policies import PARAMS_NAME, PRODUCTION_LABEL, RULES, SEVERITIES, Params, report
from apis.policies import report_body as body_of
from controllers.plugin.kinds import KINDS, client, namespace_option
from controllers.plugin.output import emit, output_option

__all__ = ["audit", "collect"]

JUDGED = sorted({kind for rule in RULES.values() for kind in rule.kinds})


def _params(kube: Client, namespace: str) -> tuple[Params | None, str | None]:
    try:
        cm: Any = kube.get(ConfigMap, PARAMS_NAME, namespace=namespace)
    except ApiError as exc:
        if exc.status.code == 404:
            return None, None
        raise
    return Params.from_data(cm.data), f"{namespace}/{PARAMS_NAME}"


def collect(kube: Client, *, namespace: str | None, params_namespace: str) -> dict[str, Any]:
    """The report over `namespace` (every namespace when None), as data."""
    objects: list[dict[str, Any]] = []
    for kind in JUDGED:
        items: Any = kube.list(KINDS[kind].resource, namespace=namespace or ALL_NS)
        objects += [{**item.to_dict(), "kind": kind} for item in items]
    key, value = PRODUCTION_LABEL
    spaces: Any = kube.list(Namespace, labels={key: value})
    production = [n.metadata.name for n in spaces]
    params, source = _params(kube, params_namespace)
    findings = report(objects, params=params, production_namespaces=production)
    return body_of(findings, params_source=source)


def _text(data: dict[str, Any]) -> str:
    rows = [
        [f["severity"], f["rule"], "{kind}/{namespace}/{name}".format(**f["object"]), f["message"]]
        for f in data["findings"]
    ]
    summary = ", ".join(f"{n} {s}" for s, n in data["summary"].items())
    head = f"Parameters: {data['params'] or f'MISSING ({PARAMS_NAME})'}. Findings: {summary}."
    if not rows:
        return head
    cols = ["SEVERITY", "RULE", "OBJECT", "MESSAGE"]
    widths = [max(len(r[i]) for r in [cols, *rows]) for i in range(3)]
    lines = [
        "   ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[3]])
        for r in [cols, *rows]
    ]
    return "\n".join([head, *lines])


@click.command()
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@click.option(
    "--params-namespace",
    default="xynergy-system",
    show_default=True,
    help=f"Where the policies' parameters ConfigMap ({PARAMS_NAME}) lives.",
)
@click.option(
    "--fail-on",
    type=click.Choice(SEVERITIES),
    default=None,
    help="Exit 1 when a finding is at or above this severity.",
)
@output_option
@click.pass_context
def audit(
    ctx: click.Context,
    namespace: str,
    all_namespaces: bool,
    params_namespace: str,
    fail_on: str | None,
    output: str,
) -> None:
    """Findings of the security policies over existing XynergyServices, Rollouts and
    OAuthConnections, most severe first."""
    data = collect(
        client(ctx),
        namespace=None if all_namespaces else namespace,
        params_namespace=params_namespace,
    )
    emit(data, output, lambda: _text(data))
    if fail_on is not None:
        worst = SEVERITIES[: SEVERITIES.index(fail_on) + 1]
        if any(f["severity"] in worst for f in data["findings"]):
            ctx.exit(1)
