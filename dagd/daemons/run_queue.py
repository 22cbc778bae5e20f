"""The ``run_queue`` daemon: launches QUEUED runs when ``max_concurrent_runs`` and tag limits allow.

Each pass reads one light view of the queued and in-progress runs, asks the pure
:func:`select_runs` which to launch, and claims each chosen run with a compare-and-set
(QUEUED -> STARTING, fenced by the supervisor lease epoch) before starting its worker, so a run
canceled meanwhile, claimed by another dequeuer, or claimed after a takeover is never launched.
Launches run on a small thread pool so one slow launch does not hold up the others.

The supervisor wakes the daemon on every submission, and a worker's exit wakes it too; the
poll interval (``dequeue_interval_seconds``) is only a fallback.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from dagd.daemons.base import Daemon
from dagd.instance.config import QueuedRunCoordinatorConfig
from dagd.run_coordinator.queue import QueueView, is_paused, queue_config
from dagd.run_launcher import launch_stored_run
from dagd.runs.model import RunStatus

if TYPE_CHECKING:
    from dagd.instance.instance import Instance
    from dagd.run_coordinator.selection import QueuedRun

log = logging.getLogger("dagd.daemon.run_queue")

LAUNCH_THREADS = 8


class RunQueueDaemon(Daemon):
    name = "run_queue"

    def __init__(self, instance: Instance) -> None:
        super().__init__(instance)
        self.queue_config = queue_config(instance) or QueuedRunCoordinatorConfig()
        self.queues_runs = queue_config(instance) is not None
        self._reported: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=LAUNCH_THREADS, thread_name_prefix="launch")
        # A finished worker frees capacity: look at the queue again at once.
        instance.launcher.on_worker_exit = self.wake_event.set

    @property
    def interval_seconds(self) -> float:
        return self.queue_config.dequeue_interval_seconds

    def run_iteration(self) -> None:
        storage = self.instance.storage
        if not self.queues_runs:
            self.info = {"coordinator": type(self.instance.coordinator).__name__, "queueing": False}
            return
        if is_paused(storage):
            self.info = {"paused": True}
            return
        view = QueueView.read(storage)
        self.info = {"queued": len(view.queued), "in_progress": len(view.in_progress), "paused": False}
        if not view.queued:
            self._reported.clear()
            return
        selection = view.select(self.queue_config)
        for run_id, blocked in selection.blocked.items():
            if run_id not in self._reported:
                self._reported.add(run_id)
                log.info(
                    "run %s stays queued (number %d): %s",
                    run_id,
                    blocked.position,
                    "; ".join(blocked.reasons),
                )
        if not selection.to_launch:
            return
        by_id = {r.run_id: r for r in view.queued}
        self.phase = f"launching {len(selection.to_launch)} run(s)"
        results = list(self._pool.map(self._launch, [by_id[i] for i in selection.to_launch]))
        self.info["launched"] = sum(results)

    def _launch(self, queued: QueuedRun) -> bool:
        launched = launch_stored_run(
            self.instance,
            queued.run_id,
            expected=(RunStatus.QUEUED,),
            retries=self.queue_config.max_launch_retries,
        )
        self._reported.discard(queued.run_id)
        if launched.status == RunStatus.QUEUED:
            return False  # the claim was lost (fenced out, or raced): nothing launched
        log.info("run %s dequeued: %s", queued.run_id, launched.status.value)
        return launched.status != RunStatus.FAILURE

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.instance.close()
