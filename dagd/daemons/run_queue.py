"""The ``run_queue`` daemon: launches QUEUED runs when ``max_concurrent_runs`` and tag limits allow.

Each pass reads one light view of the queued and in-progress runs, asks the pure
:func:`select_runs` which to launch, and claims the chosen runs, ``LAUNCH_BATCH`` at a time in one
compare-and-set transaction (QUEUED -> STARTING, fenced by the supervisor lease epoch), before
starting their workers, so a run canceled meanwhile, claimed by another dequeuer, or claimed after
a takeover is never launched. Workers start on a small thread pool so one slow launch does not
hold up the others.

The supervisor wakes the daemon on every submission, and a worker's exit wakes it too; the
poll interval (``dequeue_interval_seconds``) is only a fallback.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from dagd.daemons.base import Daemon
from dagd.runs.launch import launch_runs, redispatch_orphans
from dagd.runs.model import IN_PROGRESS_STATUSES, RunStatus
from dagd.runs.queue import QueueView, is_paused, queue_config

if TYPE_CHECKING:
    from dagd.instance.config import QueuedRunCoordinatorConfig
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.daemon.run_queue")

LAUNCH_THREADS = 8
MIN_PASS_SPACING_SECONDS = 0.01
# While at capacity a submission cannot launch anyway: its pass only logs it, so passes are spaced
# further apart. A finished worker (freed capacity) still gets the short spacing.
AT_CAPACITY_PASS_SPACING_SECONDS = 0.05
# Runs claimed per transaction. Claiming (and recording workers) per batch rather than per run is
# what makes thousands of launches a second possible; a small batch keeps the time between a
# run's claim and its worker being recorded short.
LAUNCH_BATCH = 50
ORPHAN_CHECK_SECONDS = 1.0
# While runs wait for a worker slot, look again this often: a remote worker's run ending wakes
# nobody here (a local worker's exit does).
SLOT_POLL_SECONDS = 0.5


def _default_queue_config() -> QueuedRunCoordinatorConfig:
    """The queue's defaults (only the poll interval matters) for a coordinator that does not queue.

    Imported here, not at the top: with the default coordinator the daemon never needs pydantic.
    """
    from dagd.instance.config import QueuedRunCoordinatorConfig

    return QueuedRunCoordinatorConfig()


class RunQueueDaemon(Daemon):
    name = "run_queue"

    def __init__(self, instance: Instance) -> None:
        super().__init__(instance)
        configured = queue_config(instance)
        self.queues_runs = configured is not None
        self.queue_config = configured or _default_queue_config()
        self._reported: set[str] = set()
        self._last_pass = 0.0
        self._seen_seq = 0  # newest queued run already looked at while at capacity
        self._queued = 0
        self._at_capacity = False
        self._queued_counted_at = float("-inf")
        self._pool = ThreadPoolExecutor(max_workers=LAUNCH_THREADS, thread_name_prefix="launch")
        self._orphans_checked = float("-inf")
        self._waiting_for_slots = False
        self._queue_of: dict[str, str] = {}  # this pass: each run's broker queue (worker slots)
        # A finished worker frees capacity: look at the queue again at once.
        instance.launcher.on_worker_exit = self._worker_exited

    @property
    def interval_seconds(self) -> float:
        if self._waiting_for_slots:
            return min(SLOT_POLL_SECONDS, self.queue_config.dequeue_interval_seconds)
        return self.queue_config.dequeue_interval_seconds

    def _worker_exited(self) -> None:
        self._at_capacity = False
        self.wake_event.set()
        # Run monitoring checks at once whether the run ended properly or its worker died.
        self.request_wake("run_monitoring")

    def _redispatch_orphans(self) -> None:
        """Attempts whose dispatcher died before their worker claimed them (a run_queue killed
        between claim and launch): dispatched again at once on start, then checked every second."""
        now = time.monotonic()
        if now - self._orphans_checked < ORPHAN_CHECK_SECONDS:
            return
        self._orphans_checked = now
        for item in redispatch_orphans(self.instance):
            if item.handle is not None:
                log.info(
                    "run %s: orphaned attempt dispatched again as attempt %d",
                    item.run.run_id,
                    item.attempt.attempt,
                )

    def _relay(self) -> None:
        """A broker launcher publishes again what no worker claimed (lost, or never sent)."""
        launcher = self.instance.launcher
        try:
            launcher.relay()
        except Exception as exc:  # the broker or storage is down: the next pass tries again
            log.warning("relaying unclaimed attempts failed: %s", exc)
        self.degraded_reason = launcher.degraded_reason  # e.g. "broker unreachable"

    def _fit_worker_slots(self, view: QueueView, to_launch: list[str]) -> list[str]:
        """With a launcher that runs on worker hosts, only as many runs per queue as its live
        hosts have free slots (database clock), in launch order; the rest stay queued."""
        launcher = self.instance.launcher
        if not getattr(launcher, "uses_worker_slots", False):
            self._waiting_for_slots = False
            return to_launch
        from dagd.runs.celery.slots import fit_slots

        timeout = float(self.instance.config.run_monitoring.worker_heartbeat_timeout_seconds)
        free = self.instance.storage.workers.free_slots(timeout, launcher.default_queue)  # type: ignore[attr-defined]
        tags = {run.run_id: run.tags for run in view.queued}
        queue_of = {run_id: launcher.queue_of(tags[run_id]) for run_id in to_launch}  # type: ignore[attr-defined]
        launch, waiting = fit_slots(to_launch, queue_of, free)
        self._waiting_for_slots = bool(waiting)
        for run_id, queue in waiting.items():
            if run_id not in self._reported:
                self._reported.add(run_id)
                log.info(
                    "run %s stays queued: no free worker slot on queue %s (%d free)",
                    run_id, queue, free.get(queue, 0),
                )  # fmt: skip
        self._queue_of = queue_of
        return launch

    def run_iteration(self) -> None:
        storage = self.instance.storage
        self._redispatch_orphans()
        self._relay()
        if not self.queues_runs:
            self.info = {"coordinator": type(self.instance.coordinator).__name__, "queueing": False}
            return
        # Coalesce bursts: a stream of submissions wakes us per run; one pass every few ms serves
        # them all and leaves the CPU to the submissions themselves.
        min_spacing = AT_CAPACITY_PASS_SPACING_SECONDS if self._at_capacity else MIN_PASS_SPACING_SECONDS
        spacing = min_spacing - (time.monotonic() - self._last_pass)
        if spacing > 0:
            time.sleep(spacing)
        self._last_pass = time.monotonic()
        if is_paused(storage):
            self.info = {"paused": True}
            return
        cap = self.queue_config.max_concurrent_runs
        if cap != -1:
            # Only the in-progress runs (a short index range): counting a deep queue on every pass
            # would make each submission cost O(queue depth) while at capacity.
            counts = storage.runs.count_by_status(only=IN_PROGRESS_STATUSES)
            in_progress = sum(counts.values())
            self._at_capacity = in_progress >= cap
            if self._at_capacity:
                # Nothing can launch: skip reading the whole queue; only log the newcomers.
                for run_id, seq in storage.runs.queued_after(self._seen_seq):
                    self._seen_seq = max(self._seen_seq, seq)
                    if run_id not in self._reported:
                        self._reported.add(run_id)
                        log.info(
                            "run %s stays queued: max_concurrent_runs: %d of %d in progress",
                            run_id,
                            in_progress,
                            cap,
                        )
                self.info = {
                    "queued": self._queued_count(),
                    "in_progress": in_progress,
                    "at_capacity": True,
                    "paused": False,
                }
                return
        view = QueueView.read(storage)
        self.info = {"queued": len(view.queued), "in_progress": len(view.in_progress), "paused": False}
        if not view.queued:
            self._reported.clear()
            return
        # Forget runs that left the queue some other way (canceled, claimed elsewhere): bounded.
        self._reported.intersection_update(run.run_id for run in view.queued)
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
        self._queue_of = {}
        to_launch = self._fit_worker_slots(view, list(selection.to_launch))
        if not to_launch:
            return
        self.phase = f"launching {len(to_launch)} run(s)"
        launched = 0
        for start in range(0, len(to_launch), LAUNCH_BATCH):
            batch = to_launch[start : start + LAUNCH_BATCH]
            # Only the runs claimed here come back: one canceled or claimed elsewhere meanwhile,
            # or all of them when our lease epoch is stale, is neither launched nor counted.
            launches = launch_runs(
                self.instance,
                batch,
                expected=(RunStatus.QUEUED,),
                retries=self.queue_config.max_launch_retries,
                backoff=(
                    self.queue_config.launch_retry_backoff_seconds,
                    self.queue_config.max_launch_retry_backoff_seconds,
                ),
                map_fn=self._pool.map,
                queue_of={run_id: self._queue_of.get(run_id) for run_id in batch} if self._queue_of else None,
            )
            self._reported.difference_update(batch)
            for item in launches:
                if item.handle is None:
                    log.warning("run %s dequeued, but the launcher failed (see its events)", item.run.run_id)
                    if item.retry_in is not None:
                        self._wake_in(item.retry_in)
                else:
                    where = (
                        f"queue {item.attempt.queue}"
                        if item.attempt.queue
                        else f"worker pid {item.handle.pid}"
                    )
                    log.info("run %s dequeued: attempt %d, %s", item.run.run_id, item.attempt.attempt, where)
                    launched += 1
        self.info["launched"] = launched

    def _wake_in(self, seconds: float) -> None:
        """Look at the queue again when a run held after a failed launch may go (not only at the
        next poll)."""
        timer = threading.Timer(seconds + 0.01, self.wake_event.set)
        timer.daemon = True
        timer.start()

    def _queued_count(self) -> int:
        """The queue depth for the heartbeat's info, counted at most once per heartbeat interval."""
        now = time.monotonic()
        if now - self._queued_counted_at >= self.instance.config.daemons.heartbeat_interval_seconds:
            counts = self.instance.storage.runs.count_by_status(only=(RunStatus.QUEUED,))
            self._queued = counts.get(RunStatus.QUEUED, 0)
            self._queued_counted_at = now
        return self._queued

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.instance.close()
