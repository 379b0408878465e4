"""Process groups that die with the test process.

A fixture stops what it started in a `finally` block, but a test process killed with SIGKILL
(a CI timeout, `kill -9`, an out-of-memory kill) runs no `finally`: a gcloud emulator and its
java child, started in a process group of their own, then run on for good and hold their ports
and a core. `reap_with_parent(pgid)` starts a small watcher, in a session of its own, that waits
on two pidfds, the test process and the group's leader: when the test process goes first it
kills the group (SIGTERM; SIGKILL for what is left once the leader has exited or after a
grace period); when the leader goes first (the
fixture stopped it) the watcher exits, so a group id reused later is never signalled.
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["reap_with_parent", "run_after_parent"]

_WATCHER = """
import os, select, signal, subprocess, sys
parent, mode = int(sys.argv[1]), sys.argv[2]
if mode == "command":  # run argv once the test process is gone
    try:
        select.select([os.pidfd_open(parent)], [], [])
    except ProcessLookupError:
        pass
    sys.exit(subprocess.call(sys.argv[3:], stdin=subprocess.DEVNULL))
group, grace = int(sys.argv[3]), float(sys.argv[4])
try:
    leader = os.pidfd_open(group)
except ProcessLookupError:
    sys.exit(0)  # stopped already
try:
    ready = select.select([os.pidfd_open(parent), leader], [], [])[0]
except ProcessLookupError:
    ready = []  # the test process is gone already
if leader not in ready:
    try:
        os.killpg(group, signal.SIGCONT)
        os.killpg(group, signal.SIGTERM)
        select.select([leader], [], [], grace)
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""


def _watch(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(os.getpid()), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def reap_with_parent(pgid: int, *, grace: float = 10.0) -> subprocess.Popen[bytes]:
    """Kill process group `pgid` (its leader's pid) once this process is gone; returns the
    watcher (it exits by itself when the leader exits first)."""
    return _watch("group", str(pgid), str(grace))


def run_after_parent(argv: list[str]) -> subprocess.Popen[bytes]:
    """Run `argv` once this process is gone, however it ended (e.g. `xynergy dev down` for a
    session's cluster, whose processes a test may restart under new pids); the caller kills
    the watcher when it cleaned up itself."""
    return _watch("command", *argv)
