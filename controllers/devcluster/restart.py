"""Restart one component of a running dev cluster from what state.json records about it.

A component restarted by hand gets a PID `dev status` does not know; `xynergy dev restart
<component>` instead stops exactly the recorded process (its process group, while its start time
still matches), starts it again with the recorded command line, working directory, environment
and log file, waits for its recorded health probe as `dev up` does, and records the new PID.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controllers.devcluster.cluster import ClusterState, Progress
from controllers.devcluster.processes import (
    ClusterError,
    ManagedProcess,
    port_in_use,
    respawn,
    stop_process,
    wait_healthy,
)

__all__ = ["Restarted", "restart_component"]


@dataclass(frozen=True)
class Restarted:
    """The process a restart replaced (`was_running` tells whether it still ran) and the new
    one."""

    old: ManagedProcess
    was_running: bool
    new: ManagedProcess


def restart_component(
    workdir: Path,
    name: str,
    *,
    timeout: float = 120.0,
    progress: Progress = lambda _msg: None,
) -> Restarted:
    """Stop component `name` if it runs, start it again as recorded and wait until healthy.

    state.json records the new process before the health wait, so `dev down` stops it whatever
    happens; if it does not become healthy it is stopped and ClusterError names its log."""
    state = ClusterState.load(workdir)
    if state is None:
        raise ClusterError(f"nothing runs from {workdir}; start it with `xynergy dev up`")
    old = state.find(name)
    if old.launch is None:
        raise ClusterError(
            f"{name}: {workdir / 'state.json'} does not record how it was started (written "
            "before `dev restart` existed); run `xynergy dev down` then `xynergy dev up`"
        )
    was_running = old.exit_code() is None
    if was_running:
        progress(f"stopping {name} (pid {old.pid})")
        stop_process(old)
    port = old.launch.probe.port if old.launch.probe else None
    if port is not None and port_in_use(port):
        raise ClusterError(
            f"{name}: port {port} is in use by a process `dev up` did not start (one started by "
            f"hand?); stop it, then run `xynergy dev restart {name}` again"
        )
    progress(f"starting {name}: {' '.join(old.launch.argv)}")
    new = respawn(name=name, launch=old.launch, log=old.log)
    state.replace(new)
    state.save()
    try:
        wait_healthy(new, timeout=timeout)
    except ClusterError:
        stop_process(new)
        raise
    return Restarted(old=old, was_running=was_running, new=new)
