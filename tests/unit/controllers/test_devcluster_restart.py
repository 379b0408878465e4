"""What `xynergy dev restart` and `dev status` read and write: the state file records how each
component was started (without secret values), is replaced atomically with exactly one entry
changed, and an unknown or stale component is a clear error. No process is started here."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from controllers.cli import main
from controllers.devcluster import ClusterError, ClusterState
from controllers.devcluster.cluster import UnknownComponentError
from controllers.devcluster.processes import Launch, ManagedProcess, Probe, free_port, start_ticks
from controllers.devcluster.restart import restart_component

NO_SUCH_PID = 4_194_304 + 4242  # above Linux's largest pid_max: never a live process


def _proc(name: str, pid: int, start: int, workdir: Path, launch: Launch | None) -> ManagedProcess:
    return ManagedProcess(
        name=name,
        pid=pid,
        start=start,
        executable="/bin/true",
        log=workdir / "logs" / f"{name}.log",
        launch=launch,
    )


def _launch(workdir: Path, port: int = 8080) -> Launch:
    return Launch(
        argv=("/usr/bin/python3", "-m", "services.crm"),
        cwd=workdir,
        env={"XYNERGY_CRM_PORT": str(port)},
        unset=("KUBECONFIG",),
        secret_files={"XYNERGY_INTERNAL_SIGNING_KEY": workdir / "secrets" / "key"},
        probe=Probe(url=f"http://127.0.0.1:{port}/healthz", what="/healthz"),
    )


def _state(workdir: Path, *procs: ManagedProcess) -> ClusterState:
    state = ClusterState(
        workdir=workdir,
        server="https://127.0.0.1:6443",
        kubeconfig=workdir / "admin.kubeconfig",
        ports={"kube-apiserver": 6443},
        processes=list(procs),
    )
    state.save()
    return state


def test_replace_and_save_changes_exactly_one_entry_atomically(tmp_path: Path) -> None:
    state = _state(
        tmp_path,
        _proc("etcd", 100, 1, tmp_path, None),
        _proc("crm", 200, 2, tmp_path, _launch(tmp_path)),
        _proc("gateway", 300, 3, tmp_path, None),
    )
    path = tmp_path / "state.json"
    before = json.loads(path.read_text())
    inode = path.stat().st_ino

    state.replace(_proc("crm", 201, 9, tmp_path, _launch(tmp_path)))
    state.save()

    after = json.loads(path.read_text())
    assert [p["name"] for p in after["processes"]] == ["etcd", "crm", "gateway"]
    assert after["processes"][1]["pid"] == 201
    assert after["processes"][1]["start"] == 9
    assert after["processes"][0] == before["processes"][0]
    assert after["processes"][2] == before["processes"][2]
    assert path.stat().st_ino != inode, "a temp file was renamed over state.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"], "no temp file left"


def test_state_round_trips_how_a_component_was_started(tmp_path: Path) -> None:
    launch = _launch(tmp_path)
    _state(tmp_path, _proc("crm", 200, 2, tmp_path, launch))

    loaded = ClusterState.load(tmp_path)

    assert loaded is not None
    assert loaded.find("crm").launch == launch


def test_launch_records_the_environment_change_and_no_secret_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEP_ME", "shell")
    monkeypatch.setenv("DROP_ME", "shell")
    secret = tmp_path / "jwt-secret"
    secret.write_text("s3cr3t-value\n")
    env = {k: v for k, v in os.environ.items() if k != "DROP_ME"}
    env["XYNERGY_CRM_PORT"] = "8080"

    launch = Launch.record(
        ["prog"], env=env, cwd=tmp_path, secret_files={"JWT": secret}, probe=None
    )
    _state(tmp_path, _proc("crm", 200, 2, tmp_path, launch))

    assert launch.env == {"XYNERGY_CRM_PORT": "8080"}
    assert launch.unset == ("DROP_ME",)
    assert "s3cr3t-value" not in (tmp_path / "state.json").read_text()
    again = ClusterState.load(tmp_path)
    assert again is not None
    assert again.processes[0].launch is not None
    rebuilt = again.processes[0].launch.environment()
    assert rebuilt["JWT"] == "s3cr3t-value"
    assert rebuilt["XYNERGY_CRM_PORT"] == "8080"
    assert rebuilt["KEEP_ME"] == "shell"
    assert "DROP_ME" not in rebuilt


def test_unknown_component_lists_the_known_ones(tmp_path: Path) -> None:
    _state(
        tmp_path,
        _proc("etcd", NO_SUCH_PID, 1, tmp_path, None),
        _proc("crm", NO_SUCH_PID, 2, tmp_path, _launch(tmp_path)),
    )
    with pytest.raises(UnknownComponentError, match=r"unknown component 'crn'.*known: etcd, crm"):
        restart_component(tmp_path, "crn")

    result = CliRunner().invoke(main, ["dev", "restart", "crn", "--workdir", str(tmp_path)])

    assert result.exit_code == 2, result.output
    assert "COMPONENT" in result.output
    assert "unknown component 'crn'" in result.output
    assert "known: etcd, crm" in result.output


def test_restart_without_a_cluster_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["dev", "restart", "crm", "--workdir", str(tmp_path)])

    assert result.exit_code == 1
    assert f"nothing runs from {tmp_path.resolve()}" in result.output
    assert "xynergy dev up" in result.output


def test_state_from_before_restart_existed_is_a_clear_error(tmp_path: Path) -> None:
    _state(tmp_path, _proc("crm", NO_SUCH_PID, 2, tmp_path, None))
    with pytest.raises(ClusterError, match=r"crm: .* does not record how it was started"):
        restart_component(tmp_path, "crm")


def test_status_says_which_recorded_pid_exited_and_how_to_restart(tmp_path: Path) -> None:
    me = os.getpid()
    my_start = start_ticks(me)
    assert my_start is not None
    _state(
        tmp_path,
        _proc("etcd", me, my_start, tmp_path, None),  # running
        _proc("crm", NO_SUCH_PID, 5, tmp_path, _launch(tmp_path)),  # exited
        _proc("gateway", me, my_start + 1, tmp_path, None),  # pid reused by another process
    )

    result = CliRunner().invoke(main, ["dev", "status", "--workdir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:4] == ["etcd", "pid", str(me), "running"] for line in lines)
    hint = f"--workdir {tmp_path.resolve()}"
    assert (
        f"crm: not running (recorded pid {NO_SUCH_PID} exited); "
        f"restart with `xynergy dev restart crm {hint}`"
    ) in result.output
    assert (
        f"gateway: not running (recorded pid {me} exited; the pid now belongs to another "
        f"process); restart with `xynergy dev restart gateway {hint}`"
    ) in result.output


def test_component_ports_are_drawn_below_the_ephemeral_range() -> None:
    """A component keeps its port across `dev restart`; a port from the kernel's ephemeral range
    could be taken meanwhile by any outgoing connection (clean-clone CI saw exactly that)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports), "no port is handed out twice"
    for port in ports:
        assert port < low
        with socket.socket() as sock:  # free: nothing holds it
            sock.bind(("127.0.0.1", port))
