"""The shared daemon loop: iterations of work, a heartbeat that proves progress, errors recorded.

A daemon is a class with ``run_iteration()``; :class:`DaemonRunner` drives it:

- after each iteration it upserts the heartbeat row (throttled to the configured interval) and
  sends a progress line to the supervisor over the status pipe (the process's stdout);
- an exception in an iteration goes into the heartbeat's error list (newest first) and the loop
  goes on after a short backoff: a daemon records errors instead of dying;
- an unreachable database is *degraded*, not hung: the runner tells the supervisor over the pipe
  (which needs no database) and keeps retrying with backoff;
- the supervisor holds the write end of our stdin: EOF there means the supervisor is gone, and the
  daemon exits at once (no orphans, even after a SIGKILL of the supervisor). Bytes on stdin wake
  the loop early (``w``), which is how submissions reach the run queue without polling.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any

from dagd.errors import StorageUnavailable
from dagd.process_protocol import (  # StatusPipe, watch_parent_eof, read_config_line: re-exported
    WAKE,
    Busy,
    Degraded,
    Progress,
    Started,
    StatusPipe,
    WakeRequest,
    read_config_line,
    watch_parent_eof,
)
from dagd.processes import daemon_title, set_title
from dagd.storage.daemons import MAX_ERRORS, Heartbeat
from dagd.timefmt import rfc3339, utcnow

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.daemon")

ERROR_BACKOFF_SECONDS = 1.0
DEGRADED_BACKOFF_MAX_SECONDS = 5.0
# Added to the storage's own bound on a call when a degraded daemon announces a retry.
STORAGE_WAIT_SLACK_SECONDS = 2.0


class Daemon:
    """Base for one daemon's work. Subclasses set ``name`` and implement ``run_iteration``."""

    name = "daemon"

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.pipe = StatusPipe(None)  # replaced by the runner with the real status pipe
        self.phase = "idle"
        self.info: dict[str, Any] = {}
        self.wake_event = threading.Event()  # set to end the current wait early
        # Since when (monotonic) storage has answered this daemon without a break; None while it
        # does not. Run monitoring judges no worker by its silence until this is old enough.
        self.storage_ok_since: float | None = time.monotonic()
        # Set by the daemon itself: why it cannot do its work though storage answers (the run
        # queue: "broker unreachable"). Reported like storage trouble: degraded, not hung.
        self.degraded_reason: str | None = None

    @property
    def interval_seconds(self) -> float:
        return 1.0

    def run_iteration(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def announce_wait(self, seconds: float) -> None:
        """From the loop's thread, before a call that ends within ``seconds`` on its own (user code
        under its evaluation timeout): the supervisor does not take the silence for a hang until
        then. A call that overruns its own bound is a hang as before."""
        self.pipe.send(Busy(seconds))

    def request_wake(self, daemon_name: str) -> None:
        """Ask the supervisor to wake another daemon (e.g. the run queue after a submission)."""
        self.pipe.send(WakeRequest(daemon_name))


class DaemonRunner:
    def __init__(self, daemon: Daemon, *, incarnation: int, pipe: StatusPipe) -> None:
        self.daemon = daemon
        self.incarnation = incarnation
        self.pipe = pipe
        self.daemon_id = uuid.uuid4().hex
        self.iteration = 0
        self.errors: list[dict[str, Any]] = []
        self.wake = daemon.wake_event
        daemon.pipe = pipe
        self.stopping = threading.Event()
        self._last_beat = 0.0
        self._last_ping = 0.0
        self._degraded: str | None = None  # storage unreachable (the runner's own finding)
        self._reported: str | None = None  # the reason last sent to the supervisor
        # Test hook, inert unless set: see _inject_degraded_hang.
        self._fault_hang_degraded = daemon.name in os.environ.get("DAGD_FAULT_HANG_DEGRADED", "").split(",")

    @property
    def heartbeat_interval(self) -> float:
        return self.daemon.instance.config.daemons.heartbeat_interval_seconds

    def record_error(self, message: str) -> None:
        self.errors.insert(0, {"at": rfc3339(utcnow()), "message": message})
        del self.errors[MAX_ERRORS:]

    def beat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < self.heartbeat_interval:
            return
        self.daemon.instance.storage.daemons.beat(
            Heartbeat(
                daemon_name=self.daemon.name,
                daemon_id=self.daemon_id,
                pid=os.getpid(),
                incarnation=self.incarnation,
                iteration=self.iteration,
                phase=self.daemon.phase,
                errors=self.errors,
                info=self.daemon.info,
            )
        )
        self._last_beat = now

    def _reason(self) -> str | None:
        """Why the daemon is degraded: storage first, else what the daemon says of itself."""
        return self._degraded or self.daemon.degraded_reason

    def _set_degraded(self, reason: str | None) -> None:
        if reason != self._degraded:
            self._degraded = reason
            self.daemon.storage_ok_since = None if reason else time.monotonic()
            if reason:
                log.warning("%s degraded: %s", self.daemon.name, reason)
            else:
                log.info("%s recovered", self.daemon.name)
        self._send_reason()

    def _send_reason(self) -> None:
        reason = self._reason()
        if reason != self._reported and self._degraded is None:
            if reason:
                log.warning("%s degraded: %s", self.daemon.name, reason)
            else:
                log.info("%s no longer degraded", self.daemon.name)
        self._reported = reason
        self.pipe.send(Degraded(reason, self.iteration))

    def run(self) -> None:
        degraded_backoff = 0.5
        while not self.stopping.is_set():
            try:
                if self._degraded is not None:
                    self._announce_retry()
                if self._fault_hang_degraded:
                    self._inject_degraded_hang()
                self.daemon.phase = "working"
                self.daemon.run_iteration()
                self.iteration += 1
                # Read after the pass: it may have found a nearer deadline (a timeout, a max runtime).
                wait = self.daemon.interval_seconds
                self.daemon.phase = "idle"
                self.beat(force=self._degraded is not None)
                if self._degraded is not None:
                    self._set_degraded(None)
                elif self._reason() != self._reported:
                    self._send_reason()
                self._ping()
                degraded_backoff = 0.5
            except StorageUnavailable as exc:
                self._set_degraded(str(exc))
                wait = degraded_backoff
                degraded_backoff = min(degraded_backoff * 2, DEGRADED_BACKOFF_MAX_SECONDS)
            except Exception as exc:  # record and go on: one bad iteration must not kill the daemon
                log.error("%s iteration failed:\n%s", self.daemon.name, traceback.format_exc())
                self.record_error(f"{type(exc).__name__}: {exc}")
                self.daemon.phase = "error backoff"
                try:
                    self.beat(force=True)
                except Exception:
                    pass
                self.pipe.send(Progress(self.iteration, error=str(exc)[:500]))
                wait = ERROR_BACKOFF_SECONDS
            self._idle(wait)
            self.wake.clear()
        self.daemon.close()

    def _announce_retry(self) -> None:
        """Before a pass while storage is down: it may block up to the driver's own bound on a call
        (SQLite's busy timeout, PostgreSQL's connect timeout). Saying so over the pipe keeps the
        supervisor from taking that wait for a hang, and from waiting forever on a call that never
        returns: a degraded daemon is judged like any other, from its last sign of life."""
        bound = self.daemon.instance.storage.longest_wait_seconds + STORAGE_WAIT_SLACK_SECONDS
        self.pipe.send(Busy(bound, self._degraded))

    def _inject_degraded_hang(self) -> None:
        """Test hook (``DAGD_FAULT_HANG_DEGRADED=name,...``): the first pass finds storage
        unreachable; the retry then blocks for good, like a call on a connection that never answers."""
        if self._degraded is None:
            raise StorageUnavailable("storage unavailable: injected by DAGD_FAULT_HANG_DEGRADED")
        threading.Event().wait()

    def _ping(self) -> None:
        """Progress to the supervisor, at most a few times per heartbeat interval (fast loops are cheap)."""
        now = time.monotonic()
        if now - self._last_ping >= self.heartbeat_interval / 2:
            self._last_ping = now
            self.pipe.send(Progress(self.iteration))

    def _idle(self, seconds: float) -> None:
        """Wait for the next iteration (or a wake), pinging at the heartbeat interval meanwhile.

        The pings come from the loop's own thread between waits, so they still prove the loop is
        not stuck in a unit of work; a long poll interval does not look like a hang.
        """
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.wake.wait(min(remaining, self.heartbeat_interval)):
                return
            self.pipe.send(Progress(self.iteration, self._reason()))
            if self._degraded is None:
                try:
                    self.beat()
                except StorageUnavailable as exc:
                    self._set_degraded(str(exc))


def load_instance(home: str, *, config_from_stdin: bool) -> Instance:
    """The instance from the supervisor's validated config, or from ``dagd.yaml`` when run alone."""
    from dagd.instance.instance import Instance

    if config_from_stdin:
        return Instance.from_handoff(home, read_config_line())
    return Instance.load(home, create=False)


def main(
    name: str, home: str, incarnation: int, epoch: int | None = None, *, config_from_stdin: bool = False
) -> None:
    from dagd.daemons.registry import make_daemon

    fault = os.environ.get("DAGD_FAULT_FAIL_START", "")
    if name in fault.split(","):  # test hook, inert unless set: a daemon that can never start
        sys.stderr.write(f"{name}: failing at start (DAGD_FAULT_FAIL_START)\n")
        sys.exit(3)
    instance = load_instance(home, config_from_stdin=config_from_stdin)
    instance.fence_epoch = epoch
    logs = instance.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    from logging.handlers import RotatingFileHandler

    handler = RotatingFileHandler(logs / f"{name}.log", maxBytes=10 * 1024 * 1024, backupCount=3)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name}[%(process)d] %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    set_title(daemon_title(name))
    # The status pipe is our stdout; anything else printing must not corrupt it.
    pipe = StatusPipe(os.fdopen(os.dup(1), "w", buffering=1))
    os.dup2(2, 1)
    runner = DaemonRunner(make_daemon(name, instance), incarnation=incarnation, pipe=pipe)
    watch_parent_eof(on_byte=lambda data: runner.wake.set() if WAKE in data else None)

    def on_term(_signum: int, _frame: Any) -> None:
        runner.stopping.set()
        runner.wake.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which stops us in order
    log.info("%s starting (pid %d, incarnation %d)", name, os.getpid(), incarnation)
    pipe.send(Started(os.getpid()))
    try:
        runner.run()
    except StorageUnavailable as exc:
        pipe.send(Degraded(str(exc)))
        raise
    log.info("%s stopped", name)
