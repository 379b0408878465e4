"""The `xynergy` command line: the local dev cluster and generated CRDs.

xynergy dev up | down | status       local control plane + operator
xynergy dev restart <component>      restart one of them as `dev up` started it
xynergy crds generate [--check]      apis/ -> crds/; controllers/rbac.py -> chart + kustomize RBAC;
                                     manifests/policies -> the chart's files/policies
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
from lightkube import ApiError

from controllers.devcluster import (
    BuildError,
    ClusterError,
    ClusterState,
    DevCluster,
    ensure_binaries,
    repo_root,
)
from controllers.devcluster.cluster import UnknownComponentError
from controllers.devcluster.fakes import start_fakes
from controllers.devcluster.manifests import apply_files, create_secrets, wait_established
from controllers.devcluster.platform import (
    Platform,
    sample_secrets,
    start_platform,
    start_prometheus_for,
)
from controllers.devcluster.processes import (
    ManagedProcess,
    Probe,
    free_port,
    spawn,
    start_ticks,
    stop_process,
    wait_healthy,
)
from controllers.devcluster.prometheus import ScrapeTargets
from controllers.devcluster.restart import restart_component

__all__ = ["main"]


def _default_workdir() -> Path:
    return Path(os.environ.get("XYNERGY_DEV_DIR", repo_root() / ".cache" / "dev-cluster"))


def _say(line: str) -> None:
    click.echo(f"  {line}", err=True)


@click.group()
def main() -> None:
    """Xynergy: a Kubernetes-native operator for the Xynergy AI platform."""


@main.group()
def dev() -> None:
    """Run a local Kubernetes control plane and the operator against it."""


@dev.command("up")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=_default_workdir,
    show_default="XYNERGY_DEV_DIR or .cache/dev-cluster",
    help="Where certificates, kubeconfigs, logs and state live.",
)
@click.option("--nodes", type=click.IntRange(1, 1000), default=2, show_default=True)
@click.option("--apiserver-port", type=click.IntRange(1, 65535), default=None)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    envvar="KUBECONFIG",
    help="Use this real cluster instead of starting a local one (also read from KUBECONFIG).",
)
@click.option("--operator/--no-operator", default=True, show_default=True)
@click.option(
    "--platform/--no-platform",
    default=True,
    show_default=True,
    help="Also run redis, the Firestore emulator, the CRM and the gateway locally.",
)
def dev_up(
    workdir: Path,
    nodes: int,
    apiserver_port: int | None,
    kubeconfig: Path | None,
    operator: bool,
    platform: bool,
) -> None:
    """Build (or reuse) the binaries, start the cluster, apply crds/, start the operator and
    the platform's workloads (gateway, CRM and what they need)."""
    workdir = workdir.resolve()
    existing = ClusterState.load(workdir)
    if existing and any(existing.running().values()):
        click.echo(f"a cluster is already running from {workdir}")
        _print_status(existing)
        return
    started = time.monotonic()
    cluster: DevCluster | None = None
    try:
        if kubeconfig is None:
            click.echo("building control-plane binaries (first build takes several minutes)")
            bindir = ensure_binaries(progress=_say)
            click.echo("starting local cluster")
            cluster = DevCluster(
                workdir=workdir, bindir=bindir, nodes=nodes, apiserver_port=apiserver_port
            )
            state = cluster.start(progress=_say)
            kubeconfig = state.kubeconfig
        else:
            click.echo(f"using the existing cluster in {kubeconfig}")
            workdir.mkdir(parents=True, exist_ok=True)
            state = ClusterState(workdir=workdir, server="", kubeconfig=kubeconfig, ports={})
        crds = sorted((repo_root() / "crds").glob("*.yaml"))
        if crds:
            _say(f"applying {len(crds)} CRDs from crds/")
            try:
                names = apply_files(kubeconfig=kubeconfig, paths=crds)
                wait_established(kubeconfig=kubeconfig, names=names)
            except ApiError as exc:
                raise ClusterError(f"crds: the apiserver rejected a CRD: {exc}") from exc
        running = _start_workloads(
            state=state, cluster=cluster, operator=operator, platform=platform
        )
        if cluster is not None and cluster.state is not None:
            state = cluster.state
    except (BuildError, ClusterError) as exc:
        if cluster is not None:
            cluster.stop()
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except BaseException:
        if cluster is not None:
            cluster.stop()  # never leave a half-started cluster behind
        raise
    click.echo(f"ready in {time.monotonic() - started:.1f}s")
    _print_status(state)
    _print_next(state, running)


