"""Run launchers: how a claimed run gets a worker process, and how that worker is stopped.

:class:`LocalProcessRunLauncher` starts ``python -m dagd.runs.worker`` per run in its own session
(so its process group is its own and a terminate reaches the job's children too). A worker is
identified by pid *and* process start time, because pids are reused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import psutil
from pydantic import BaseModel

from dagd.runs.model import Run, RunStatus

if TYPE_CHECKING:
    from dagd.instance.instance import Instance


@dataclass(frozen=True)
class WorkerHandle:
    pid: int
    started_at: float  # psutil create_time


def process_matches(pid: int | None, started_at: float | None) -> bool:
    """True if ``pid`` is alive (not a zombie) and is the process that started at ``started_at``."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or abs(proc.create_time() - started_at) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return members


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class RunLauncher:
    config_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, instance: Instance, config: Any) -> None:
        self.instance = instance
        self.config = config

    def launch(self, run: Run) -> WorkerHandle:
        raise NotImplementedError

    def terminate(self, run: Run, grace_seconds: float) -> bool:
        """Ask the run's worker to stop; returns False if there is no live worker."""
        raise NotImplementedError

    def is_alive(self, run: Run) -> bool:
        raise NotImplementedError


class LocalProcessRunLauncher(RunLauncher):
    def worker_command(self, run: Run) -> Sequence[str]:
        return [sys.executable, "-m", "dagd.runs.worker", "--home", str(self.instance.home), run.run_id]

    def launch(self, run: Run) -> WorkerHandle:
        log_dir = self.instance.home / "logs" / "runs"
        log_dir.mkdir(parents=True, exist_ok=True)
        # The worker's own crash output (before it can write to storage) lands here.
        with open(log_dir / f"{run.run_id}.log", "ab") as crash_log:
            proc = subprocess.Popen(
                self.worker_command(run),
                stdin=subprocess.DEVNULL,
                stdout=crash_log,
                stderr=crash_log,
                start_new_session=True,
                close_fds=True,
            )
        # Reap it when it exits so it never lingers as a zombie of a long-lived parent.
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
        try:
            started_at = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            started_at = time.time()
        return WorkerHandle(pid=proc.pid, started_at=started_at)

    def is_alive(self, run: Run) -> bool:
        return process_matches(run.worker_pid, run.worker_started_at)

    def terminate(self, run: Run, grace_seconds: float) -> bool:
        if not self.is_alive(run):
            return False
        assert run.worker_pid is not None
        signal_group(run.worker_pid, signal.SIGTERM)
        return True


def launch_stored_run(
    instance: Instance, run: Run, *, expected: Sequence[RunStatus], epoch: int | None = None
) -> Run:
    """Claim ``run`` (-> STARTING, compare-and-set) and start its worker.

    Returns the run as it is afterwards. If the claim is lost (another process claimed or canceled
    it), nothing is launched and the current run is returned. A launcher error fails the run.
    """
    runs = instance.storage.runs
    claimed = runs.transition(
        run.run_id, RunStatus.STARTING, expected=expected, message="launching", claim_epoch=epoch
    )
    if claimed is None:
        return runs.require(run.run_id)
    try:
        handle = instance.launcher.launch(claimed)
    except Exception as exc:
        failed = runs.transition(
            run.run_id, RunStatus.FAILURE, expected=(RunStatus.STARTING,), error=f"launch failed: {exc}"
        )
        return failed or runs.require(run.run_id)
    runs.record_worker(run.run_id, handle.pid, handle.started_at)
    return runs.require(run.run_id)


__all__ = ["LocalProcessRunLauncher", "RunLauncher", "WorkerHandle", "launch_stored_run", "process_matches"]
