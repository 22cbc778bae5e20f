"""The ``run_queue`` daemon: launches QUEUED runs when ``max_concurrent_runs`` and tag limits allow.

Each pass reads the queued and in-progress runs, asks the pure :func:`select_runs` which to launch,
and claims each chosen run with a compare-and-set (QUEUED -> STARTING) before starting its worker,
so a run canceled meanwhile, or claimed by another dequeuer, is never launched. The supervisor
wakes the daemon on every submission; a worker exiting wakes it too; the poll interval is a
fallback only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dagd.daemons.base import Daemon
from dagd.instance.config import QueuedRunCoordinatorConfig
from dagd.run_coordinator import QueuedRunCoordinator
from dagd.run_coordinator.selection import InProgressRun, QueuedRun, TagLimit, select_runs
from dagd.run_launcher import launch_stored_run
from dagd.runs.model import IN_PROGRESS_STATUSES, RunStatus

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.daemon.run_queue")


def tag_limits(config: QueuedRunCoordinatorConfig) -> list[TagLimit]:
    return [
        TagLimit(key=lim.key, value=lim.exact_value, per_unique_value=lim.per_unique_value, limit=lim.limit)
        for lim in config.tag_concurrency_limits
    ]


class RunQueueDaemon(Daemon):
    name = "run_queue"

    def __init__(self, instance: Instance) -> None:
        super().__init__(instance)
        coordinator = instance.coordinator
        self.queue_config = (
            coordinator.config
            if isinstance(coordinator, QueuedRunCoordinator)
            else QueuedRunCoordinatorConfig()
        )
        self._reported: set[str] = set()
        # A finished worker frees capacity: look at the queue again at once.
        instance.launcher.on_worker_exit = self.wake_event.set

    @property
    def interval_seconds(self) -> float:
        return min(self.queue_config.dequeue_interval_seconds, 5.0)

    def run_iteration(self) -> None:
        runs = self.instance.storage.runs
        in_progress = runs.with_status(IN_PROGRESS_STATUSES)
        cap = self.queue_config.max_concurrent_runs
        if cap != -1 and len(in_progress) >= cap:
            self.info = {"in_progress": len(in_progress), "at_capacity": True}
            return  # nothing can launch: skip reading the whole queue
        queued = runs.with_status([RunStatus.QUEUED])
        self.info = {"queued": len(queued), "in_progress": len(in_progress)}
        if not queued:
            return
        selection = select_runs(
            [QueuedRun(r.run_id, r.seq, r.priority, r.tags) for r in queued],
            [InProgressRun(r.run_id, r.tags) for r in in_progress],
            self.queue_config.max_concurrent_runs,
            tag_limits(self.queue_config),
        )
        by_id = {r.run_id: r for r in queued}
        for run_id, blocked in selection.blocked.items():
            if run_id not in self._reported:
                self._reported.add(run_id)
                log.info("run %s stays queued: %s", run_id, "; ".join(blocked.reasons))
        for run_id in selection.to_launch:
            self.phase = f"launching {run_id}"
            launched = launch_stored_run(self.instance, by_id[run_id], expected=(RunStatus.QUEUED,))
            self._reported.discard(run_id)
            log.info("run %s launched: %s", run_id, launched.status.value)
        self.info["launched"] = len(selection.to_launch)