def _start_workloads(
    *, state: ClusterState, cluster: DevCluster | None, operator: bool, platform: bool
) -> Platform | None:
    """On a local cluster: the samples' Secrets and (with `platform`) Prometheus first, so the
    operator gets its URL; then the operator, then the platform's services."""
    local = cluster if platform else None
    prometheus = fakes = None
    if cluster is not None:
        made = create_secrets(
            kubeconfig=state.kubeconfig,
            namespace="default",
            secrets=sample_secrets(cluster.workdir),
        )
        if made:
            _say(f"created the Secrets the samples read in namespace default: {', '.join(made)}")
    if local is not None:
        prometheus = start_prometheus_for(local, progress=_say)
        fakes = start_fakes(local, progress=_say)
    if operator:
        _say("starting the operator (python -m controllers)")
        operator_kubeconfig = (
            state.operator_kubeconfig if state.operator_kubeconfig.exists() else state.kubeconfig
        )
        proc = _start_operator(
            workdir=state.workdir,
            kubeconfig=operator_kubeconfig,
            cluster=cluster,
            prometheus=prometheus,
            env=fakes.operator_env() if fakes else {},
        )
        if cluster is None:
            state.processes.append(proc)
            state.save()
    if local is None:
        return None
    return start_platform(local, progress=_say, prometheus=prometheus, fakes=fakes)


def _print_next(state: ClusterState, running: Platform | None) -> None:
    """Where the platform answers and the next commands to try."""
    kubectl = f"kubectl --kubeconfig {state.kubeconfig}"
    if running is not None:
        gateway = running.gateway_url
        click.echo(f"gateway:    {gateway}   (CRM at {gateway}/api/v2/crm)")
        click.echo(f"dashboard:  {gateway}/api/v1/dashboard#token=<a dev token>")
        click.echo(f"prometheus: {running.prometheus_url}")
    click.echo(f"\nnext: {kubectl} get nodes")
    click.echo(f"      {kubectl} apply -f manifests/samples/")
    click.echo(f"      {kubectl} get xynergy")
    if running is not None:
        token = "$(.venv/bin/xynergy dev token --tenant acme)"
        gateway = running.gateway_url
        click.echo(f'      curl -H "Authorization: Bearer {token}" {gateway}/api/v2/crm/contacts')
        click.echo(f'      xdg-open "{gateway}/api/v1/dashboard#token={token}"')
    plugin = f"PATH=$PWD/.venv/bin:$PATH KUBECONFIG={state.kubeconfig} kubectl xynergy"
    click.echo(f"      {plugin} get xynergyservice")
    click.echo(f"      {plugin} forecast crm")


def _start_operator(
    *,
    workdir: Path,
    kubeconfig: Path,
    cluster: DevCluster | None,
    prometheus: tuple[str, ScrapeTargets] | None = None,
    env: dict[str, str] | None = None,
) -> ManagedProcess:
    """The operator (`env` added to its environment); with `prometheus`, ScalingPolicies and
    Rollouts read it by default and it scrapes the operator's /metrics."""
    port = free_port()
    env = dict(os.environ, **(env or {}))
    env.update(
        KUBECONFIG=str(kubeconfig),
        XYNERGY_LIVENESS_ENDPOINT=f"http://127.0.0.1:{port}/healthz",
        PYTHONUNBUFFERED="1",
    )
    metrics_port = free_port() if prometheus else None
    if prometheus is not None:
        env.update(
            XYNERGY_SCALING_PROMETHEUS_URL=prometheus[0],
            XYNERGY_ROLLOUT_PROMETHEUS_URL=prometheus[0],
            XYNERGY_METRICS_PORT=str(metrics_port),
        )
    argv = [sys.executable, "-m", "controllers"]
    probe = Probe(url=f"http://127.0.0.1:{port}/healthz", what="liveness")
    if cluster is not None:
        proc = cluster.add_process(name="operator", argv=argv, env=env, probe=probe)
    else:
        log = workdir / "logs" / "operator.log"
        proc = spawn(name="operator", argv=argv, log=log, env=env, probe=probe)
    try:
        wait_healthy(proc, timeout=60)
    except ClusterError:
        stop_process(proc)
        raise
    if prometheus is not None:
        prometheus[1].add("operator", f"127.0.0.1:{metrics_port}")
    return proc


def _print_status(state: ClusterState) -> None:
    click.echo(f"kubeconfig: {state.kubeconfig}")
    if state.server:
        click.echo(f"server:     {state.server}")
    click.echo(f"logs:       {state.workdir / 'logs'}")
    for proc in state.processes:
        if proc.exit_code() is None:
            click.echo(f"  {proc.name:<24} pid {proc.pid:<8} running  {proc.log}")
        else:
            click.echo(f"  {_not_running(state, proc)}")


def _not_running(state: ClusterState, proc: ManagedProcess) -> str:
    """One line for a recorded process that no longer runs, with the command that restarts
    it."""
    why = f"recorded pid {proc.pid} exited"
    if start_ticks(proc.pid) not in (None, proc.start):  # a process started at another time
        why += "; the pid now belongs to another process"
    command = f"xynergy dev restart {proc.name}"
    if state.workdir != _default_workdir().resolve():
        command += f" --workdir {state.workdir}"
    return f"{proc.name}: not running ({why}); restart with `{command}`"


