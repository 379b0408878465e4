"""`kubectl xynergy rollout status|promote|abort|retry|undo NAME`.

Actions are the annotation `xynergy.io/rollout-action` = `<verb>/<unique suffix>` (what an Argo
CD or Flux user can write declaratively too); the operator acts on a value once and records it
in `status.handledAction`. `status --watch` reprints the view on every change of the object.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click
from lightkube import ApiError, Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from apis.v1alpha1.common import GROUP, VERSION
from apis.v1alpha1.rollout import AnalysisRunSummary, CheckResult, Rollout, RolloutStatus
from controllers.plugin.kinds import names_of, namespace_option
from controllers.plugin.output import emit, output_option

__all__ = ["ACTION_ANNOTATION", "render", "rollout"]

ACTION_ANNOTATION = "xynergy.io/rollout-action"
RESOURCE = create_namespaced_resource(GROUP, VERSION, "Rollout", "rollouts")
ClientFactory = Callable[[], Client]


def _client(ctx: click.Context) -> Client:
    factory: ClientFactory = (ctx.obj or {}).get("client_factory", Client)
    return factory()


def render(obj: dict[str, Any]) -> str:
    """The status view: phase, step, weights, revisions, last analysis, conditions."""
    ro = Rollout.model_validate(obj)
    s = ro.status
    if s is None:
        return f"Rollout {ro.metadata.name}: no status yet"
    canary = ro.spec.strategy.canary
    steps = f"/{len(canary.steps)}" if canary else ""
    weight = s.canary_weight or 0
    lines = [
        f"Rollout:   {ro.metadata.namespace}/{ro.metadata.name} -> {ro.spec.target_ref.name}",
        f"Phase:     {s.phase.value if s.phase else '-'}  {s.message or ''}",
        f"Step:      {(s.current_step_index or 0)}{steps}",
        f"Weights:   stable {100 - weight}%  canary {weight}%",
        f"Stable:    {s.stable_revision or '-'}  ({s.stable_image or '-'})",
        f"Canary:    {s.canary_revision or '-'}  ({s.canary_image or '-'})  {s.canary_url or ''}",
    ]
    runs = s.analysis_runs or []
    for i, run in enumerate(runs[-3:], start=max(0, len(runs) - 3)):
        if run.stage is not None:
            latest = all(later.stage != run.stage for later in runs[i + 1 :])
            lines.extend(_verification(ro, s, run, latest=latest))
            continue
        lines.append(
            f"Analysis:  step {run.step_index} look {run.look} {run.verdict.value} "
            f"score {run.score} at {run.canary_weight}%"
        )
        lines.extend(f"           {line}" for line in run.evidence or [])
    for cond in s.conditions:
        lines.append(f"Condition: {cond.type}={cond.status} {cond.reason}: {cond.message}")
    return "\n".join(lines)


def _verification(
    ro: Rollout, status: RolloutStatus, run: AnalysisRunSummary, *, latest: bool
) -> list[str]:
    """`Verification preTraffic: Failed (healthz GET /healthz: expected status 200, got status
    503)`. The checks come from status.verification, which keeps the latest run of each stage;
    an older run of the stage shows its evidence lines instead."""
    assert run.stage is not None
    head = f"Verification {run.stage.value}: {run.verdict.value}"
    stored = next((v for v in status.verification or [] if v.stage == run.stage), None)
    if not latest or stored is None:
        return [head, *(f"           {line}" for line in run.evidence or [])]
    failed = [c for c in stored.checks if not c.passed]
    if not failed:
        return [f"{head} ({len(stored.checks)} checks passed)"]
    return [f"{head} ({'; '.join(_check(ro, c) for c in failed)})"]


def _check(ro: Rollout, result: CheckResult) -> str:
    """A failed check: its name, the request (smoke checks), what was expected and got."""
    smoke = {c.name: c for c in (ro.spec.verification and ro.spec.verification.smoke) or []}
    spec = smoke.get(result.check)
    what = f"{result.check} {spec.method} {spec.path}" if spec else result.check
    where = f" field {result.field}" if result.field else ""
    return f"{what}:{where} expected {result.expected}, got {result.actual or 'nothing'}"


def _get(client: Client, name: str, namespace: str) -> dict[str, Any]:
    try:
        obj: Any = client.get(RESOURCE, name, namespace=namespace)
        found: dict[str, Any] = obj.to_dict()
    except ApiError as exc:
        raise click.ClickException(f"rollout {namespace}/{name}: {exc.status.message}") from exc
    return found


@click.group()
def rollout() -> None:
    """Watch and steer Rollouts."""


_name = click.argument("name", shell_complete=names_of("Rollout"))


def _show(obj: dict[str, Any], output: str) -> None:
    view = {"name": obj["metadata"]["name"], "namespace": obj["metadata"].get("namespace"),
            "status": obj.get("status")}  # fmt: skip
    emit(view, output, lambda: render(obj))


@rollout.command()
@_name
@namespace_option
@click.option("-w", "--watch", is_flag=True, help="Reprint on every change until interrupted.")
@output_option
@click.pass_context
def status(ctx: click.Context, name: str, namespace: str, watch: bool, output: str) -> None:
    """Phase, step, weights, revisions, the last analysis runs and conditions."""
    client = _client(ctx)
    _show(_get(client, name, namespace), output)
    if not watch:
        return
    changes: Any = client.watch(RESOURCE, namespace=namespace, fields={"metadata.name": name})
    for _, obj in changes:
        click.echo("---" if output == "yaml" else "")
        _show(obj.to_dict(), output)


def _act(ctx: click.Context, verb: str, name: str, namespace: str) -> None:
    client = _client(ctx)
    value = f"{verb}/{time.time_ns()}"
    patch = {"metadata": {"annotations": {ACTION_ANNOTATION: value}}}
    try:
        client.patch(RESOURCE, name, patch, namespace=namespace, patch_type=PatchType.MERGE)
    except ApiError as exc:
        raise click.ClickException(f"rollout {namespace}/{name}: {exc.status.message}") from exc
    click.echo(f"rollout {namespace}/{name}: {verb} requested ({ACTION_ANNOTATION}={value})")


def _action(verb: str, help_text: str) -> click.Command:
    @click.command(name=verb, help=help_text)
    @_name
    @namespace_option
    @click.pass_context
    def command(ctx: click.Context, name: str, namespace: str) -> None:
        _act(ctx, verb, name, namespace)

    return command


@rollout.command()
@_name
@namespace_option
@click.option("--full", is_flag=True, help="Skip every remaining step: all traffic now.")
@click.pass_context
def promote(ctx: click.Context, name: str, namespace: str, full: bool) -> None:
    """Finish the current pause or analysis step (--full: promote at once)."""
    _act(ctx, "promote-full" if full else "promote", name, namespace)


rollout.add_command(_action("abort", "All traffic back to the stable revision."))
rollout.add_command(_action("retry", "Start an aborted or rolled-back rollout again."))
rollout.add_command(_action("undo", "Back to the previous stable revision, without analysis."))
