"""A hand-written fake launcher: the run queue's seam to the outside world, with no processes.

:class:`RecordingLauncher` records every run it is asked to launch and hands back a
:class:`WorkerHandle` whose pid can never exist (at or above Linux's ``PID_MAX_LIMIT``), so
anything that later signals "the worker" (terminate, cancel) hits nothing instead of the test
process's own group. Name it in ``dagd.yaml``:

    run_launcher: {module: helpers.launchers, class: RecordingLauncher}

(``tests/`` is on ``sys.path`` through ``tests/conftest.py``.) One launcher exists per
:class:`~dagd.instance.instance.Instance`; tests with several instances combine their records.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from dagd.run_launcher import RunLauncher, WorkerHandle, WorkerHealth
from dagd.runs.attempts import Attempt
from dagd.runs.model import Run

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

# Linux pids are below pid_max, which is at most PID_MAX_LIMIT = 2**22: these pids never exist.
FAKE_PID_BASE = 2**22


class RecordingLauncher(RunLauncher):
    def __init__(self, instance: Instance, config: Any) -> None:
        super().__init__(instance, config)
        self._lock = threading.Lock()
        self.launched: list[str] = []  # run ids, in the order launch() was called
        self.alive: set[str] = set()

    def launch(self, run: Run, attempt: Attempt) -> WorkerHandle:
        with self._lock:
            self.launched.append(run.run_id)
            self.alive.add(run.run_id)
            pid = FAKE_PID_BASE + len(self.launched)
        return WorkerHandle(pid=pid, started_at=0.0)

    def check_health(self, run: Run, attempt: Attempt) -> WorkerHealth:
        with self._lock:
            return WorkerHealth.ALIVE if run.run_id in self.alive else WorkerHealth.DEAD

    def terminate(self, run: Run, attempt: Attempt, *, force: bool = False) -> bool:
        with self._lock:
            if run.run_id not in self.alive:
                return False
            self.alive.discard(run.run_id)
            return True

    def finish(self, run_id: str) -> None:
        """The fake worker for ``run_id`` has exited; tell whoever listens, as a real launcher does."""
        with self._lock:
            self.alive.discard(run_id)
        if self.on_worker_exit is not None:
            self.on_worker_exit()


class FlakyLauncher(RecordingLauncher):
    """Fails the first ``failures`` launches (``run_launcher.config: {failures: N}``), then records
    launches as :class:`RecordingLauncher` does."""

    def __init__(self, instance: Instance, config: Any) -> None:
        super().__init__(instance, config)
        self.failures_left = int((config or {}).get("failures", 1))
        self.failed: list[str] = []

    def launch(self, run: Run, attempt: Attempt) -> WorkerHandle:
        with self._lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                self.failed.append(run.run_id)
                raise OSError("injected launch failure")
        return super().launch(run, attempt)
