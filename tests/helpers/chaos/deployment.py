"""The deployment under test and read-only views of its storage.

The deployment is ``dagctl daemon run`` (as in production: runs outlive a supervisor restart) in
a temporary ``DAGD_HOME``, with the QueuedRunCoordinator under a global cap and all three kinds of
tag limit. On PostgreSQL the instance reaches the database only through a :class:`TcpProxy` the
test controls; the test's own reads (:class:`StorageView`) go to the database directly, so an
outage blinds the deployment and not the referee.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psutil
import sqlalchemy as sa

from dagd.client.client import Client
from dagd.processes import daemon_name
from dagd.storage.schema import instigators, run_attempts, run_events, runs, ticks
from dagd.timefmt import as_utc
from helpers.procs import DagdProcess
from helpers.tcp_proxy import TcpProxy

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fixtures"
DEFS_FILE = FIXTURES / "chaos_defs.py"
DAEMON_NAMES = ("scheduler", "run_queue", "sensor", "run_monitoring")
IN_PROGRESS = ("STARTING", "STARTED", "CANCELING")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


@dataclass(frozen=True)
class TagRule:
    """One ``tag_concurrency_limits`` entry: key=value, key with any value, or each value of key."""

    key: str
    value: str | None
    per_value: bool
    limit: int

    def to_config(self) -> dict[str, Any]:
        value: Any = {"applyLimitPerUniqueValue": True} if self.per_value else self.value
        return {"key": self.key, "limit": self.limit, **({"value": value} if value is not None else {})}

    def describe(self) -> str:
        if self.per_value:
            return f"{self.key}=<each value> <= {self.limit}"
        return f"{self.key}={self.value if self.value is not None else '*'} <= {self.limit}"


@dataclass(frozen=True)
class Limits:
    max_concurrent_runs: int
    rules: tuple[TagRule, ...]


LIMITS = Limits(
    max_concurrent_runs=4,
    rules=(
        TagRule("db", "warehouse", per_value=False, limit=2),
        TagRule("tenant", None, per_value=True, limit=2),
        TagRule("lane", None, per_value=False, limit=1),
    ),
)
SCHEDULES = {  # name -> (cron, timezone), as in tests/fixtures/chaos_defs.py
    "every_minute": ("* * * * *", "UTC"),
    "every_minute_kathmandu": ("* * * * *", "Asia/Kathmandu"),
    "every_minute_st_johns": ("* * * * *", "America/St_Johns"),
}
COUNTER_SENSOR = "counter"


def instance_config(storage_yaml: str, limits: Limits = LIMITS) -> str:
    """``dagd.yaml``: quick restarts, a roomy hang timeout (a loaded CI machine is not a hang), a
    restart budget that a storm of SIGKILLs does not exhaust, and short run-monitoring timeouts so
    a run stranded by a fault is resolved within the test."""
    coordinator = {
        "max_concurrent_runs": limits.max_concurrent_runs,
        "tag_concurrency_limits": [rule.to_config() for rule in limits.rules],
        "dequeue_interval_seconds": 1,
    }
    return f"""{storage_yaml}
run_coordinator:
  module: dagd.run_coordinator
  class: QueuedRunCoordinator
  config: {json.dumps(coordinator)}
run_monitoring:
  enabled: true
  start_timeout_seconds: 15
  cancel_timeout_seconds: 20
  poll_interval_seconds: 1
  worker_heartbeat_timeout_seconds: 5
scheduler:
  max_catchup_runs: 5
  evaluation_timeout_seconds: 20
sensors:
  evaluation_timeout_seconds: 20
daemons:
  heartbeat_interval_seconds: 0.5
  heartbeat_timeout_seconds: 8
  stop_grace_seconds: 2
  restart:
    initial_backoff_seconds: 0.2
    max_backoff_seconds: 2
    budget: 1000
    budget_window_seconds: 60
    cooldown_seconds: 2
