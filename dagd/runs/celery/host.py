"""``dagctl worker run``: a worker host that takes attempts from the broker and runs them.

The Celery task is a thin launcher: it checks the attempt is still waiting for this token (a
duplicate or stale message is logged and dropped without starting anything), then starts the
attempt's watcher (:mod:`dagd.runs.worker`) as a process of its own session and waits for it.
Fast path: the local launcher's pre-warmed fork server (:mod:`dagd.runs.local.forkserver`) forks
the watcher in milliseconds; fallback (``--no-fork-server``, or the fork server failing): a
``python -m dagd.runs.celery.child`` spawn, which also dies with the host (parent-death signal).
Watchers forked by the fork server outlive a host killed alone and finish their runs; a host
lost with its whole process tree (a machine gone) leaves its attempts silent, and run
monitoring resumes or fails them after the heartbeat timeout. The watcher claims the attempt (compare-and-set on the token),
forks the job into its own process group, heartbeats on the database's clock, stops the job on
CANCELING and fences itself; user code never runs in Celery's process. Celery's pool is threads,
one per slot, each only waiting for its watcher.

The host registers itself in ``workers`` (name, host, queues, slots) and heartbeats there too,
with its slots in use. SIGTERM (Celery's warm shutdown) stops taking messages, marks the host not
accepting, and waits for its running attempts to end; a second SIGTERM or SIGQUIT stops at once
(the watchers die with the host and their runs are resumed or failed by run monitoring).

Under systemd (``NOTIFY_SOCKET``, :mod:`dagd.supervisor.sdnotify`) it sends ``READY=1`` once
Celery's consumer is consuming (``worker_ready``), ``WATCHDOG=1`` and a ``STATUS=`` line (queues,
slots in use) from a bootstep on the consumer whose repeating timer fires inside the consumer's
event loop (a wedged loop sends nothing, so systemd restarts the host), and ``STOPPING=1`` on
``worker_shutting_down``.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from dagd.errors import ConfigError, StorageUnavailable
from dagd.runs.attempts import AttemptState, heartbeat_interval
from dagd.runs.local.launcher import ForkServer
from dagd.supervisor.sdnotify import Notifier

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.worker_host")


class WorkerHost:
    """This host's registration, its slots in use, and the attempts' watchers."""

    def __init__(
        self, instance: Instance, queues: Sequence[str], slots: int, fork_server: bool = True
    ) -> None:
        self.instance = instance
        self.use_fork_server = fork_server
        self._fork_server: ForkServer | None = None
        self._fork_lock = threading.Lock()
        self.queues = list(queues)
        self.slots = slots
        self.host = socket.gethostname()
        self.name = f"{self.host}:{os.getpid()}"
        self.in_use = 0
        self.accepting = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    # -- registration --------------------------------------------------------------------------

    def register(self) -> None:
        self.instance.storage.workers.register(self.name, self.host, os.getpid(), self.queues, self.slots)
        self._beats = threading.Thread(target=self._beat_loop, name="host-heartbeat", daemon=True)
        self._beats.start()

    def _beat_loop(self) -> None:
        timeout = float(self.instance.config.run_monitoring.worker_heartbeat_timeout_seconds)
        interval = heartbeat_interval(timeout)
        workers = self.instance.storage.workers
        while not self._stop.wait(interval):
            try:
                if not workers.heartbeat(self.name, self.in_use, self.accepting):
                    workers.register(self.name, self.host, os.getpid(), self.queues, self.slots)
            except StorageUnavailable as exc:
                log.warning("host heartbeat failed: %s", exc)
            except Exception as exc:  # never let the thread die: silence makes the host dead
                log.warning("host heartbeat failed: %s", exc)

    def status_line(self) -> str:
        state = "taking runs" if self.accepting else "draining"
        return f"{state}: queues {', '.join(self.queues)}; {self.in_use}/{self.slots} slots in use"

    def draining(self) -> None:
        """Celery began its warm shutdown: no more messages; say so at once."""
        self.accepting = False
        try:
            self.instance.storage.workers.heartbeat(self.name, self.in_use, False)
        except Exception as exc:
            log.warning("could not mark the host draining: %s", exc)

    def unregister(self) -> None:
        with self._fork_lock:
            if self._fork_server is not None:
                self._fork_server.close()  # running watchers carry on (they are their own sessions)
                self._fork_server = None
        self._stop.set()
        if self._beats is not None:
            self._beats.join(timeout=5)
        try:
            self.instance.storage.workers.remove(self.name)
        except Exception as exc:
            log.warning("could not remove the host's row: %s", exc)

    # -- one attempt -----------------------------------------------------------------------------

    def run_attempt(self, run_id: str, attempt: int, token: str) -> None:
        """The Celery task's body: start the attempt's watcher and wait for it."""
        current = self.instance.storage.attempts.get(run_id, attempt)
        if current is None or current.dispatch_token != token or current.state != AttemptState.DISPATCHED:
            why = "unknown attempt" if current is None else f"attempt is {current.state.value}"
            if current is not None and current.dispatch_token != token:
                why = "wrong dispatch token"
            log.info("run %s attempt %d: duplicate or stale message ignored (%s)", run_id, attempt, why)
            return
        with self._lock:
            self.in_use += 1
        try:
            self._watch(run_id, attempt, token)
        finally:
            with self._lock:
                self.in_use -= 1

    def _watch(self, run_id: str, attempt: int, token: str) -> None:
        if self.use_fork_server:
            try:
                pid = self._server().fork(run_id, attempt, token)
            except (OSError, FutureTimeout) as exc:
                log.warning("fork server failed (%s); spawning the watcher instead", exc)
                with self._fork_lock:
                    if self._fork_server is not None:
                        self._fork_server.proc.kill()
                        self._fork_server = None
            else:
                log.info("run %s attempt %d: watcher pid %d forked", run_id, attempt, pid)
                _wait_for(pid)
                log.info("run %s attempt %d: watcher %d ended", run_id, attempt, pid)
                return
        self._spawn(run_id, attempt, token)

    def _server(self) -> ForkServer:
        with self._fork_lock:
            if self._fork_server is None or not self._fork_server.alive:
                server = ForkServer(str(self.instance.home), None)
                server.ready.result(timeout=30)
                self._fork_server = server
            return self._fork_server

    def _spawn(self, run_id: str, attempt: int, token: str) -> None:
        home = str(self.instance.home)
        log_dir = self.instance.home / "logs" / "runs"
        log_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "dagd.runs.celery.child", "--parent", str(os.getpid()),
            "--home", home, "--attempt", str(attempt), "--token", token, run_id,
        ]  # fmt: skip
        # The watcher's own output (claims, fencing, crashes before it can write to storage).
        with open(log_dir / f"{run_id}.log", "ab") as crash_log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=crash_log,
                stderr=crash_log,
                start_new_session=True,
                close_fds=True,
            )
        log.info("run %s attempt %d: watcher pid %d started", run_id, attempt, proc.pid)
        code = proc.wait()
        log.info("run %s attempt %d: watcher exited (%d)", run_id, attempt, code)


def _wait_for(pid: int) -> None:
    """Until process ``pid`` (not our child: the fork server's) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def host_config(instance: Instance) -> Any:
    """The instance's Celery launcher config; a one-line error if it uses another launcher."""
    from dagd.instance.builtins import CELERY_LAUNCHER, is_named
    from dagd.instance.config import validate_section
    from dagd.instance.instance import config_model

    section = instance.config.run_launcher
    if not is_named(CELERY_LAUNCHER, section):
        raise ConfigError(
            f"{instance.config_file}: run_launcher: a worker host needs class {CELERY_LAUNCHER.class_name}"
            f" (module {CELERY_LAUNCHER.module}), got {section.module}.{section.class_name}"
        )
    return validate_section(
        config_model(CELERY_LAUNCHER.config_model),
        section.config,
        file=str(instance.config_file),
        prefix="run_launcher.config",
    )


def notify_step(host: WorkerHost, notifier: Notifier) -> type:
    """A consumer bootstep that pings systemd's watchdog from the consumer's own event loop.

    ``c.timer`` is the timer the consumer's event loop fires (the hub's, for the AMQP and Redis
    transports): the ping vouches for the loop that takes messages, not for a thread beside it.
    """
    from celery import bootsteps

    interval = notifier.watchdog_interval or 5.0  # without a watchdog: keep STATUS= current

    class NotifySystemd(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = {"celery.worker.consumer.tasks:Tasks"}

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.tref: Any = None

        def start(self, c: Any) -> None:
            self.ping()
            self.tref = c.timer.call_repeatedly(interval, self.ping, priority=10)

        def stop(self, c: Any) -> None:
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

        def ping(self) -> None:
            if not host.accepting:  # STOPPING=1 was said; TimeoutStopSec bounds the drain
                return
            notifier.watchdog()
            if notifier.is_ready:
                notifier.status(host.status_line())

    return NotifySystemd


def run_host(
    instance: Instance,
    queues: Sequence[str],
    concurrency: int,
    fork_server: bool = True,
    notifier: Notifier | None = None,
    stall_seconds: float = 10.0,
    metrics: tuple[str, int] | None = None,
) -> int:
    """Consume from ``queues`` (default: the configured queue) with ``concurrency`` slots until
    stopped; the exit code. ``notifier``: systemd's channel (inert by default). ``stall_seconds``:
    the consumer watchdog's patience (:mod:`dagd.runs.celery.watchdog`). ``metrics``: (address,
    port) to serve ``/metrics`` on (:mod:`dagd.runs.celery.metrics`)."""
    from celery import signals

    from dagd.runs.celery.app import TASK_NAME, make_app, parse_message
    from dagd.runs.celery.watchdog import ConsumerWatchdog, bootstep

    config = host_config(instance)
    instance.launcher  # noqa: B018 - builds the launcher: refuses SQLite storage with one line
    queues = list(dict.fromkeys(queues or [config.queue]))
    host = WorkerHost(instance, queues, concurrency, fork_server)
    app = make_app(config.broker_url, config.queue, worker=True)

    @app.task(name=TASK_NAME, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_attempt(**body: Any) -> None:
        parsed = parse_message(body)
        if parsed is None:
            log.warning("malformed message ignored: %r", sorted(body))
            return
        host.run_attempt(*parsed)

    notify = notifier or Notifier(None)

    def on_ready(**_: Any) -> None:
        notify.ready(host.status_line())

    def on_shutting_down(**_: Any) -> None:
        notify.stopping("stopping: no more runs taken; waiting for the running ones")
        host.draining()

    def exit_stalled(code: int) -> None:
        # From the watchdog's thread: the consumer cannot be trusted to stop. Running watchers
        # forked by the fork server are their own sessions and finish their runs. The exit
        # never waits more than a few seconds on the database.
        leaving = threading.Thread(target=host.unregister, name="unregister", daemon=True)
        leaving.start()
        leaving.join(timeout=8)
        log.info("worker host %s: exiting %d", host.name, code)
        logging.shutdown()
        os._exit(code)

    watchdog = ConsumerWatchdog(
        config.broker_url,
        queues,
        free_slot=lambda: host.accepting and host.in_use < host.slots,
        exit_host=exit_stalled,
        stall_seconds=stall_seconds,
    )

    def on_received(**_: Any) -> None:
        watchdog.received()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    signals.task_received.connect(on_received, weak=False)
    if notify.enabled:
        app.steps["consumer"].add(notify_step(host, notify))
    app.steps["consumer"].add(bootstep(watchdog))

    def exit_on_sigterm(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    # Until Celery installs its own handlers, SIGTERM must still unregister the host: a host
    # stopped while starting stayed registered, its slots counted as free until its heartbeat
    # went stale, and runs were dispatched to nobody (seen as 4 runs in progress on 2 slots).
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    host.register()
    log.info("worker host %s: queues %s, %d slot(s)", host.name, ", ".join(queues), concurrency)
    watchdog.start()
    metrics_server = None
    try:
        if metrics is not None:
            from dagd.runs.celery.metrics import serve

            metrics_server = serve(host, watchdog, metrics[1], metrics[0])
        worker = app.Worker(
            hostname=f"dagd@{host.name}",
            pool_cls="threads",
            concurrency=concurrency,
            queues=queues,
            loglevel="INFO",
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
            quiet=True,
        )
        worker.start()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        watchdog.stop()
        host.unregister()
        instance.close()
        notify.close()
    return int(worker.exitcode or 0)
