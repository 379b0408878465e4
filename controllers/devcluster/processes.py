"""Start, watch, stop and restart the local cluster's processes, each in its own session.

Every process is started with `start_new_session=True`, so its PID is also its process-group id
and stopping it kills exactly that group (children such as the Firestore emulator's JVM too). A
PID recorded in the state file is only signalled while /proc shows the same start time, so a
recycled PID is never killed by mistake (argv[0] would not do: wrappers like gcloud exec into
another program).

How each process was started (its `Launch`: command line, working directory, environment and
health probe) is recorded beside its PID, so another process (`xynergy dev restart`) can start
it again exactly. The environment is recorded as the difference from the starting shell's, and
secret values only as the files they are read from, so the state file holds no secret.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = [
    "ClusterError",
    "Launch",
    "ManagedProcess",
    "Probe",
    "free_port",
    "http_ok",
    "is_alive",
    "port_in_use",
    "probe_ok",
    "redis_ping",
    "respawn",
    "spawn",
    "start_ticks",
    "stop_process",
    "tail",
    "wait_healthy",
    "wait_until_ready",
]


class ClusterError(RuntimeError):
    """A clear, one-line reason the local cluster (or a process of it) could not start or stop."""


@dataclass(frozen=True)
class Probe:
    """How to tell that a process is healthy, recorded so another process can check it too.

    `url` is `http(s)://...` (healthy when GET answers 200) or `redis://host:port` (healthy
    when PING answers PONG)."""

    url: str
    what: str
    """What is waited for, for messages ("/healthz", "kube-apiserver /readyz")."""
    ca: Path | None = None
    """CA that signed the server's certificate (https); None verifies with the system CAs."""
    cert: Path | None = None
    key: Path | None = None
    """Client certificate and key to present (https)."""
    verify: bool = True
    """False for servers with a self-signed certificate of their own (controller-manager)."""

    @property
    def port(self) -> int | None:
        """The TCP port the probe connects to."""
        return urlsplit(self.url).port

    def tls(self) -> ssl.SSLContext | bool:
        """What httpx should verify the server with."""
        if not self.verify:
            return False
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None:
            ctx.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return ctx

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "what": self.what,
            "ca": _opt_str(self.ca),
            "cert": _opt_str(self.cert),
            "key": _opt_str(self.key),
            "verify": self.verify,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Probe:
        return cls(
            url=raw["url"],
            what=raw["what"],
            ca=_opt_path(raw.get("ca")),
            cert=_opt_path(raw.get("cert")),
            key=_opt_path(raw.get("key")),
            verify=bool(raw.get("verify", True)),
        )


