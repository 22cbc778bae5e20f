"""``CeleryRunLauncher``: runs go to worker hosts through a broker; the database stays the truth.

``launch`` is called after the dispatch transaction committed (the run is STARTING with a
DISPATCHED attempt): it publishes ``{run_id, attempt, dispatch_token}`` to the run's queue (its
``dagd/queue`` tag, else ``queue``). A publish that fails (the broker is down) is not an error:
the attempt stays DISPATCHED and the **relay** (:meth:`relay`, called by the run queue daemon)
publishes it again, as it does for any attempt no worker claimed within ``relay_after_seconds``
(a message lost in a broker restart, a supervisor killed between commit and publish). A
duplicate is harmless: the worker's claim is a compare-and-set on the token.

Liveness comes from the attempt's heartbeats on the database's clock, which run monitoring
judges: ``check_health`` is UNKNOWN. ``terminate`` is a database state: the run is already
CANCELING when it is called, and the remote watcher sees it in its next heartbeat and stops its
job (SIGTERM, SIGKILL after the grace). Celery's ``revoke(terminate=True)`` is never used.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from dagd.errors import ConfigError
from dagd.instance.instance import BuiltinConfigModel
from dagd.runs.attempts import Attempt, WorkerHealth, dispatcher_alive
from dagd.runs.model import Run
from dagd.runs.plugins import RunLauncher, WorkerHandle

if TYPE_CHECKING:
    from celery import Celery

    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.launcher.celery")

QUEUE_TAG = "dagd/queue"
BROKER_UNREACHABLE = "broker unreachable"
# Test hook, inert unless set: publish every message twice (a duplicate delivery).
FAULT_PUBLISH_TWICE = "DAGD_FAULT_PUBLISH_TWICE"


class CeleryRunLauncher(RunLauncher):
    # dagd.instance.config.CeleryRunLauncherConfig, imported only when read.
    config_model = BuiltinConfigModel()
    uses_worker_slots = True

    def __init__(self, instance: Instance, config: Any) -> None:
        super().__init__(instance, config)
        if instance.config.storage.postgres is None:
            from dagd.instance.config import SQLITE_REFUSED

            raise ConfigError(f"{instance.config_file}: run_launcher: {SQLITE_REFUSED}")
        self._app: Celery | None = None
        self._lock = threading.Lock()
        # (run_id, attempt) -> (publishes so far, monotonic time of the last): the relay backs off.
        self._published: dict[tuple[str, int], tuple[int, float]] = {}
        self._relayed_at = float("-inf")

    @property
    def default_queue(self) -> str:
        return str(self.config.queue)

    def queue_of(self, tags: dict[str, str]) -> str:
        return tags.get(QUEUE_TAG) or self.default_queue

    def _celery(self) -> Celery:
        with self._lock:
            if self._app is None:
                from dagd.runs.celery.app import make_app

                self._app = make_app(self.config.broker_url, self.default_queue, worker=False)
            return self._app

    def publish(self, run: Run, attempt: Attempt) -> bool:
        """Send the attempt's message; False (logged) when the broker did not take it."""
        import os

        from dagd.runs.celery.app import TASK_NAME, message

        app = self._celery()
        queue = attempt.queue or self.queue_of(run.tags)
        body = message(run.run_id, attempt.attempt, attempt.dispatch_token)
        step = 0.2
        policy = {
            "max_retries": max(1, int(self.config.publish_timeout_seconds / step)),
            "interval_start": 0,
            "interval_step": step,
            "interval_max": step,
        }
        copies = 2 if os.environ.get(FAULT_PUBLISH_TWICE) else 1
        try:
            for _ in range(copies):
                app.send_task(
                    TASK_NAME,
                    kwargs=body,
                    queue=queue,
                    routing_key=queue,
                    expires=self.config.message_expiry_seconds,
                    retry=True,
                    retry_policy=policy,
                )
        except Exception as exc:  # the broker is down: the relay publishes it again later
            log.warning(
                "run %s attempt %d: could not publish to queue %s (%s); the relay will retry",
                run.run_id, attempt.attempt, queue, exc,
            )  # fmt: skip
            self.degraded_reason = BROKER_UNREACHABLE
            return False
        self.degraded_reason = None
        key = (run.run_id, attempt.attempt)
        count, _ = self._published.get(key, (0, 0.0))
        self._published[key] = (count + 1, time.monotonic())
        return True

    def launch(self, run: Run, attempt: Attempt) -> WorkerHandle:
        self.publish(run, attempt)
        return WorkerHandle()  # where it runs is known once a worker claims it

    def relay(self) -> int:
        """Publish again the attempts dispatched but not claimed for ``relay_after_seconds``
        (database clock), backing off per attempt; how many were published."""
        interval = float(self.config.relay_after_seconds)
        now = time.monotonic()
        if now - self._relayed_at < interval / 2:
            return 0
        self._relayed_at = now
        if self.degraded_reason is not None:
            self._probe_broker()  # recovered though nothing waits to be published?
        storage = self.instance.storage
        pending = storage.attempts.dispatched_before(interval)
        waiting = {(a.run_id, a.attempt) for a in pending}
        for key in set(self._published) - waiting:
            del self._published[key]  # claimed, superseded or ended: forget it
        sent = 0
        cap = max(interval, float(self.config.message_expiry_seconds) / 2)
        for attempt in pending:
            if dispatcher_alive(attempt.dispatcher) is False:
                continue  # superseded as an orphan by the run queue (dagd.runs.launch)
            count, last = self._published.get((attempt.run_id, attempt.attempt), (0, float("-inf")))
            if now - last < min(cap, interval * 2 ** max(0, count - 1)):
                continue
            run = storage.runs.get(attempt.run_id)
            if run is None:
                continue
            log.info(
                "run %s attempt %d: not claimed after %gs; publishing it again",
                run.run_id, attempt.attempt, interval,
            )  # fmt: skip
            if not self.publish(run, attempt):
                break  # the broker is down: the next pass tries again, without blocking on each
            sent += 1
        return sent

    def _probe_broker(self) -> None:
        """While the broker is unreachable: one quick connection attempt (bounded, never blocks
        the run queue for long); clears ``degraded_reason`` when the broker answers."""
        try:
            with self._celery().connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
        except Exception:
            self.degraded_reason = BROKER_UNREACHABLE
        else:
            self.degraded_reason = None

    def check_health(self, run: Run, attempt: Attempt) -> WorkerHealth:
        # The heartbeats on the database's clock are the only word on a remote worker's life.
        return WorkerHealth.UNKNOWN

    def terminate(self, run: Run, attempt: Attempt, *, force: bool = False) -> bool:
        # The run is CANCELING in the database: the watcher sees it in its next heartbeat and
        # stops its job. With force, the attempt is ended by the caller: the watcher's heartbeat
        # then matches nothing and it kills its job (fenced). Nothing to send either way.
        return not force

    def close(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None
