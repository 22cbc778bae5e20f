"""The supervisor process (``dagctl daemon run`` / ``dagctl dev``): start, serve, shut down.

Start order: load and validate the instance and workspace, open storage (creating the schema on
a fresh database), refuse if another supervisor is alive for this home, listen for gRPC (health
answers; the API is refused until the code servers are up), start the code servers, serve
Prometheus metrics when ``metrics.port`` is set, publish the addresses in
``$DAGD_HOME/supervisor.json``, open the API (a standby serves submissions and reads too), take
the lease or, with ``--standby``, stand by until it can, then start the daemons and listen for
wake-ups from standbys (:mod:`dagd.supervisor.wakeups`); ``dagd.api.v1.RunService`` is SERVING
only from then on (this process leads).

Losing the lease (:mod:`dagd.supervisor.lease`: taken over, or no renewal within the renew
deadline) kills the daemons at once; the process then rejoins as a standby by itself
(:meth:`Supervisor._rejoin`): it keeps serving the API, contends for the lease again, and leads
again with a new epoch if it wins (docs/high-availability.md).

The main loop (:meth:`Supervisor.wait`, and :meth:`Supervisor._stand_by` while standing by) passes
every ``LOOP_SECONDS``. Each pass checks that the process table's own thread still steps, and only
then vouches for the process: the overall gRPC health (:class:`~dagd.supervisor.server.LoopHealth`)
and systemd's watchdog (:mod:`dagd.supervisor.sdnotify`). Under systemd it also sends ``READY=1``
once every enabled daemon has stored its first heartbeat (a standby: once it stands by) and a
``STATUS=`` line when the summary changes.

Shutdown (SIGINT/SIGTERM): ``STOPPING=1``, NOT_SERVING and refuse submissions (UNAVAILABLE), stop
the daemons in order (SIGTERM, wait, SIGKILL), stop gRPC and metrics, remove the published file,
exit 0. A second signal kills the daemons at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from dagd import home as layout
from dagd.instance.instance import Instance
from dagd.processes import process_matches, signal_group
from dagd.runs.cancel import cancel_runs_in_progress
from dagd.supervisor.code_locations import CodeLocations
from dagd.supervisor.control import ControlPlane
from dagd.supervisor.lease import AlreadyRunning, LeaseKeeper
from dagd.supervisor.metrics import MetricsServer, start_metrics_server
from dagd.supervisor.process_table import ProcessTable
from dagd.supervisor.retention import RetentionPurger, start_retention
from dagd.supervisor.sdnotify import Notifier
from dagd.supervisor.server import LOOP_STALL_SECONDS, Servers, start_servers
from dagd.supervisor.streams import StreamHub, pg_conninfo
from dagd.supervisor.wakeups import WakeListener
from dagd.workspace import CodeLocationTarget

log = logging.getLogger("dagd.supervisor")

# One pass of the main loop: how quickly a stop request, the watchdog and the status are seen to.
LOOP_SECONDS = 0.2


def check_not_running(instance: Instance) -> None:
    from dagd.client.client import read_published

    published = read_published(instance.home)
    if published is not None and published.alive and published.pid != os.getpid():
        raise AlreadyRunning(
            f"another supervisor (pid {published.pid}) is already running for DAGD_HOME={instance.home}"
        )


def kill_leftover_daemons(instance: Instance) -> int:
    """Kill daemons an earlier supervisor left behind (matched by pid and start time)."""
    path = layout.daemons_file(instance.home)
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    killed = 0
    for pid, started_at in recorded.values():
        if process_matches(pid, started_at) and signal_group(pid, signal.SIGKILL):
            killed += 1
    path.unlink(missing_ok=True)
    return killed


class Supervisor:
    def __init__(
        self,
        instance: Instance,
        targets: list[CodeLocationTarget],
        *,
        workspace_file: str | None = None,
        standby: bool = False,
        cancel_runs_on_exit: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.instance = instance
        # systemd's channel; inert unless the caller read NOTIFY_SOCKET (the CLI does, at start).
        self.notify = notifier or Notifier(None)
        self.standby = standby
        # `dagctl dev` is a local session: stopping it must not leave run workers behind. A
        # deployment (`daemon run`) lets runs outlive a supervisor restart instead.
        self.cancel_runs_on_exit = cancel_runs_on_exit
        self.locations = CodeLocations(instance, targets, workspace_file)
        self.control = ControlPlane(instance, self.locations)
        names = instance.config.daemons.enabled_daemons
        self.table = ProcessTable(instance, names)
        self.control.daemons = self.table
        self.table.on_wake_request = self.table.wake
        self.servers: Servers | None = None
        self.metrics: MetricsServer | None = None
        self.lease: LeaseKeeper | None = None
        self.wakeups: WakeListener | None = None
        self.steps_down = 0  # times this process lost the lease and stood by again
        # Serializes starting a term (after winning the lease) with stepping down (the keeper's thread).
        self._term_lock = threading.Lock()
        self._term = threading.Event()  # set when the current term as leader ends (leader-only threads)
        self._rejoin_due = threading.Event()
        self.leading_since: float | None = None  # monotonic; None until the daemons are started
        self._table_stalled = False
        self.retention: RetentionPurger | None = None
        self._stop = threading.Event()
        self._signals = 0

    def start(self) -> None:
        check_not_running(self.instance)
        killed = kill_leftover_daemons(self.instance)
        if killed:
            log.warning("killed %d daemon(s) left behind by an earlier supervisor", killed)
        # Open now: a broken database fails the start, not the first call.
        self.instance.storage.enable_group_commit()
        streams = self.instance.config.streams
        self.control.streams = StreamHub(
            self.instance.storage,
            max_streams=streams.max_streams,
            queue_size=streams.queue_size,
            poll_seconds=streams.poll_seconds,
            pg_conninfo=pg_conninfo(self.instance.storage),
        )
        self.control.streams.start()
        # Listen first: health answers while the rest starts (the API is refused until it can serve).
        self.servers = start_servers(self.instance, self.control)
        self.notify.status("starting: code servers")
        _ = self.instance.coordinator, self.instance.launcher
        # Daemons take the config validated here instead of importing pydantic to validate it again.
        self.table.config_line = self.instance.handoff_line()
        # Code servers before the lease: a standby serves submissions and reads too (SPEC 9.2),
        # which needs the definitions, and a takeover need not wait for them. Starting them may
        # take a while, and no loop passes meanwhile: that is the start, bounded by systemd's
        # TimeoutStartSec / Kubernetes' startup probe, not a hang.
        self.locations.start()
        self.metrics = start_metrics_server(self.instance, self.table)
        me = psutil.Process()
        published: dict[str, Any] = {
            "pid": me.pid,
            "started_at": me.create_time(),
            "addresses": self.servers.addresses,
        }
        if self.metrics is not None:
            published["metrics"] = self.metrics.url
        layout.write_json_atomic(self.instance.supervisor_file, published)
        threading.Thread(target=self._record_pids, name="record-pids", daemon=True).start()
        self.servers.gate.open()  # every supervisor serves the API, leader or standby
        log.info("supervisor serving on %s", ", ".join(self.servers.addresses))
        if self.metrics is not None:
            log.info("metrics on %s", self.metrics.url)
        self._lead(standby=self.standby)

    def _lead(self, *, standby: bool) -> None:
        """Take the lease (``standby``: wait until we can, serving the API meanwhile), then start
        this term's daemons, wake-up listener and purge. Raises AlreadyRunning if the lease is
        held and ``standby`` is false, or if asked to stop while standing by."""
        assert self.servers is not None
        self.lease = LeaseKeeper(
            self.instance.storage,
            on_lost=self._lease_lost,
            ttl=self.instance.config.daemons.lease_ttl_seconds,
        )
        self.control.lease = self.lease
        self.notify.status("starting: taking the supervisor lease")
        lease = self.lease.acquire(standby=standby, stopping=self._stop, wait=self._stand_by)
        self.servers.health.loop_restarting()
        self.notify.status(f"starting: leading (epoch {lease.epoch}), starting the daemons")
        with self._term_lock:
            self._term = threading.Event()
            self.instance.fence_epoch = lease.epoch
            self.lease.start_renewing()
            self.table.start()
            self.leading_since = time.monotonic()
            self.control.leading = True
            self.wakeups = WakeListener.for_storage(self.instance.storage, self.table.wake)
            if self.wakeups is not None:
                self.wakeups.start()
            self.retention = start_retention(self.instance, self._term)  # leader only: we hold the lease
            self.servers.set_leading(True)
        log.info("leading (epoch %d): daemons started", lease.epoch)

    def _lease_lost(self, reason: str) -> None:
        """Step down (from the keeper's thread): kill the daemons now, not after a grace period,
        so nothing this supervisor does lands after its renew deadline; the main loop then
        rejoins as a standby (:meth:`_rejoin`)."""
        with self._term_lock:
            self.leading_since = None
            self.control.leading = False
            if self.wakeups is not None:
                self.wakeups.stop()
            if self.servers is not None:
                self.servers.set_leading(False)
            self._term.set()  # the purge stops at its next batch
            self.table.stop_all(timeout=0)  # SIGKILL every daemon's process group; the table stops
            self._rejoin_due.set()

    def _rejoin(self) -> None:
        """After stepping down: stand by again in this process, as a standby started afresh would,
        instead of exiting for a service manager to restart it. The API keeps serving all along
        (reads, and submissions the leader launches); once the lease is ours again (a new epoch),
        fresh daemons start."""
        self._rejoin_due.clear()
        self.steps_down += 1
        self.table.reset()
        if self.retention is not None and self.retention.thread is not None:
            self.retention.thread.join(timeout=5)  # its term ended: at most one batch to finish
        self.retention = self.wakeups = None
        self.instance.fence_epoch = None  # as on a standby started afresh
        self.notify.status("stepped down: standing by")
        log.warning("stepped down: serving the API as a standby and contending for the lease again")
        try:
            self._lead(standby=True)
        except AlreadyRunning:
            if not self._stop.is_set():
                raise  # pragma: no cover - acquire(standby=True) raises only when stopping

    def _record_pids(self) -> None:
        path = layout.daemons_file(self.instance.home)
        last: dict[str, Any] = {}
        while not self._stop.wait(0.5):
            pids = {**self.table.pids(), **{f"code:{k}": v for k, v in self.locations.table.pids().items()}}
            if pids != last:
                layout.write_json_atomic(path, pids)
                last = pids

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            self._signals += 1
            if self._signals > 1:
                log.warning("second signal: stopping at once")
                self.table.kill_all()
                self.locations.table.kill_all()
                self._cleanup_files()
                os._exit(1)
            self._stop.set()

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)

    def wait(self, until: Callable[[], bool] | None = None) -> None:
        """The main loop, until a stop is requested (or ``until()``)."""
        while not self._stop.wait(LOOP_SECONDS):
            self._pass()
            if self._rejoin_due.is_set():
                self._rejoin()
            if until is not None and until():
                break

    def _stand_by(self, seconds: float) -> bool:
        """The main loop while another supervisor leads: ``seconds`` of passes; True if stopping."""
        current = self.lease.standing_by_for if self.lease is not None else None
        holder = current.holder if current is not None else "unknown"
        # Standing by is this process's whole job until it leads: it has started.
        self.notify.ready(f"standing by: {holder} holds the supervisor lease")
        deadline = time.monotonic() + seconds
        while not self._stop.wait(max(0.0, min(LOOP_SECONDS, deadline - time.monotonic()))):
            self._pass()
            if time.monotonic() >= deadline:
                return False
        return True

    def _pass(self) -> None:
        """One pass of the main loop: vouch for the process (health, watchdog) if its parts move."""
        if not self._table_moves():
            return  # no health beat, no watchdog ping: systemd restarts us, liveness fails
        if self.servers is not None:
            self.servers.health.loop_passed()
        self.notify.watchdog()
        if self.notify.enabled and self.leading_since is not None:
            if not self.notify.is_ready and self.table.all_have_heartbeat():
                self.notify.ready()
            self.notify.status(self._status_line())

    def _table_moves(self) -> bool:
        """False if the process table's thread has not stepped for ``LOOP_STALL_SECONDS``."""
        if self.leading_since is None:
            return True  # not started: nothing to check
        last = self.table.last_step_at
        stalled = time.monotonic() - (last if last is not None else self.leading_since) >= LOOP_STALL_SECONDS
        if stalled != self._table_stalled:
            self._table_stalled = stalled
            if stalled:
                log.error(
                    "the process table has not stepped for %.0fs: no longer vouching", LOOP_STALL_SECONDS
                )
            else:
                log.warning("the process table steps again")
        return not stalled

    def _status_line(self) -> str:
        """One line for ``systemctl status``: role and daemon health."""
        epoch = self.instance.fence_epoch
        views = self.table.snapshot()
        if not self.notify.is_ready:
            return f"leading (epoch {epoch}): waiting for the daemons' first heartbeats"
        unhealthy = sorted(v.name for v in views if not v.healthy)
        line = f"leading (epoch {epoch}): {len(views) - len(unhealthy)}/{len(views)} daemons healthy"
        return f"{line}; unhealthy: {', '.join(unhealthy)}" if unhealthy else line

    @property
    def stop_requested_by_signal(self) -> bool:
        return self._signals > 0

    def request_stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._term.set()
        self.notify.stopping("stopping: daemons, code servers, then the API")
        self.leading_since = None
        self.control.leading = False
        if self.wakeups is not None:
            self.wakeups.stop()
        self.control.draining = True
        if self.servers:
            self.servers.set_leading(False)
            self.servers.set_alive(False)
        grace = self.instance.config.daemons.stop_grace_seconds
        self.table.stop_all(timeout=grace + 2)
        self.locations.stop(timeout=grace + 2)
        if self.control.streams is not None:
            self.control.streams.stop()  # ends every stream, so the servers stop at once
        if self.servers:
            self.servers.stop(grace=2)
        if self.metrics is not None:
            self.metrics.stop()
        if self.cancel_runs_on_exit and self.lease is not None and self.lease.holding:
            # Still holding the lease: no standby can have adopted these runs yet.
            canceled = cancel_runs_in_progress(self.instance, "dagctl dev stopped")
            if canceled:
                log.info("canceled %d run(s) in progress", canceled)
        if self.retention is not None and self.retention.thread is not None:
            self.retention.thread.join(timeout=5)  # _term is set: at most one batch to finish
        if self.lease is not None:
            self.lease.release()
        self.instance.close()
        self._cleanup_files()
        if self.servers is not None:
            log.info("supervisor stopped")
        self.notify.close()

    def _cleanup_files(self) -> None:
        from dagd.client.client import read_published

        if self.servers is None:
            return  # we never served: the files (if any) belong to someone else

        published = read_published(self.instance.home)
        if published is not None and published.pid == os.getpid():
            self.instance.supervisor_file.unlink(missing_ok=True)
        layout.daemons_file(self.instance.home).unlink(missing_ok=True)
        self.instance.socket_path.unlink(missing_ok=True)


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def run_supervisor(
    instance: Instance,
    targets: list[CodeLocationTarget],
    *,
    workspace_file: str | None = None,
    standby: bool = False,
    cancel_runs_on_exit: bool = False,
    on_started: Callable[[], None] | None = None,
    notifier: Notifier | None = None,
) -> int:
    supervisor = Supervisor(
        instance,
        targets,
        workspace_file=workspace_file,
        standby=standby,
        cancel_runs_on_exit=cancel_runs_on_exit,
        notifier=notifier,
    )
    supervisor.install_signal_handlers()
    try:
        supervisor.start()
        if on_started:
            on_started()
        supervisor.wait()
    except AlreadyRunning:
        if not (standby and supervisor.stop_requested_by_signal):
            raise
        log.info("stopped while standing by")  # asked to stop: a clean exit, not a refusal
    finally:
        supervisor.shutdown()
    return 0


__all__ = ["AlreadyRunning", "Supervisor", "run_supervisor"]
