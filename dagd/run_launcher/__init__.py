"""Run launchers: how a claimed run gets a worker process, and how that worker is stopped.

:class:`LocalProcessRunLauncher` starts ``python -m dagd.runs.worker`` per run in its own session
(so its process group is its own and a terminate reaches the job's children too). A worker is
identified by pid *and* process start time, because pids are reused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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
        # Called (from any thread) when a worker this launcher started has exited.
        self.on_worker_exit: Callable[[], None] | None = None

    def launch(self, run: Run) -> WorkerHandle:
        raise NotImplementedError

    def terminate(self, run: Run, grace_seconds: float) -> bool:
        """Ask the run's worker to stop; returns False if there is no live worker."""
        raise NotImplementedError

    def is_alive(self, run: Run) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the launcher holds (helper processes); runs keep going."""


def launch_stored_run(
    instance: Instance, run_id: str, *, expected: Sequence[RunStatus], retries: int = 0
) -> Run:
    """Claim ``run`` (-> STARTING, compare-and-set, fenced by the instance's lease epoch) and start
    its worker.

    Returns the run as it is afterwards. If the claim is lost (another process claimed or canceled
    it, or our lease was taken over), nothing is launched and the current run is returned. A
    launcher error fails the run.
    """
    from dagd.storage.leases import SUPERVISOR_LEASE

    runs = instance.storage.runs
    epoch = instance.fence_epoch
    claimed = runs.transition(
        run_id,
        RunStatus.STARTING,
        expected=expected,
        message="launching",
        claim_epoch=epoch,
        fence=(SUPERVISOR_LEASE, epoch) if epoch is not None else None,
    )
    if claimed is None:
        return runs.require(run_id)
    try:
        handle = instance.launcher.launch(claimed)
    except Exception as exc:
        failures = sum(1 for e in runs.events(run_id) if e.message.startswith("launch failed"))
        if RunStatus.QUEUED in expected and failures < retries:
            requeued = runs.transition(
                run_id,
                RunStatus.QUEUED,
                expected=(RunStatus.STARTING,),
                message=f"launch failed ({exc}); back in the queue, retry {failures + 1} of {retries}",
            )
            return requeued or runs.require(run_id)
        failed = runs.transition(
            run_id, RunStatus.FAILURE, expected=(RunStatus.STARTING,), error=f"launch failed: {exc}"
        )
        return failed or runs.require(run_id)
    runs.record_worker(run_id, handle.pid, handle.started_at)
    return runs.require(run_id)


from dagd.run_launcher.local import LocalProcessRunLauncher, LocalProcessRunLauncherConfig  # noqa: E402

__all__ = [
    "LocalProcessRunLauncher",
    "LocalProcessRunLauncherConfig",
    "RunLauncher",
    "WorkerHandle",
    "launch_stored_run",
    "process_matches",
]
