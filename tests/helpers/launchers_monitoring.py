"""A launcher whose worker never reports in: the run stays STARTING until run monitoring acts.

:class:`SilentLauncher` starts ``sleep 60`` in a new session (its own process group, as a real
worker's) and returns its :class:`WorkerHandle`; nothing ever claims the run, so it stays
STARTING. Name it in ``dagd.yaml``, with ``tests/`` on the daemons' ``PYTHONPATH``:

    run_launcher: {module: helpers.launchers_monitoring, class: SilentLauncher}
"""

from __future__ import annotations

import subprocess
import threading

import psutil

from dagd.run_launcher import RunLauncher, WorkerHandle
from dagd.runs.attempts import Attempt
from dagd.runs.local.process import signal_group
from dagd.runs.model import Run

SILENT_SECONDS = 60


class SilentLauncher(RunLauncher):
    def launch(self, run: Run, attempt: Attempt) -> WorkerHandle:
        proc = subprocess.Popen(
            ["sleep", str(SILENT_SECONDS)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Reap it when it ends, so a killed "worker" is gone rather than a zombie of this daemon.
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
        self.started.append(proc)
        return WorkerHandle(pid=proc.pid, started_at=psutil.Process(proc.pid).create_time())

    started: list[subprocess.Popen[bytes]] = []

    # No check_health: the launcher cannot tell (UNKNOWN), as a launcher that never hears from
    # its worker cannot. The run stays STARTING until run monitoring's start timeout fails it.

    def terminate(self, run: Run, attempt: Attempt, *, force: bool = False) -> bool:
        if attempt.pid is None:
            return False
        signal_group(attempt.pid, 15)
        return True