"""


class Deployment:
    """One instance: its home, its supervisor process, and (on PostgreSQL) the proxy in front of it."""

    def __init__(
        self,
        tmp_path: pathlib.Path,
        *,
        backend: str,
        observer_url: str,
        storage_yaml: str,
        proxy: TcpProxy | None = None,
    ) -> None:
        self.backend = backend
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.markers = tmp_path / "markers"
        self.markers.mkdir()
        self.proxy = proxy
        self.dagd = DagdProcess(self.home)
        self.dagd.write_config(instance_config(storage_yaml))
        self.env = {"DAGD_CHAOS_MARKERS": str(self.markers)}
        self.view = StorageView(observer_url)

    def start(self) -> None:
        """Start ``dagctl daemon run``; returns at once (see :meth:`answering`)."""
        self.dagd.start("-f", str(DEFS_FILE), command=("daemon", "run"), wait_healthy=False, env=self.env)

    @property
    def supervisor_pid(self) -> int | None:
        proc = self.dagd.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def supervisor_exited(self) -> bool:
        return self.dagd.proc is not None and self.dagd.proc.poll() is not None

    def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """``daemons status`` over the API, as ``dagctl`` asks it."""
        with Client.for_home(self.home) as client:
            client.timeout = timeout
            return client.daemon_status()

    def answering(self, timeout: float = 1.0) -> bool:
        try:
            self.status(timeout)
            return True
        except Exception:
            return False

    def daemon_pids(self) -> dict[str, int]:
        """The current supervisor's daemon processes, from the process tree (no API needed)."""
        pid = self.supervisor_pid
        found: dict[str, int] = {}
        if pid is None:
            return found
        try:
            children = psutil.Process(pid).children()
        except psutil.NoSuchProcess:
            return found
        for child in children:
            try:
                cmd = child.cmdline()
            except psutil.Error:
                continue
            name = daemon_name(cmd)  # from its title, dagd: <name>, or its command line before that
            if name in DAEMON_NAMES:
                found[name] = child.pid
        return found

    def stop(self) -> int | None:
        """SIGTERM the supervisor and wait; its exit code (None if it was not running)."""
        if self.dagd.proc is None or self.dagd.proc.poll() is not None:
            return None
        self.dagd.signal(signal.SIGTERM)
        return self.dagd.wait_exit(60)

    def close(self) -> None:
        self.dagd.stop()
        self.view.dispose()

    def markers_by_run(self) -> dict[str, list[int]]:
        """Which processes executed each run's code (``<run_id>.<pid>`` marker files)."""
        out: dict[str, list[int]] = {}
        for path in self.markers.iterdir():
            run_id, _, pid = path.name.rpartition(".")
            out.setdefault(run_id, []).append(int(pid))
        return out


# -- reading storage directly ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    run_id: str
    status: str
    tags: dict[str, str]
    worker_pid: int | None
    worker_started_at: float | None


@dataclass(frozen=True)
class StatusEvent:
    id: int
    run_id: str
    at: datetime
    status: str
    message: str


@dataclass(frozen=True)
class TickRow:
    id: int
    name: str
    scheduled_time: datetime | None
    status: str
    run_ids: list[str]
    error: str | None


def _run_row(row: Any) -> RunRow:
    return RunRow(row.run_id, row.status, json.loads(row.tags), row.worker_pid, row.worker_started_at)


class StorageView:
    """The referee's read-only window on the instance's storage (never through the proxy)."""

    def __init__(self, url: str) -> None:
        args: dict[str, Any] = {"timeout": 30} if url.startswith("sqlite") else {"connect_timeout": 5}
        self.engine = sa.create_engine(url, connect_args=args, pool_pre_ping=True)

    def dispose(self) -> None:
        self.engine.dispose()

    def _rows(self, query: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def runs(self, statuses: Sequence[str] = ()) -> list[RunRow]:
        query = sa.select(
            runs.c.run_id, runs.c.status, runs.c.tags, runs.c.worker_pid, runs.c.worker_started_at
        )
        if statuses:
            query = query.where(runs.c.status.in_(list(statuses)))
        return [_run_row(row) for row in self._rows(query)]

    def attempt_pids(self) -> set[int]:
        """Where the launcher started, or a worker claimed, an attempt not ended yet."""
        query = sa.select(run_attempts.c.pid).where(
            run_attempts.c.state.in_(["DISPATCHED", "CLAIMED"]), run_attempts.c.pid.is_not(None)
        )
        return {row.pid for row in self._rows(query)}

    def existing(self, run_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """run_id -> tags, for those of ``run_ids`` that exist."""
        wanted = list(run_ids)
        out: dict[str, dict[str, str]] = {}
        for chunk in _chunks(wanted, 500):
            query = sa.select(runs.c.run_id, runs.c.tags).where(runs.c.run_id.in_(chunk))
            out.update((row.run_id, json.loads(row.tags)) for row in self._rows(query))
        return out

    def status_events(self) -> list[StatusEvent]:
        query = (
            sa.select(
                run_events.c.id,
                run_events.c.run_id,
                run_events.c.at,
                run_events.c.status,
                run_events.c.message,
            )
            .where(run_events.c.kind == "status")
            .order_by(run_events.c.id)
        )
        return [
            StatusEvent(row.id, row.run_id, as_utc(row.at), row.status, row.message)  # type: ignore[arg-type]
            for row in self._rows(query)
        ]

    def schedule_ticks(self) -> list[TickRow]:
        query = sa.select(ticks).where(ticks.c.kind == "schedule").order_by(ticks.c.id)
        return [
            TickRow(
                row.id, row.name, as_utc(row.scheduled_time), row.status, json.loads(row.run_ids), row.error
            )
            for row in self._rows(query)
        ]

    def instigator_states(self) -> dict[tuple[str, str], tuple[datetime, str | None]]:
        """(kind, name) -> (status_changed_at, cursor)."""
        rows = self._rows(sa.select(instigators))
        return {(r.kind, r.name): (as_utc(r.status_changed_at), r.cursor) for r in rows}  # type: ignore[misc]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def same_process(pid: int, started_at: float | None) -> bool:
    """``pid`` is alive and is the process that started at ``started_at`` (pids are reused)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or abs(proc.create_time() - started_at) < 0.05
    except psutil.NoSuchProcess:
        return False


def send(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
