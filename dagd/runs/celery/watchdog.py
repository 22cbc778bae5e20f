"""The worker host's consumer watchdog: a consumer that silently stopped taking messages.

On Redis, Celery's consumer sometimes reconnects after a broker outage and never consumes again
(celery/celery#8030, #10205): the process is alive, its event loop turns, systemd's watchdog is
fed, and messages pile up in the queue. The watchdog looks from outside: its own connection asks
the broker how many messages wait in the host's queues. If some wait while the host has a free
slot and accepts runs, and the consumer receives nothing for ``stall_seconds``, the consumer is
restarted (a connection error raised inside its own event loop: Celery closes the connection and
connects and consumes again). If it still receives nothing for another ``stall_seconds`` (or its
loop never ran the restart), the host exits 75 (EX_TEMPFAIL) for its service manager to start it
again; running attempts are their own sessions and carry on.

Time is this process's monotonic clock only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("dagd.worker_host")

EX_TEMPFAIL = 75
# How long a restart may wait for the consumer's loop to run it (at least stall_seconds).
RESTART_GRACE_SECONDS = 15.0
# Test hook, inert unless set: "once" makes the consumer stop consuming (its task consumer
# cancelled) after its first message; "always" also hangs the restarted consumer before it
# consumes (nothing helps).
FAULT_CONSUMER_STALL = "DAGD_FAULT_CONSUMER_STALL"


class ConsumerStalled(ConnectionResetError):
    """Raised inside the consumer's event loop to make Celery reconnect and consume again."""


class ConsumerWatchdog:
    """Watches one host's consumer; ``received()`` is called for every message it takes."""

    def __init__(
        self,
        broker_url: str,
        queues: Sequence[str],
        free_slot: Callable[[], bool],
        exit_host: Callable[[int], None],
        stall_seconds: float = 10.0,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker_url = broker_url
        self.queues = list(queues)
        self.free_slot = free_slot
        self.exit_host = exit_host
        self.stall_seconds = stall_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.last_received = clock()
        self.restarts = 0
        self.received_count = 0
        self._consumer: Any = None  # Celery's consumer, once its loop runs (see bootstep())
        self._stuck_since: float | None = None
        self._restarted_at: float | None = None  # when a restart was asked
        self._restart_seen_at: float | None = None  # when the consumer started again after it
        self._restart_pending = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self._fault = os.environ.get(FAULT_CONSUMER_STALL, "")
        self._faulted = False

    # -- what the host tells it ----------------------------------------------------------------

    def received(self) -> None:
        self.last_received = self.clock()
        self.received_count += 1
        if self._fault and self._consumer is not None and not self._faulted:
            self._faulted = True
            self._consumer.task_consumer.cancel()  # in the consumer's loop (task_received)
            log.warning("%s: the consumer stops consuming", FAULT_CONSUMER_STALL)

    def consumer_started(self, consumer: Any) -> None:
        self._consumer = consumer
        self._restart_pending = False
        if self._restarted_at is not None and self._restart_seen_at is None:
            self._restart_seen_at = self._stuck_since = self.clock()  # judged afresh from now
        if self._fault == "always" and self._faulted:
            log.warning("%s: the restarted consumer hangs", FAULT_CONSUMER_STALL)
            threading.Event().wait()

    # -- the decision (pure but for the callbacks; tested alone) ---------------------------------

    def check(self, waiting: int | None) -> str:
        """One look: ``waiting`` messages in the queues (None: the broker did not answer).
        Returns what was done: "ok", "suspect", "restart" or "exit"."""
        now = self.clock()
        if waiting is None or waiting == 0 or not self.free_slot():
            # Nothing to take, no room to take it, or no broker (Celery reconnects on its own).
            self._stuck_since = self._restarted_at = self._restart_seen_at = None
            return "ok"
        if self._restarted_at is not None and self._restart_seen_at is None:
            # Asked, not yet run by the consumer's loop (it runs it at its next wake-up, within
            # the hub's longest poll). A loop that never does is wedged.
            if now - self._restarted_at < max(self.stall_seconds, RESTART_GRACE_SECONDS):
                return "suspect"
            return self._exit("the consumer's loop never ran the restart")
        if self._stuck_since is None or self.last_received > self._stuck_since:
            self._stuck_since = now
            if self._restart_seen_at is not None and self.last_received > self._restart_seen_at:
                self._restarted_at = self._restart_seen_at = None  # the restart helped
            return "suspect"
        if now - self._stuck_since < self.stall_seconds:
            return "suspect"
        if self._restarted_at is None:
            self._restarted_at = now
            self.restarts += 1
            log.warning(
                "consumer watchdog: %d message(s) wait in %s and a slot is free, but nothing was"
                " received for %.0f s: restarting the consumer",
                waiting, ", ".join(self.queues), self.stall_seconds,
            )  # fmt: skip
            self._request_restart()
            return "restart"
        return self._exit("the restarted consumer still receives nothing")

    def _exit(self, why: str) -> str:
        log.error(
            "consumer watchdog: %s; exiting %d for the service manager to start the host again",
            why,
            EX_TEMPFAIL,
        )
        self.exit_host(EX_TEMPFAIL)
        return "exit"

    def _request_restart(self) -> None:
        consumer = self._consumer
        if consumer is None or self._restart_pending:
            return
        self._restart_pending = True

        def fail() -> None:
            raise ConsumerStalled("consumer watchdog: no message received while messages wait")

        # Fired by the consumer's own event loop; the hub propagates connection errors out of
        # the loop and Celery's consumer reconnects. A wedged loop never fires it: the exit follows.
        consumer.timer.call_after(0.0, fail, priority=0)

    # -- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="consumer-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check(self.waiting())
            except Exception as exc:  # never let the thread die silently
                log.warning("consumer watchdog: %s", exc)

    def waiting(self) -> int | None:
        """Messages ready in the host's queues (a passive declare: nothing is created), or None."""
        from kombu import Connection

        try:
            if self._connection is None:
                self._connection = Connection(self.broker_url, connect_timeout=2.0)
                self._connection.ensure_connection(max_retries=1)
            channel = self._connection.default_channel
            total = 0
            for queue in self.queues:
                try:
                    total += int(channel.queue_declare(queue=queue, passive=True).message_count)
                except self._connection.channel_errors:  # no such queue yet (AMQP closes the channel)
                    self._connection.close()
                    self._connection = None
                    return 0
            return total
        except Exception:
            self._close()
            return None

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass


def bootstep(watchdog: ConsumerWatchdog) -> type:
    """A consumer bootstep telling the watchdog the consumer (re)started, with its timer."""
    from celery import bootsteps

    class WatchConsumer(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = {"celery.worker.consumer.tasks:Tasks"}

        def start(self, c: Any) -> None:
            watchdog.consumer_started(c)

    return WatchConsumer
