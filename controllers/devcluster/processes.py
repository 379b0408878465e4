"""Start, watch and stop the local cluster's processes, each in its own session.

Every process is started with `start_new_session=True`, so its PID is also its process-group id
and stopping it kills exactly that group (children such as the Firestore emulator's JVM too). A
PID recorded in the state file is only signalled while /proc shows the same start time, so a
recycled PID is never killed by mistake (argv[0] would not do: wrappers like gcloud exec into
another program).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "ClusterError",
    "ManagedProcess",
    "free_port",
    "http_ok",
    "is_alive",
    "port_in_use",
    "spawn",
    "start_ticks",
    "stop_process",
    "tail",
    "wait_until_ready",
]


class ClusterError(RuntimeError):
    """A clear, one-line reason the local cluster (or a process of it) could not start or stop."""


@dataclass
class ManagedProcess:
    """A process this module started (or one read back from the state file)."""

    name: str
    pid: int
    start: int
    """Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22)."""
    executable: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else None."""
        if self.popen is not None:
            return self.popen.poll()
        return None if is_alive(self.pid, self.start) else -1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def spawn(
    *,
    name: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start argv detached in a new session, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    return ManagedProcess(
        name=name,
        pid=popen.pid,
        start=start_ticks(popen.pid) or 0,
        executable=str(argv[0]),
        log=log,
        popen=popen,
    )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # fields from 3 (state) on


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot; None if there is no such process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, start: int) -> bool:
    """True when `pid` runs and is the process that started at `start` (zombies are dead)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return int(fields[19]) == start


def stop_process(proc: ManagedProcess, *, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL after `timeout`; reap if it is our child."""
    if not is_alive(proc.pid, proc.start):
        if proc.popen is not None:
            proc.popen.poll()
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen is not None:
                proc.popen.poll()
            if not is_alive(proc.pid, proc.start):
                return
            time.sleep(0.05)


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    """True when GET `url` answers 200 (TLS verified with `ctx` when given)."""
    return httpx.get(url, verify=ctx or True, timeout=2.0).status_code == 200


def wait_until_ready(
    proc: ManagedProcess, ready: Callable[[], bool], *, what: str, timeout: float
) -> None:
    """Poll `ready` until true; ClusterError naming the process and its log if it exits first
    or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.exit_code()
        if code is not None:
            raise ClusterError(f"{proc.name} exited with code {code} during start; log: {proc.log}")
        try:
            if ready():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    raise ClusterError(
        f"{proc.name}: timed out after {timeout:.0f}s waiting for {what}; log: {proc.log}"
    )