@dev.command("token")
@click.option("--workdir", type=click.Path(path_type=Path), default=_default_workdir)
@click.option("--tenant", required=True, help="Tenant id (claim tenant_id).")
@click.option("--user", default="dev-user", show_default=True, help="User id (claim user_id).")
@click.option("--email", default=None, help="Email claim (default <user>@example.com).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    default=("editor",),
    show_default=True,
    help="Roles (repeat for several): viewer, editor, admin.",
)
@click.option("--ttl", type=click.IntRange(60, 86400), default=3600, show_default=True)
def dev_token(
    workdir: Path, tenant: str, user: str, email: str | None, roles: tuple[str, ...], ttl: int
) -> None:
    """Print a JWT for the local gateway, signed with the dev cluster's secret."""
    import jwt

    from controllers.devcluster.platform import JWT_AUDIENCE, JWT_ISSUER, dev_secrets

    now = int(time.time())
    claims = {
        "user_id": user,
        "tenant_id": tenant,
        "email": email or f"{user}@example.com",
        "roles": list(roles),
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "iat": now,
        "exp": now + ttl,
    }
    secret = dev_secrets(workdir.resolve())["jwt-secret"]
    click.echo(jwt.encode(claims, secret, algorithm="HS256"))


@dev.command("down")
@click.option("--workdir", type=click.Path(path_type=Path), default=_default_workdir)
def dev_down(workdir: Path) -> None:
    """Stop everything `dev up` started (cluster and operator)."""
    workdir = workdir.resolve()
    if ClusterState.load(workdir) is None:
        click.echo(f"nothing running from {workdir}")
        return
    DevCluster(workdir=workdir, bindir=workdir).stop()
    click.echo("stopped")


@dev.command("restart")
@click.argument("component")
@click.option("--workdir", type=click.Path(path_type=Path), default=_default_workdir)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds to wait for it to be healthy.",
)
def dev_restart(component: str, workdir: Path, timeout: float) -> None:
    """Restart COMPONENT (a name `dev status` lists) as `dev up` started it: same command
    line, environment and log; starts it if it is not running. Waits until it is healthy."""
    try:
        done = restart_component(workdir.resolve(), component, timeout=timeout, progress=_say)
    except UnknownComponentError as exc:
        raise click.BadParameter(str(exc), param_hint="COMPONENT") from exc
    except ClusterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    before = f"pid {done.old.pid}" + ("" if done.was_running else " had exited")
    click.echo(f"{component}: restarted ({before}; now pid {done.new.pid}); log: {done.new.log}")


@dev.command("status")
@click.option("--workdir", type=click.Path(path_type=Path), default=_default_workdir)
def dev_status(workdir: Path) -> None:
    """Show what `dev up` runs; exits 1 when nothing runs."""
    state = ClusterState.load(workdir.resolve())
    if state is None or not any(state.running().values()):
        click.echo("not running")
        sys.exit(1)
    _print_status(state)


def _chart_policies(root: Path) -> Path:
    return root / "charts" / "xynergy" / "files" / "policies"


def _policy_copies(root: Path) -> dict[Path, str]:
    """manifests/policies (the one source, kustomize's) as the chart's files/policies: every
    policy and the parameters, without the kustomization."""
    source = root / "manifests" / "policies"
    return {
        _chart_policies(root) / p.name: p.read_text()
        for p in sorted(source.glob("*.yaml"))
        if p.name != "kustomization.yaml"
    }


@main.group()
def crds() -> None:
    """Generated CustomResourceDefinitions."""


@crds.command("generate")
@click.option("--check", is_flag=True, help="Fail when generated files differ from apis/.")
def crds_generate(check: bool) -> None:
    """Write crds/, the chart's crds/ and docs/api/<kind>.md from the models in apis/, the
    operator's RBAC and kopf peering CRDs (chart and kustomize base) from controllers/rbac.py,
    and the chart's files/policies from manifests/policies."""
    from apis.crdgen import render_all
    from apis.docgen import render_doc, sample_files
    from apis.v1alpha1 import KINDS
    from controllers.rbac import generated_files as rbac_files

    root = repo_root()
    wanted: dict[Path, str] = {}
    for name, text in render_all().items():
        wanted[root / "crds" / name] = text
        wanted[root / "charts" / "xynergy" / "crds" / name] = text
        wanted[root / "manifests" / "base" / "crds" / name] = text  # kustomize loads no ../..
    samples = sample_files()
    for kind in KINDS:
        example = (root / "manifests" / "samples" / samples[kind.crd.kind]).read_text()
        page = root / "docs" / "api" / f"{kind.crd.singular}.md"
        wanted[page] = render_doc(kind.crd, example=example)
    wanted.update(rbac_files(root))
    wanted.update(_policy_copies(root))
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    owned = [*(root / "crds").glob("*.xynergy.io.yaml"), *_chart_policies(root).glob("*.yaml")]
    extra = [p for p in owned if p not in wanted]
    if check:
        if stale or extra:
            names = ", ".join(str(p.relative_to(root)) for p in stale + extra)
            click.echo(f"generated files are stale (run `make manifests`): {names}", err=True)
            sys.exit(1)
        click.echo(f"generated files are up to date ({len(wanted)} files)")
        return
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted[path])
    for path in extra:
        path.unlink()
    click.echo(f"wrote {len(stale)} of {len(wanted)} generated files")


if __name__ == "__main__":
    main()
