"""A process group started by a test process dies with it, even when the test process is
killed with SIGKILL (no fixture teardown runs), and is left alone when the fixture stops it
first. Real processes: a stand-in "test process" that starts a two-process group, as gcloud
starts java, and registers it with `reaper.reap_with_parent`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent

STAND_IN = """
import subprocess, sys
sys.path.insert(0, sys.argv[1])
from reaper import reap_with_parent
group = subprocess.Popen(["sh", "-c", "sleep 600 & exec sleep 600"], start_new_session=True)
watcher = reap_with_parent(group.pid, grace=5) if sys.argv[2] == "reap" else None
print(group.pid, watcher.pid if watcher else 0, flush=True)
sys.stdin.read()
"""


def alive_in_group(pgid: int) -> list[int]:
    """Pids of the group's processes that have not exited (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def stand_in(mode: str) -> tuple[subprocess.Popen[str], int, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, str(HERE), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    pgid, watcher = (int(v) for v in proc.stdout.readline().split())
    wait_until("the group's two processes", lambda: len(alive_in_group(pgid)) == 2)
    return proc, pgid, watcher


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@pytest.mark.parametrize("mode", ["reap", "no-reap"])
def test_group_dies_with_a_sigkilled_test_process(mode: str) -> None:
    proc, pgid, _ = stand_in(mode)
    try:
        proc.kill()
        proc.wait(timeout=10)
        if mode == "reap":
            wait_until("the group to be killed", lambda: not alive_in_group(pgid))
        else:  # the control: without the watcher the group outlives its test process
            assert len(alive_in_group(pgid)) == 2
    finally:
        kill_group(pgid)


def test_watcher_exits_when_the_group_is_stopped_first() -> None:
    """The fixture stopped the group: the watcher goes too, so it never signals a group id
    that the system hands out again later."""
    proc, pgid, watcher = stand_in("reap")
    try:
        assert running(watcher)
        kill_group(pgid)  # the fixture's own stop
        wait_until("the watcher to exit", lambda: not running(watcher))
        assert proc.poll() is None  # the test process itself is untouched
    finally:
        kill_group(pgid)
        proc.kill()
        proc.wait(timeout=10)


COMMAND_STAND_IN = """
import sys
sys.path.insert(0, sys.argv[1])
from reaper import run_after_parent
run_after_parent(["touch", sys.argv[2]])
print("ready", flush=True)
sys.stdin.read()
"""


def test_command_runs_once_the_test_process_is_killed(tmp_path: Path) -> None:
    """`run_after_parent` (the session cluster's `xynergy dev down`): not before the test
    process is gone, and after a SIGKILL too."""
    done = tmp_path / "down-ran"
    proc = subprocess.Popen(
        [sys.executable, "-c", COMMAND_STAND_IN, str(HERE), str(done)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    assert not done.exists()
    proc.kill()
    proc.wait(timeout=10)
    wait_until("the command to run", done.exists)