@dataclass(frozen=True)
class Launch:
    """How a process was started: enough for another process to start it again."""

    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    """Variables set on top of the starting shell's environment."""
    unset: tuple[str, ...] = ()
    """Variables of the starting shell's environment that were removed."""
    secret_files: dict[str, Path] = field(default_factory=dict)
    """Variable -> file its value is read from at each start (the value is never recorded)."""
    probe: Probe | None = None

    @classmethod
    def record(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        cwd: Path | None,
        secret_files: Mapping[str, Path] | None,
        probe: Probe | None,
    ) -> Launch:
        """The launch of `argv` with the full environment `env` (None: this process's own)."""
        base = os.environ if env is None else env
        return cls(
            argv=tuple(argv),
            cwd=(cwd or Path.cwd()).resolve(),
            env={k: v for k, v in base.items() if os.environ.get(k) != v},
            unset=tuple(sorted(k for k in os.environ if k not in base)),
            secret_files=dict(secret_files or {}),
            probe=probe,
        )

    def environment(self) -> dict[str, str]:
        """The environment to start with: this process's own, changed as recorded."""
        env = {k: v for k, v in os.environ.items() if k not in self.unset}
        env.update(self.env)
        for var, path in self.secret_files.items():
            try:
                env[var] = path.read_text().strip()
            except OSError as exc:
                raise ClusterError(f"{var}: cannot read its secret file {path}: {exc}") from exc
        return env

    def to_dict(self) -> dict[str, Any]:
        return {
            "argv": list(self.argv),
            "cwd": str(self.cwd),
            "env": self.env,
            "unset": list(self.unset),
            "secret_files": {k: str(v) for k, v in self.secret_files.items()},
            "probe": self.probe.to_dict() if self.probe else None,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Launch:
        probe = raw.get("probe")
        return cls(
            argv=tuple(raw["argv"]),
            cwd=Path(raw["cwd"]),
            env=dict(raw.get("env") or {}),
            unset=tuple(raw.get("unset") or ()),
            secret_files={k: Path(v) for k, v in (raw.get("secret_files") or {}).items()},
            probe=Probe.from_dict(probe) if probe else None,
        )


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
    launch: Launch | None = None
    """How it was started; None in a state file written before `dev restart` existed."""

    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else None."""
        if self.popen is not None:
            return self.popen.poll()
        return None if is_alive(self.pid, self.start) else -1

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start": self.start,
            "executable": self.executable,
            "log": str(self.log),
            "launch": self.launch.to_dict() if self.launch else None,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ManagedProcess:
        launch = raw.get("launch")
        return cls(
            name=raw["name"],
            pid=int(raw["pid"]),
            start=int(raw["start"]),
            executable=raw["executable"],
            log=Path(raw["log"]),
            launch=Launch.from_dict(launch) if launch else None,
        )


def _opt_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _opt_path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


_LOWEST_PORT = 20000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (Linux's default when unreadable)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    # no SO_REUSEADDR: a port still held by a closing (TIME_WAIT) socket counts as taken too
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, below the kernel's ephemeral range.

    A component keeps its recorded port for life (`dev restart` starts it on the same one), so
    the port must not be one the kernel hands to outgoing connections: once the component died,
    any client's connect() could take it, and the restart would fail with "address in use".
    Ports are drawn at random and never twice from one process. Where the ephemeral range
    leaves no room below it, the kernel picks one.
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    if low - _LOWEST_PORT >= 1000:
        for _ in range(200):
            port = rng.randrange(_LOWEST_PORT, low)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
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
    secret_files: Mapping[str, Path] | None = None,
    probe: Probe | None = None,
) -> ManagedProcess:
    """Start argv detached in a new session, output appended to `log`.

    `env` is the full environment (None: this process's); `secret_files` adds variables whose
    values are read from files; `probe` says how to tell it is healthy (`wait_healthy`)."""
    launch = Launch.record(argv, env=env, cwd=cwd, secret_files=secret_files, probe=probe)
    return respawn(name=name, launch=launch, log=log)


def respawn(*, name: str, launch: Launch, log: Path) -> ManagedProcess:
    """Start a process as `launch` records, output appended to `log`."""
    env = launch.environment()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(launch.argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=launch.cwd,
        )
    return ManagedProcess(
        name=name,
        pid=popen.pid,
        start=start_ticks(popen.pid) or 0,
        executable=launch.argv[0],
        log=log,
        popen=popen,
        launch=launch,
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


def http_ok(url: str, ctx: ssl.SSLContext | bool | None = None) -> bool:
    """True when GET `url` answers 200 (TLS verified with `ctx` when given, not when False)."""
    verify = True if ctx is None else ctx
    return httpx.get(url, verify=verify, timeout=2.0).status_code == 200


def redis_ping(port: int) -> bool:
    """True when a Redis server on 127.0.0.1:port answers PING."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


def probe_ok(probe: Probe) -> bool:
    """True when the process `probe` describes answers as healthy."""
    if urlsplit(probe.url).scheme == "redis":
        return redis_ping(probe.port or 6379)
    return http_ok(probe.url, probe.tls())


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


def wait_healthy(proc: ManagedProcess, *, timeout: float) -> None:
    """Wait until the probe `proc` was started with passes (`wait_until_ready`); no probe
    recorded means started is healthy."""
    probe = proc.launch.probe if proc.launch else None
    if probe is not None:
        wait_until_ready(proc, lambda: probe_ok(probe), what=probe.what, timeout=timeout)
