"""The control plane's operations in domain terms: submit, inspect, terminate, read logs.

The gRPC servicer is a thin translation of this class; tests and the web UI's server side can
reason about behaviour here without protobuf. Every request field is validated here, so bad input
becomes an :class:`InvalidArgument` naming the field before anything is written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from dagd.errors import DagdError, InvalidArgument, NotFound, StorageUnavailable, Unavailable, at_index
from dagd.instance.instance import Instance
from dagd.runs.attempts import Attempt
from dagd.runs.cancel import request_cancel
from dagd.runs.model import IN_PROGRESS_STATUSES, LogLine, Run, RunEvent, RunFilter, RunStatus
from dagd.runs.plugins import Submission
from dagd.runs.queue import (
    Explanation,
    QueueStatus,
    explain,
    queue_config,
    queue_status,
    set_paused,
)
from dagd.runs.requests import build_submission
from dagd.storage.daemons import Heartbeat
from dagd.storage.leases import SUPERVISOR_LEASE, Lease
from dagd.strictjson import loads_object
from dagd.supervisor.code_locations import CodeLocations
from dagd.supervisor.instigators import Instigators
from dagd.supervisor.lease import LeaseKeeper
from dagd.supervisor.process_table import DaemonView, ProcessTable
from dagd.supervisor.streams import StreamHub
from dagd.supervisor.wakeups import notify_leader

MAX_TAGS = 100
MAX_TAG_KEY = 255
MAX_TAG_VALUE = 4096
MAX_NAME = 255
MAX_RUN_CONFIG_BYTES = 1 << 20
MAX_LIST_LIMIT = 1000
# Runs in one SubmitRuns call (the message size limit, grpc.max_message_bytes, applies too).
MAX_BATCH = 100_000
# `daemons status` answers within a second even when the database hangs (SPEC: status answers
# throughout an outage); the process table, not storage, is what health is judged on.
HEARTBEAT_READ_SECONDS = 0.25
# runs.seq (page tokens) and run_logs.id are 32-bit integers on PostgreSQL: a larger bound
# parameter is a database error, not an empty answer.
MAX_SEQ = 2**31 - 1


@dataclass(frozen=True)
class SubmitRequest:
    job_name: str
    tags: Mapping[str, str]
    run_config_json: str = ""
    priority: int | None = None
    idempotency_key: str = ""


def validate_tags(tags: Mapping[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"too many tags: {len(tags)} (at most {MAX_TAGS})")
    for key, value in tags.items():
        if not key or not key.strip():
            raise InvalidArgument("tag key must not be empty")
        if len(key) > MAX_TAG_KEY:
            raise InvalidArgument(f"tag key {key[:40]!r}... is longer than {MAX_TAG_KEY} characters")
        if len(value) > MAX_TAG_VALUE:
            raise InvalidArgument(f"tag {key!r}: value is longer than {MAX_TAG_VALUE} characters")
    return dict(tags)


def parse_run_config(raw: str) -> dict[str, Any]:
    if not raw:
        return {}
    if len(raw) > MAX_RUN_CONFIG_BYTES:
        raise InvalidArgument(f"run config is larger than {MAX_RUN_CONFIG_BYTES} bytes")
    return loads_object(raw, "run config")


class ControlPlane:
    def __init__(self, instance: Instance, locations: CodeLocations) -> None:
        self.instance = instance
        self.locations = locations
        self.instigators = Instigators(instance, locations)
        self.instigators.on_change = self._wake_instigator_daemon
        self.draining = False
        self.daemons: ProcessTable | None = None  # set by the supervisor; None in tests without daemons
        self.streams: StreamHub | None = None  # the shared change reader; set by the supervisor
        # Several supervisors (SPEC 9.2): every one serves the API; only the leader runs daemons.
        self.leading = False
        self.lease: LeaseKeeper | None = None
        self._beats_read: Future[dict[str, Heartbeat]] | None = None
        self._beats_last: dict[str, Heartbeat] = {}
        self._beats_last_at = 0.0  # monotonic, when _beats_last was read
        self._beats_lock = threading.Lock()

    @property
    def runs(self):  # noqa: ANN201 - RunStore, imported lazily with storage
        return self.instance.storage.runs

    @property
    def role(self) -> str:
        return "leader" if self.leading else "standby"

    def _wake(self, daemon: str) -> None:
        """Wake a daemon now rather than at its next poll: ours if we lead, else the leader's
        (PostgreSQL NOTIFY; :mod:`dagd.supervisor.wakeups`)."""
        if self.leading:
            if self.daemons is not None:
                self.daemons.wake(daemon)
        elif self.lease is not None:  # a supervisor's standby, not a test without one
            notify_leader(self.instance.storage, daemon)

    def _check_open(self) -> None:
        if self.draining:
            raise Unavailable("the supervisor is shutting down and accepts no new submissions")

    # -- submit --------------------------------------------------------------------------------

    def submit(self, request: SubmitRequest, metadata: Mapping[str, str]) -> Run:
        self._check_open()
        run = self.instance.coordinator.submit_run(self._submission(request), metadata)
        if run.status == RunStatus.QUEUED:
            self._wake("run_queue")
        return run

    def submit_many(self, requests: Sequence[SubmitRequest], metadata: Mapping[str, str]) -> list[Run]:
        """A batch (SubmitRuns): every entry validated as :meth:`submit` would, the first bad one
        named (``runs[N]: ...``, with its index on the error), then all stored or none."""
        self._check_open()
        if not requests:
            raise InvalidArgument("runs: at least one run is required")
        if len(requests) > MAX_BATCH:
            raise InvalidArgument(f"runs: {len(requests)} runs in one call (at most {MAX_BATCH})")
        submissions = []
        jobs: dict[str, Any] = {}  # one code-location lookup per job of the batch
        for index, request in enumerate(requests):
            try:
                submissions.append(self._submission(request, jobs))
            except DagdError as exc:
                raise at_index(exc, index) from None
        runs = self.instance.coordinator.submit_batch(submissions, metadata)
        if any(run.status == RunStatus.QUEUED for run in runs):
            self._wake("run_queue")
        return runs

    def _submission(self, request: SubmitRequest, jobs: dict[str, Any] | None = None) -> Submission:
        """The request validated into a Submission (InvalidArgument/NotFound naming the problem).
        ``jobs``: a batch's cache of find_job answers."""
        if not request.job_name:
            raise InvalidArgument("job name is required")
        if len(request.job_name) > MAX_NAME:
            raise InvalidArgument(f"job name is longer than {MAX_NAME} characters")
        if len(request.idempotency_key) > MAX_NAME:
            raise InvalidArgument(f"idempotency key is longer than {MAX_NAME} characters")
        request_tags = validate_tags(request.tags)
        run_config = parse_run_config(request.run_config_json)
        if jobs is None:
            found = self.locations.find_job(request.job_name)
        elif request.job_name in jobs:
            found = jobs[request.job_name]
        else:
            found = jobs[request.job_name] = self.locations.find_job(request.job_name)
        if found is None:
            known = ", ".join(self.locations.job_names()) or "none"
            raise NotFound(f"no job named {request.job_name!r} (known jobs: {known})")
        target, job = found
        return build_submission(
            job_name=job.name,
            job_tags=job.tags,
            request_tags=request_tags,
            resumable=job.resumable,
            run_config=run_config,
            code_location=target.to_json(),
            idempotency_key=request.idempotency_key or None,
            priority=request.priority,
        )

    # -- daemons -------------------------------------------------------------------------------

    def _wake_instigator_daemon(self, kind: str) -> None:
        self._wake("scheduler" if kind == "schedule" else "sensor")

    def daemon_status(self) -> list[tuple[DaemonView, Heartbeat | None]]:
        """The leader: its process table, with each daemon's heartbeat row. A standby: the
        leader's daemons judged from their heartbeat rows, aged by the database's clock."""
        if self.daemons is None:
            return []
        try:
            beats = self._heartbeats()
        except StorageUnavailable:
            beats = {}  # status must answer during a database outage; the pipe still knows
        if not self.leading:
            return [
                (self._remote_view(name, beats.get(name)), beats.get(name)) for name in self.daemons.procs
            ]
        return [(view, beats.get(view.name)) for view in self.daemons.snapshot()]

    def _remote_view(self, name: str, beat: Heartbeat | None) -> DaemonView:
        """Another supervisor's daemon as its heartbeat row shows it: healthy while the row is
        younger than the heartbeat timeout, by the database's clock (whatever the hosts' clocks)."""
        assert self.daemons is not None
        timeout = self.daemons.policy.heartbeat_timeout_seconds
        holder = (
            self.lease.standing_by_for.holder if self.lease and self.lease.standing_by_for else "the leader"
        )
        age = beat.age_seconds if beat is not None else None
        healthy = age is not None and age < timeout
        if beat is None or age is None:
            detail = f"no heartbeat stored (led by {holder})"
        else:
            detail = f"on {holder}: last heartbeat {age:.1f}s ago" + (
                "" if healthy else f" (timeout {timeout:g}s)"
            )
        return DaemonView(
            name=name,
            state="REMOTE",
            healthy=healthy,
            detail=detail,
            pid=beat.pid if beat else None,
            incarnation=beat.incarnation if beat else 0,
            uptime_seconds=0.0,
            restarts=0,
            restarts_by_reason={},
            last_exit=None,
            degraded=False,
            last_progress_age=age,
        )

    def _heartbeats(self) -> dict[str, Heartbeat]:
        """The heartbeat rows; the last ones read if storage does not answer within HEARTBEAT_READ_SECONDS.

        A database that hangs instead of refusing (frozen, partitioned) would otherwise hold every
        status call for as long as it hangs. One read at a time: while it hangs, status calls
        share it rather than piling up threads blocked on the database.
        """
        with self._beats_lock:
            if self._beats_read is None or self._beats_read.done():
                future: Future[dict[str, Heartbeat]] = Future()

                def read() -> None:
                    try:
                        future.set_result(self.instance.storage.daemons.all())
                    except BaseException as exc:
                        future.set_exception(exc)

                # A daemon thread, not an executor: a read stuck on a dead socket must not hold up exit.
                threading.Thread(target=read, name="read-heartbeats", daemon=True).start()
                self._beats_read = future
            pending = self._beats_read
        try:
            beats = pending.result(timeout=HEARTBEAT_READ_SECONDS)
        except FutureTimeout:
            # Each carries the age it had when read: add the time since, so stale shows as stale.
            since = time.monotonic() - self._beats_last_at
            return {name: beat.aged(since) for name, beat in self._beats_last.items()}
        self._beats_last, self._beats_last_at = beats, time.monotonic()
        return beats

    def current_lease(self) -> Lease | None:
        """The supervisor lease as the database has it now, or None if it does not answer within
        HEARTBEAT_READ_SECONDS (instance info must answer during an outage too)."""
        future: Future[Lease | None] = Future()

        def read() -> None:
            try:
                future.set_result(self.instance.storage.leases.get(SUPERVISOR_LEASE))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=read, name="read-lease", daemon=True).start()
        try:
            return future.result(timeout=HEARTBEAT_READ_SECONDS)
        except (FutureTimeout, StorageUnavailable):
            return None

    def restart_daemon(self, name: str) -> tuple[DaemonView, Heartbeat | None]:
        if not self.leading and self.lease is not None:
            holder = self.lease.standing_by_for.holder if self.lease.standing_by_for else "another supervisor"
            raise Unavailable(f"this supervisor stands by: restart daemons through the leader ({holder})")
        if self.daemons is None or name not in self.daemons.procs:
            known = ", ".join(self.daemons.procs) if self.daemons else "none"
            raise NotFound(f"no daemon named {name!r} (running daemons: {known})")
        self.daemons.restart(name)
        return next(item for item in self.daemon_status() if item[0].name == name)

    # -- read ----------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> tuple[Run, list[RunEvent], list[Attempt]]:
        run = self.runs.require(run_id)
        return run, self.runs.events(run_id), self.instance.storage.attempts.of_run(run_id)

    def list_runs(self, flt: RunFilter) -> list[Run]:
        if flt.before_seq is not None and not 0 <= flt.before_seq <= MAX_SEQ:
            raise InvalidArgument(f"invalid page token {str(flt.before_seq)[:40]!r}")
        if flt.limit <= 0:
            flt.limit = 100
        flt.limit = min(flt.limit, MAX_LIST_LIMIT)
        validate_tags(flt.tags)
        return self.runs.list(flt)

    def require_streams(self) -> StreamHub:
        if self.streams is None or self.streams.stopping:
            raise Unavailable("streams are not served now (the supervisor is starting or stopping)")
        return self.streams

    def read_logs(self, run_id: str, after_seq: int, limit: int) -> tuple[list[LogLine], RunStatus]:
        run = self.runs.require(run_id)
        limit = 1000 if limit <= 0 else min(limit, 10_000)
        after_seq = min(max(after_seq, 0), MAX_SEQ)
        return self.runs.read_logs(run_id, after_seq=after_seq, limit=limit), run.status

    # -- terminate -----------------------------------------------------------------------------

    def terminate(self, run_id: str) -> tuple[Run, bool]:
        """Cancel a run: queued or unclaimed ones at once, running ones through CANCELING and
        their launcher (:mod:`dagd.runs.cancel`)."""
        return request_cancel(self.instance, run_id)

    def terminate_runs(self, flt: RunFilter) -> tuple[list[str], list[str]]:
        """Bulk cancel: queued runs in one transaction, running ones each through CANCELING."""
        if not flt.statuses:
            raise InvalidArgument("bulk terminate needs at least one --status")
        validate_tags(flt.tags)
        matches = self.runs.ids_matching(flt)
        canceled: list[str] = []
        for status in (RunStatus.QUEUED, RunStatus.NOT_STARTED):
            ids = [run_id for run_id, s in matches if s == status]
            if ids:
                canceled += self.runs.bulk_transition(ids, status, RunStatus.CANCELED, "terminated (bulk)")
        canceling = []
        for run_id, status in matches:
            if status in IN_PROGRESS_STATUSES:
                run, changed = self.terminate(run_id)
                if changed or run.status == RunStatus.CANCELING:
                    canceling.append(run_id)
        return canceled, canceling

    # -- queue ---------------------------------------------------------------------------------

    def _queue_daemon_healthy(self) -> bool:
        if self.daemons is None:
            return False
        # A standby judges the leader's run_queue by its heartbeat row (daemon_status).
        views = self.daemons.snapshot() if self.leading else [view for view, _ in self.daemon_status()]
        return any(v.name == "run_queue" and v.healthy for v in views)

    def explain_run(self, run_id: str) -> Explanation:
        return explain(self.instance, run_id, daemon_healthy=self._queue_daemon_healthy())

    def queue_status(self) -> tuple[QueueStatus, bool]:
        return queue_status(self.instance.storage, queue_config(self.instance)), self._queue_daemon_healthy()

    def set_queue_paused(self, paused: bool) -> tuple[QueueStatus, bool]:
        set_paused(self.instance.storage, paused)
        if not paused:
            self._wake("run_queue")
        return self.queue_status()
