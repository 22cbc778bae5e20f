"""Run launchers: how a claimed run gets a worker process, and how that worker is stopped.

:class:`LocalProcessRunLauncher` starts ``python -m dagd.runs.worker`` per run in its own session
(so its process group is its own and a terminate reaches the job's children too). A worker is
identified by pid *and* process start time, because pids are reused.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import psutil

from dagd.runs.model import Run, RunStatus

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dagd.instance.config import LocalProcessRunLauncherConfig
    from dagd.instance.instance import Instance


@dataclass(frozen=True)
class WorkerHandle:
    pid: int
    started_at: float  # psutil create_time


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """(state, start time) from one read of /proc/PID/stat (Linux); None if there is no such process.

    Run monitoring checks every in-progress run each pass; one small read is ~4x cheaper than
    psutil's separate status and create_time lookups. The start time is computed as psutil does.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return fields[0].decode(), _boot_time() + int(fields[19]) / _CLOCK_TICKS


@functools.cache
def _boot_time() -> float:
    return psutil.boot_time()


def process_matches(pid: int | None, started_at: float | None) -> bool:
    """True if ``pid`` is alive (not a zombie) and is the process that started at ``started_at``."""
    if not pid:
        return False
    if os.path.isdir("/proc/self"):
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":
            return False
        return started_at is None or abs(stat[1] - started_at) < 0.05
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


@dataclass(frozen=True)
class Launch:
    """One run this process claimed, and the worker started for it (None: the launcher failed,
    and the run was failed or, with retries left, put back in the queue)."""

    run: Run
    handle: WorkerHandle | None


def launch_runs(
    instance: Instance,
    run_ids: Sequence[str],
    *,
    expected: Sequence[RunStatus],
    retries: int = 0,
    map_fn: Callable[..., Iterable[Launch]] = map,
) -> list[Launch]:
    """Claim ``run_ids`` (-> STARTING) and start a worker for each run claimed.

    The claim is one compare-and-set transaction for all of them, fenced by the instance's lease
    epoch: a run another process canceled or claimed first, or every run if our lease was taken
    over, is left out of the result and nothing is launched for it. The workers are then started
    through ``map_fn`` (e.g. a thread pool's ``map``) and recorded in one more transaction. Only
    the returned runs were claimed by this call.
    """
    from dagd.storage.leases import SUPERVISOR_LEASE

    runs = instance.storage.runs
    epoch = instance.fence_epoch
    claimed = runs.claim_many(
        run_ids,
        expected=expected,
        claim_epoch=epoch,
        fence=(SUPERVISOR_LEASE, epoch) if epoch is not None else None,
    )

    def start(run: Run) -> Launch:
        return Launch(run, _start_worker(instance, run, expected, retries))

    launches = list(map_fn(start, claimed))
    runs.record_workers(
        [(x.run.run_id, x.handle.pid, x.handle.started_at) for x in launches if x.handle is not None]
    )
    return launches


def _start_worker(
    instance: Instance, run: Run, expected: Sequence[RunStatus], retries: int
) -> WorkerHandle | None:
    """Start the claimed run's worker; on a launcher error, requeue (retries left) or fail the run."""
    runs = instance.storage.runs
    try:
        return instance.launcher.launch(run)
    except Exception as exc:
        failures = sum(1 for e in runs.events(run.run_id) if e.message.startswith("launch failed"))
        if RunStatus.QUEUED in expected and failures < retries:
            runs.transition(
                run.run_id,
                RunStatus.QUEUED,
                expected=(RunStatus.STARTING,),
                message=f"launch failed ({exc}); back in the queue, retry {failures + 1} of {retries}",
            )
        else:
            runs.transition(
                run.run_id, RunStatus.FAILURE, expected=(RunStatus.STARTING,), error=f"launch failed: {exc}"
            )
        return None


def launch_stored_run(
    instance: Instance, run_id: str, *, expected: Sequence[RunStatus], retries: int = 0
) -> Run:
    """Claim one run and start its worker (see :func:`launch_runs`); returns the run afterwards.

    If the claim is lost, nothing is launched and the current run is returned. A launcher error
    fails the run (or requeues it while ``retries`` remain).
    """
    launch_runs(instance, [run_id], expected=expected, retries=retries)
    return instance.storage.runs.require(run_id)


from dagd.run_launcher.local import LocalProcessRunLauncher  # noqa: E402


def __getattr__(name: str) -> Any:
    # The launcher's config model lives with the other pydantic models; importing it lazily keeps
    # this package (which every daemon imports) free of pydantic.
    if name == "LocalProcessRunLauncherConfig":
        from dagd.instance.config import LocalProcessRunLauncherConfig

        return LocalProcessRunLauncherConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Launch",
    "LocalProcessRunLauncher",
    "LocalProcessRunLauncherConfig",
    "RunLauncher",
    "WorkerHandle",
    "launch_runs",
    "launch_stored_run",
    "process_matches",
]
