"""`emulators.stop_process_group` returns only once the whole process group is gone: gcloud
(the group's leader) exits before its java child, the emulator's JVM, which still held the port
while the next start bound it. Real processes: a leader that starts a child holding a port, as
gcloud starts java; no emulator is needed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from emulators import stop_process_group

pytestmark = pytest.mark.integration

# The child: holds a listening port; on SIGTERM ("slow") it exits only once a byte arrives on
# the release pipe (a JVM shutting down), or ("ignore") it ignores SIGTERM altogether.
CHILD = """
import os, signal, socket, sys
mode, release, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def term(*_):
    os.read(release, 1)
    os._exit(0)
signal.signal(signal.SIGTERM, term if mode == "slow" else signal.SIG_IGN)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
os.write(report, f"{os.getpid()} {sock.getsockname()[1]}\\n".encode())
while True:
    signal.pause()
"""

# The leader (gcloud): starts the child, then waits ("wait": SIGTERM ends it at once) or exits
# by itself ("exit": the child is left in the group).
LEADER = """
import signal, subprocess, sys
child, mode, release, report, leader = sys.argv[1:]
fds = (int(release), int(report))
subprocess.Popen([sys.executable, "-c", child, mode, release, report], pass_fds=fds)
if leader == "wait":
    signal.pause()
"""


@dataclass
class Group:
    proc: asyncio.subprocess.Process
    child: int
    port: int
    release: int

    def listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def child_alive(self) -> bool:
        try:
            with open(f"/proc/{self.child}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            return False
        return stat[stat.rfind(")") + 2] != "Z"


def _read_line(fd: int) -> bytes:
    with open(fd, "rb", closefd=False) as f:
        return f.readline()


@contextlib.asynccontextmanager
async def group(child: str, leader: str) -> AsyncIterator[Group]:
    """The leader and its child, the child's pid and port read from a pipe of their own (not
    the leader's stdout: asyncio's `wait` would wait for every holder of that pipe too)."""
    read, write = os.pipe()
    report_read, report_write = os.pipe()
    try:
        try:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-c", LEADER, CHILD, child, str(read), str(report_write), leader),
                stdout=subprocess.DEVNULL,
                pass_fds=(read, report_write),
                start_new_session=True,
            )
        finally:
            os.close(report_write)  # the group's copies only: the read ends when the group does
        try:
            async with asyncio.timeout(30):
                pid, port = (await asyncio.to_thread(_read_line, report_read)).split()
            yield Group(proc, int(pid), int(port), write)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    finally:
        for fd in (read, write, report_read):
            os.close(fd)


async def test_stopping_waits_for_a_child_that_outlives_the_leader() -> None:
    """The leader exits at SIGTERM, its child only later: stopping returns once the child is
    gone and its port refuses, not at the leader's exit (as before)."""
    async with group("slow", "wait") as g:
        stop = asyncio.create_task(stop_process_group(g.proc))
        async with asyncio.timeout(10):
            await g.proc.wait()  # the leader is gone; its child shuts down
        done, _ = await asyncio.wait({stop}, timeout=0.5)
        assert not done, "stop_process_group returned while the group's child still ran"
        assert g.child_alive()
        assert g.listening()
        os.write(g.release, b"x")  # the child's shutdown ends
        async with asyncio.timeout(10):
            await stop
        assert not g.child_alive()
        assert not g.listening()


@pytest.mark.parametrize("leader", ["wait", "exit"])
async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(leader: str) -> None:
    """A child deaf to SIGTERM is SIGKILLed `term_grace` after it, also when the leader had
    exited by itself before the stop (before, a leader already gone stopped nothing)."""
    async with group("ignore", leader) as g:
        if leader == "exit":
            async with asyncio.timeout(10):
                await g.proc.wait()
        async with asyncio.timeout(10):
            await stop_process_group(g.proc, term_grace=0.5)
        assert not g.child_alive()
        assert not g.listening()
