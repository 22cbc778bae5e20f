"""The test session's reaper (``tests/helpers/reaper.py``): when the test process is killed outright,
a supervisor it started is stopped with everything of its home, and the reaper itself exits.

A stand-in for pytest (a small Python process) starts the reaper and a real ``dagctl dev`` the way
the fixtures do, as its own child in its own process group, then is SIGKILLed. Without the reaper
the same supervisor outlives it: that half shows what the reaper is for, and that this test can fail.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
from helpers import reaper
from helpers.procs import START_TIMEOUT, dagctl, processes_for_home, wait_for

TESTS = pathlib.Path(__file__).resolve().parents[1]
STAND_IN = """
import os, pathlib, signal, subprocess, sys
sys.path.insert(0, sys.argv[1])
from helpers import reaper
root, defs, with_reaper = pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
watchdog = reaper.start(root) if with_reaper else None
env = {**os.environ, "DAGD_HOME": str(root / "home")}
log = open(root / "supervisor.log", "w")
dev = [sys.executable, "-m", "dagd.client.cli", "dev", "-f", defs, "--no-web"]
supervisor = subprocess.Popen(dev, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
print(supervisor.pid, watchdog.pid if watchdog else 0, flush=True)
signal.pause()  # until the test kills this stand-in
"""


@pytest.fixture
def root(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    path = tmp_path / "session"
    (path / "home").mkdir(parents=True)
    yield path
    reaper.sweep(str(path))  # whatever a failed assertion left running


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_stand_in(root: pathlib.Path, *, with_reaper: bool) -> tuple[subprocess.Popen[str], int, int]:
    defs = TESTS / "fixtures" / "defs.py"
    stand_in = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, str(TESTS), str(root), str(defs), "1" if with_reaper else "0"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert stand_in.stdout is not None
    supervisor_pid, reaper_pid = map(int, stand_in.stdout.readline().split())
    home = root / "home"
    wait_for(
        lambda: dagctl(home, "daemons", "status").code == 0,
        START_TIMEOUT,
        f"every daemon healthy ({(root / 'supervisor.log').read_text()[-2000:]})",
        interval=0.5,
    )
    return stand_in, supervisor_pid, reaper_pid


@pytest.mark.timeout(180)
def test_processes_of_a_killed_test_session_are_stopped_by_its_reaper(root: pathlib.Path) -> None:
    home = root / "home"
    stand_in, supervisor_pid, reaper_pid = start_stand_in(root, with_reaper=True)
    assert len(processes_for_home(home)) >= 5  # supervisor, four daemons (and the code server)

    os.kill(stand_in.pid, signal.SIGKILL)
    stand_in.wait()
    wait_for(lambda: not processes_for_home(home), 45, "every process of the home to be stopped")
    wait_for(lambda: not alive(reaper_pid), 45, "the reaper to exit")
    # SIGTERM first, to the supervisor alone: it began its own orderly shutdown, as on Ctrl-C
    # (a SIGKILL would have left no such line), and stopped its daemons itself.
    log = (root / "supervisor.log").read_text()
    assert "supervisor shutting down" in log, log[-2000:]


@pytest.mark.timeout(150)
def test_without_the_reaper_the_supervisor_outlives_the_killed_test_process(root: pathlib.Path) -> None:
    home = root / "home"
    stand_in, supervisor_pid, _ = start_stand_in(root, with_reaper=False)

    os.kill(stand_in.pid, signal.SIGKILL)
    stand_in.wait()
    time.sleep(3)  # the claim is that nothing happens: give it time to
    assert alive(supervisor_pid) and dagctl(home, "daemons", "status").code == 0

    stopped = reaper.sweep(str(root))  # what the reaper would have done
    assert any(line.startswith(f"SIGTERM {supervisor_pid} ") for line in stopped), stopped
    wait_for(lambda: not processes_for_home(home), 30, "every process of the home to be stopped")
