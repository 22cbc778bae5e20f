"""A watchdog that stops what a test session started if pytest itself dies without cleaning up.

Fixtures stop every supervisor they start, and each test checks that nothing of its home is left
(``procs.assert_no_leftovers``). None of that runs when the test process is killed outright (a CI
timeout, the OOM killer, ``kill -9`` on a stuck run): a ``dagctl dev`` child of pytest would then
run on, with its daemons, code servers and run workers, for good.

:func:`start` runs this file as a separate process, in its own session so that signals aimed at
pytest's process group do not reach it, reading a pipe that only the test process holds open.
End of file on that pipe means the test process is gone, or is done. The reaper then stops every
process that belongs to the session's base directory: ``DAGD_HOME`` under it, or the path in its
command line. It sends SIGTERM to the topmost of them first, so that a supervisor stops its
daemons and cancels its runs the way it does on Ctrl-C; after a grace, SIGTERM to whatever is
left; after another, SIGKILL. Only those processes
are signalled, never a process group: a supervisor started by a test shares pytest's group, and
under pytest-xdist so do the other workers.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import psutil

GRACE_SECONDS = 10.0


def start(root: pathlib.Path) -> subprocess.Popen[bytes]:
    """The reaper for everything under ``root``; keep the returned process until :func:`stop`."""
    return subprocess.Popen(
        [sys.executable, __file__, str(root), str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(reaper: subprocess.Popen[bytes], timeout: float = 30) -> list[str]:
    """End of session: close the pipe; the reaper sweeps and exits. What it had to stop, one line
    per process (normally nothing: the fixtures stopped everything already)."""
    assert reaper.stdin is not None and reaper.stdout is not None
    reaper.stdin.close()
    try:
        reaper.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()
    return reaper.stdout.read().decode(errors="replace").splitlines()


def belongs(proc: psutil.Process, root: str, spare: int) -> bool:
    try:
        if proc.pid in (os.getpid(), spare) or proc.status() == psutil.STATUS_ZOMBIE:
            return False
        home = proc.environ().get("DAGD_HOME", "")
        return home == root or home.startswith(root + os.sep) or root + os.sep in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def left_under(root: str, spare: int = 0) -> list[psutil.Process]:
    """Live processes of ``root`` (but not pid ``spare``: the test process, if it is still there)."""
    return [proc for proc in psutil.process_iter() if belongs(proc, root, spare)]


def _roots(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes whose parent is not among ``procs``: supervisors, not their daemons."""
    pids = {proc.pid for proc in procs}
    roots = []
    for proc in procs:
        try:
            if proc.ppid() not in pids:
                roots.append(proc)
        except psutil.NoSuchProcess:
            pass
    return roots


def sweep(root: str, spare: int = 0, grace: float = GRACE_SECONDS) -> list[str]:
    """SIGTERM the topmost processes of ``root`` (a supervisor stops its own daemons and runs),
    then whatever is left after ``grace``, then SIGKILL after another; what was signalled."""
    signalled: list[str] = []
    for sig, pick in ((signal.SIGTERM, _roots), (signal.SIGTERM, list), (signal.SIGKILL, list)):
        procs = pick(left_under(root, spare))
        for proc in procs:
            try:
                line = f"{sig.name} {proc.pid} {' '.join(proc.cmdline())}"
                proc.send_signal(sig)
                signalled.append(line)
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + grace
        while procs and time.monotonic() < deadline:
            time.sleep(0.1)
            procs = left_under(root, spare)  # also what the first ones started meanwhile
        if not procs:
            break
    return signalled


def main(root: str, spare: int) -> None:
    sys.stdin.buffer.read()  # returns at end of file: the test process has exited, or is done
    for line in sweep(root, spare):
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
