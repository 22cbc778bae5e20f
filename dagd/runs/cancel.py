"""Canceling runs that have (or are about to get) a worker: SIGTERM to the worker's process group,
SIGKILL after a grace, then CANCELED. Used by terminate, by ``dagctl dev`` on exit, and later by
run monitoring.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import TYPE_CHECKING

import psutil

from dagd.run_launcher import group_members, signal_group
from dagd.runs.model import IN_PROGRESS_STATUSES, Run, RunStatus

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

TERMINATE_GRACE_SECONDS = 5.0


def finish_cancel(instance: Instance, run_id: str, grace: float = TERMINATE_GRACE_SECONDS) -> None:
    """SIGTERM the worker's group, SIGKILL what is left after the grace, then mark CANCELED."""
    runs = instance.storage.runs
    deadline = time.monotonic() + grace
    run = runs.require(run_id)
    while run.worker_pid is None and run.status == RunStatus.CANCELING and time.monotonic() < deadline:
        time.sleep(0.05)  # the launcher has not recorded the worker yet
        run = runs.require(run_id)
    if run.worker_pid is not None and instance.launcher.is_alive(run):
        signal_group(run.worker_pid, 15)
        while group_members(run.worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_members(run.worker_pid):
            signal_group(run.worker_pid, 9)
    else:
        kill_worker_group(run)  # the worker is gone; take any children with it
    runs.transition(run_id, RunStatus.CANCELED, expected=(RunStatus.CANCELING,), message="worker stopped")


def kill_worker_group(run: Run) -> None:
    """SIGKILL the run's worker's process group: the worker and any children it left behind.

    Unless the recorded pid now belongs to another process (pids are reused): then that group is
    someone else's, and the worker's own group is gone too, since Linux never hands out a pid
    that is still some group's id.
    """
    if run.worker_pid is None:
        return
    try:
        reused = run.worker_started_at is not None and not math.isclose(
            psutil.Process(run.worker_pid).create_time(), run.worker_started_at, abs_tol=0.05
        )
    except psutil.NoSuchProcess:
        reused = False
    except psutil.AccessDenied:
        reused = True
    if not reused:
        signal_group(run.worker_pid, signal.SIGKILL)


def cancel_runs_in_progress(instance: Instance, message: str, grace: float = TERMINATE_GRACE_SECONDS) -> int:
    """Cancel every run that has (or is about to get) a worker and wait until the workers are gone.

    ``dagctl dev`` calls this after its supervisor stopped: a local session leaves no process
    behind. (``dagctl daemon run`` does not: there, runs outlive a supervisor restart.)
    """
    runs = instance.storage.runs
    threads = []
    for run in runs.with_status(IN_PROGRESS_STATUSES):
        if run.status != RunStatus.CANCELING:
            expected = (RunStatus.STARTING, RunStatus.STARTED)
            if runs.transition(run.run_id, RunStatus.CANCELING, expected=expected, message=message) is None:
                continue  # it finished meanwhile
        thread = threading.Thread(
            target=finish_cancel, args=(instance, run.run_id, grace), name=f"cancel-{run.run_id}", daemon=True
        )
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(grace + 5)
    return len(threads)
