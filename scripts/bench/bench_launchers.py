"""Launchers for the benchmarks: measure the run queue, not process start-up.

:class:`NoopLauncher` starts nothing: a launched run stays STARTING, and its "worker" has a pid
that can never exist (at or above Linux's PID_MAX_LIMIT), so a later terminate signals nobody.
Name it in ``dagd.yaml`` with this directory on the supervisor's PYTHONPATH:

    run_launcher: {module: bench_launchers, class: NoopLauncher}
"""

from __future__ import annotations

import itertools

from dagd.run_launcher import RunLauncher, WorkerHandle
from dagd.runs.model import Run

FAKE_PID_BASE = 2**22


class NoopLauncher(RunLauncher):
    _pids = itertools.count(FAKE_PID_BASE)

    def launch(self, run: Run) -> WorkerHandle:
        return WorkerHandle(pid=next(self._pids), started_at=0.0)

    def is_alive(self, run: Run) -> bool:
        return False

    def terminate(self, run: Run, grace_seconds: float) -> bool:
        return False
