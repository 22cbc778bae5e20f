"""gRPC servicers of ``dagd.api.v1``: protobuf in, domain calls, protobuf out.

This is the one server-side place where dagd errors become gRPC status codes. Unexpected
exceptions are logged with their traceback here and answered INTERNAL with one line, so no
traceback ever crosses the wire.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import grpc
from google.protobuf import struct_pb2

from dagd import __version__
from dagd.api.v1 import dagd_pb2 as pb
from dagd.api.v1 import dagd_pb2_grpc as pb_grpc
from dagd.errors import (
    ERROR_METADATA_KEY,
    RUN_INDEX_METADATA_KEY,
    Conflict,
    DagdError,
    DefinitionError,
    FellBehind,
    InvalidArgument,
    InvalidTransition,
    NotFound,
    SchemaOutOfDate,
    StorageUnavailable,
    TooManyStreams,
    Unauthenticated,
    Unavailable,
    at_index,
)
from dagd.runs.attempts import Attempt
from dagd.runs.model import Run, RunEvent, RunFilter, RunStatus
from dagd.runs.queue import QueueStatus
from dagd.storage.changes import RunChange
from dagd.storage.daemons import Heartbeat
from dagd.storage.instigators import Tick
from dagd.supervisor.control import ControlPlane, SubmitRequest
from dagd.supervisor.instigators import Instigators, InstigatorView
from dagd.supervisor.process_table import DaemonView
from dagd.supervisor.streams import Subscription, follow_logs, watch_daemons, watch_runs
from dagd.timefmt import rfc3339

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[DagdError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidTransition: grpc.StatusCode.FAILED_PRECONDITION,
    DefinitionError: grpc.StatusCode.FAILED_PRECONDITION,
    SchemaOutOfDate: grpc.StatusCode.FAILED_PRECONDITION,
    Conflict: grpc.StatusCode.ABORTED,
    FellBehind: grpc.StatusCode.ABORTED,
    TooManyStreams: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}

F = TypeVar("F", bound=Callable[..., Any])


def _one_line(text: str) -> str:
    return " ".join(text.split())[:1000]


def translate_errors(method: F) -> F:
    if inspect.isgeneratorfunction(method):
        return _translate_stream_errors(method)

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except DagdError as exc:
            code = next((c for t, c in STATUS_CODES.items() if isinstance(exc, t)), grpc.StatusCode.INTERNAL)
            trailing = [(ERROR_METADATA_KEY, type(exc).__name__)]
            if exc.run_index is not None:
                trailing.append((RUN_INDEX_METADATA_KEY, str(exc.run_index)))
            context.set_trailing_metadata(tuple(trailing))
            context.abort(code, _one_line(str(exc)))
        except Exception as exc:  # a bug: log it fully here, answer one line there
            log.exception("unexpected error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    return wrapper  # type: ignore[return-value]


def _translate_stream_errors(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            yield from method(self, request, context)
        except DagdError as exc:
            code = next((c for t, c in STATUS_CODES.items() if isinstance(exc, t)), grpc.StatusCode.INTERNAL)
            context.set_trailing_metadata(((ERROR_METADATA_KEY, type(exc).__name__),))
            context.abort(code, _one_line(str(exc)))
        except Exception as exc:
            if not context.is_active():
                return  # the client went away mid-send
            log.exception("unexpected error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    return wrapper  # type: ignore[return-value]


def _ts(value: Any) -> str:
    return rfc3339(value) or ""


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """A JSON object as google.protobuf.Struct (numbers become doubles, as Struct has no ints)."""
    out = struct_pb2.Struct()
    if value:
        out.update(value)
    return out


def run_to_pb(run: Run) -> pb.Run:
    return pb.Run(
        run_id=run.run_id,
        job_name=run.job_name,
        status=pb.RunStatus.Value(run.status.value),
        tags=run.tags,
        priority=run.priority,
        created_at=_ts(run.created_at),
        started_at=_ts(run.started_at),
        ended_at=_ts(run.ended_at),
        run_config_json=json.dumps(run.run_config),
        run_config=_struct(run.run_config),
        error=run.error or "",
        worker_pid=run.worker_pid or 0,
        code_location=run.code_location or "",
        attempt=run.attempt,
        host=run.host or "",
    )


def attempt_to_pb(attempt: Attempt) -> pb.RunAttempt:
    return pb.RunAttempt(
        attempt=attempt.attempt,
        state=attempt.state.value,
        host=attempt.host or "",
        pid=attempt.pid or 0,
        worker=attempt.worker or "",
        queue=attempt.queue or "",
        dispatched_at=_ts(attempt.dispatched_at),
        claimed_at=_ts(attempt.claimed_at),
        heartbeat_at=_ts(attempt.heartbeat_at),
        ended_at=_ts(attempt.ended_at),
        end_reason=attempt.end_reason or "",
    )


def event_to_pb(event: RunEvent) -> pb.RunEvent:
    return pb.RunEvent(
        at=_ts(event.at),
        kind=event.kind,
        status=pb.RunStatus.Value(event.status.value) if event.status else pb.RUN_STATUS_UNSPECIFIED,
        message=event.message,
    )


def status_from_pb(value: int) -> RunStatus:
    if value == pb.RUN_STATUS_UNSPECIFIED or value not in pb.RunStatus.values():
        raise InvalidArgument(f"unknown run status {value}")
    return RunStatus(pb.RunStatus.Name(value))


def _whole_numbers(value: Any) -> Any:
    """A Struct's JSON value with whole doubles as integers (Struct has no integer type)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def submit_request_from_pb(request: pb.SubmitRunRequest) -> SubmitRequest:
    run_config_json = request.run_config_json
    if request.HasField("run_config"):
        if run_config_json:
            raise InvalidArgument("give run_config or run_config_json, not both")
        from google.protobuf import json_format

        run_config_json = json.dumps(_whole_numbers(json_format.MessageToDict(request.run_config)))
    return SubmitRequest(
        job_name=request.job_name,
        tags=dict(request.tags),
        run_config_json=run_config_json,
        priority=request.priority if request.HasField("priority") else None,
        idempotency_key=request.idempotency_key,
    )


def request_metadata(context: grpc.ServicerContext) -> dict[str, str]:
    """Call metadata for coordinator hooks, minus credentials and binary headers."""
    out: dict[str, str] = {}
    for item in context.invocation_metadata() or ():
        key, value = item.key.lower(), item.value
        if key == "authorization" or key.endswith("-bin") or not isinstance(value, str):
            continue
        out[key] = value
    return out


class RunServicer(pb_grpc.RunServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    @translate_errors
    def SubmitRun(self, request: pb.SubmitRunRequest, context: grpc.ServicerContext) -> pb.Run:
        run = self.control.submit(submit_request_from_pb(request), request_metadata(context))
        return run_to_pb(run)

    @translate_errors
    def SubmitRuns(
        self, request: pb.SubmitRunsRequest, context: grpc.ServicerContext
    ) -> pb.SubmitRunsResponse:
        requests = []
        for index, entry in enumerate(request.runs):
            try:
                requests.append(submit_request_from_pb(entry))
            except DagdError as exc:
                raise at_index(exc, index) from None
        runs = self.control.submit_many(requests, request_metadata(context))
        return pb.SubmitRunsResponse(
            runs=[] if request.run_ids_only else [run_to_pb(r) for r in runs],
            run_ids=[r.run_id for r in runs],
        )

    @translate_errors
    def GetRun(self, request: pb.GetRunRequest, context: grpc.ServicerContext) -> pb.GetRunResponse:
        run, events, attempts = self.control.get_run(request.run_id)
        return pb.GetRunResponse(
            run=run_to_pb(run),
            events=[event_to_pb(e) for e in events],
            attempts=[attempt_to_pb(a) for a in attempts],
        )

    @translate_errors
    def ListRuns(self, request: pb.ListRunsRequest, context: grpc.ServicerContext) -> pb.ListRunsResponse:
        before = None
        if request.page_token:
            try:
                before = int(request.page_token)
            except ValueError:
                raise InvalidArgument(f"invalid page token {request.page_token[:40]!r}") from None
        flt = RunFilter(
            statuses=[status_from_pb(s) for s in request.statuses],
            job_name=request.job_name or None,
            tags=dict(request.tags),
            limit=request.limit,
            before_seq=before,
        )
        runs = self.control.list_runs(flt)
        token = str(runs[-1].seq) if runs and len(runs) == flt.limit else ""
        return pb.ListRunsResponse(runs=[run_to_pb(r) for r in runs], next_page_token=token)

    @translate_errors
    def TerminateRun(
        self, request: pb.TerminateRunRequest, context: grpc.ServicerContext
    ) -> pb.TerminateRunResponse:
        run, changed = self.control.terminate(request.run_id)
        return pb.TerminateRunResponse(run=run_to_pb(run), changed=changed)

    @translate_errors
    def TerminateRuns(
        self, request: pb.TerminateRunsRequest, context: grpc.ServicerContext
    ) -> pb.TerminateRunsResponse:
        flt = RunFilter(
            statuses=[status_from_pb(s) for s in request.statuses],
            job_name=request.job_name or None,
            tags=dict(request.tags),
        )
        canceled, canceling = self.control.terminate_runs(flt)
        return pb.TerminateRunsResponse(canceled_run_ids=canceled, canceling_run_ids=canceling)

    @translate_errors
    def ResolveRunId(
        self, request: pb.ResolveRunIdRequest, context: grpc.ServicerContext
    ) -> pb.ResolveRunIdResponse:
        from dagd.storage.run_ids import resolve_run_id

        return pb.ResolveRunIdResponse(
            run_id=resolve_run_id(self.control.instance.storage, request.run_id_or_prefix)
        )

    @translate_errors
    def ExplainRun(self, request: pb.ExplainRunRequest, context: grpc.ServicerContext) -> pb.RunExplanation:
        e = self.control.explain_run(request.run_id)
        return pb.RunExplanation(
            run_id=e.run_id,
            status=pb.RunStatus.Value(e.status.value),
            summary=e.summary,
            reasons=list(e.reasons),
            holders=list(e.holders),
            position=e.position,
            queue_paused=e.paused,
            queue_daemon_healthy=e.daemon_healthy,
            run_coordinator=e.coordinator,
            launchable=e.launchable,
        )

    @translate_errors
    def ReadRunLogs(
        self, request: pb.ReadRunLogsRequest, context: grpc.ServicerContext
    ) -> pb.ReadRunLogsResponse:
        lines, status = self.control.read_logs(request.run_id, request.after_seq, request.limit)
        return pb.ReadRunLogsResponse(
            lines=[
                pb.LogLine(seq=ln.seq, at=_ts(ln.at), stream=ln.stream, level=ln.level, message=ln.message)
                for ln in lines
            ],
            last_seq=lines[-1].seq if lines else request.after_seq,
            run_status=pb.RunStatus.Value(status.value),
        )

    # Streams (issue #20, dagd/supervisor/streams.py). translate_errors covers the generators
    # too: an error raised while streaming ends the stream with its status code.

    @translate_errors
    def WatchRuns(self, request: pb.WatchRunsRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        from dagd.runs.cursor import Cursor

        hub = self.control.require_streams()
        start = Cursor.decode(request.cursor) if request.cursor else None
        statuses = {status_from_pb(s) for s in request.statuses}
        job, tags, run_ids = request.job_name, dict(request.tags), set(request.run_ids)

        def matches(change: RunChange) -> bool:
            if statuses and change.status not in statuses:
                return False
            if run_ids and change.run_id not in run_ids:
                return False
            if job and (change.run is None or change.run.job_name != job):
                return False
            return not tags or (
                change.run is not None and all(change.run.tags.get(k) == v for k, v in tags.items())
            )

        for cursor, change in watch_runs(
            hub, start, from_beginning=request.from_beginning, matches=matches,
            is_active=context.is_active, on_open=lambda sub: _tie(sub, context), job=job or None,
        ):  # fmt: skip
            yield pb.WatchRunsResponse(
                cursor=cursor.encode(), change=change_to_pb(change) if change else None
            )

    @translate_errors
    def FollowRunLogs(self, request: pb.FollowRunLogsRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        hub = self.control.require_streams()
        self.control.runs.require(request.run_id)  # NOT_FOUND before the first message
        for lines, status in follow_logs(
            hub, self.control.runs, request.run_id, max(request.after_seq, 0), context.is_active,
            on_open=lambda sub: _tie(sub, context),
        ):  # fmt: skip
            yield pb.FollowRunLogsResponse(
                lines=[
                    pb.LogLine(
                        seq=ln.seq, at=_ts(ln.at), stream=ln.stream, level=ln.level, message=ln.message
                    )
                    for ln in lines
                ],
                run_status=pb.RunStatus.Value(status.value),
            )

    # Deleting finished runs (dagd/storage/retention.py): straight to storage, nothing else to ask.

    @translate_errors
    def DeleteRuns(
        self, request: pb.DeleteRunsRequest, context: grpc.ServicerContext
    ) -> pb.DeleteRunsResponse:
        from dagd.storage.retention import delete_runs

        deleted = delete_runs(self.control.instance.storage, list(request.run_ids))
        return pb.DeleteRunsResponse(deleted_run_ids=deleted)

    @translate_errors
    def PurgeRuns(self, request: pb.PurgeRunsRequest, context: grpc.ServicerContext) -> pb.PurgeRunsResponse:
        from datetime import timedelta

        from dagd.storage.retention import finished_statuses, purge_runs
        from dagd.timefmt import utcnow

        days = request.older_than_days
        if not 0 <= days <= 36_500:  # NaN fails both
            raise InvalidArgument(f"--older-than must be a number of days between 0 and 36500, got {days:g}")
        statuses = finished_statuses(status_from_pb(s) for s in request.statuses)
        # At most 10,000 runs per call (seconds of work, well inside a client's deadline).
        limit = request.limit if 0 < request.limit <= 10_000 else 10_000
        deleted = 0
        for count in purge_runs(
            self.control.instance.storage,
            utcnow() - timedelta(days=days),
            statuses,
            batch_size=min(500, limit),
        ):
            deleted += count
            if deleted >= limit:
                return pb.PurgeRunsResponse(deleted=deleted, more=True)
        return pb.PurgeRunsResponse(deleted=deleted, more=False)


def change_to_pb(change: RunChange) -> pb.RunChange:
    return pb.RunChange(
        status=pb.RunStatus.Value(change.status.value) if change.status else pb.RUN_STATUS_UNSPECIFIED,
        at=_ts(change.at),
        message=change.message,
        run=run_to_pb(change.run) if change.run is not None else None,
        run_id=change.run_id,
        event_id=change.event_id,
    )


def _tie(sub: Subscription, context: grpc.ServicerContext) -> None:
    """A stream's inbox closes when its call ends, and a handler stuck sending to a reader that
    fell behind is cancelled (the hub decides when)."""
    context.add_callback(sub.close)
    sub.on_stuck = context.cancel


def daemon_to_pb(view: DaemonView, beat: Heartbeat | None) -> pb.DaemonStatus:
    return pb.DaemonStatus(
        name=view.name,
        healthy=view.healthy,
        state=view.state,
        detail=view.detail,
        pid=view.pid or 0,
        incarnation=view.incarnation,
        uptime_seconds=view.uptime_seconds,
        last_heartbeat_at=_ts(beat.heartbeat_at) if beat else "",
        iteration=beat.iteration if beat else 0,
        phase=beat.phase if beat else "",
        restarts=view.restarts,
        restarts_by_reason=view.restarts_by_reason,
        last_exit=view.last_exit or "",
        last_exit_reason=view.last_exit_reason or "",
        last_errors=[f"{e.get('at')}: {e.get('message')}" for e in beat.errors] if beat else [],
        degraded=view.degraded,
        info_json=json.dumps(beat.info) if beat else "{}",
        info=_struct(beat.info) if beat else None,
        heartbeat_age_seconds=beat.age_seconds if beat else None,
    )


class DaemonServicer(pb_grpc.DaemonServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    @translate_errors
    def GetDaemonStatus(
        self, request: pb.GetDaemonStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetDaemonStatusResponse:
        return pb.GetDaemonStatusResponse(
            daemons=[daemon_to_pb(view, beat) for view, beat in self.control.daemon_status()],
            draining=self.control.draining,
            role=self.control.role,
        )

    @translate_errors
    def RestartDaemon(
        self, request: pb.RestartDaemonRequest, context: grpc.ServicerContext
    ) -> pb.RestartDaemonResponse:
        view, beat = self.control.restart_daemon(request.name)
        return pb.RestartDaemonResponse(daemon=daemon_to_pb(view, beat))

    @translate_errors
    def WatchDaemons(self, request: pb.WatchDaemonsRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        hub = self.control.require_streams()
        for view, beat in watch_daemons(
            hub, self.control.daemon_status, context.is_active, on_open=lambda sub: _tie(sub, context)
        ):
            yield pb.WatchDaemonsResponse(daemon=daemon_to_pb(view, beat), role=self.control.role)


def queue_status_to_pb(status: QueueStatus, daemon_healthy: bool, coordinator: str) -> pb.QueueStatus:
    return pb.QueueStatus(
        paused=status.paused,
        queued=status.queued,
        in_progress=status.in_progress,
        max_concurrent_runs=status.max_concurrent_runs,
        tag_limits=[
            pb.TagLimitUsage(
                limit=u.limit,
                in_use=u.in_use,
                capacity=u.capacity,
                key=u.key,
                value=u.value or "",
                per_unique_value=u.per_unique_value,
            )
            for u in status.tag_limits
        ],
        queue_daemon_healthy=daemon_healthy,
        run_coordinator=coordinator,
    )


class QueueServicer(pb_grpc.QueueServiceServicer):
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def _coordinator(self) -> str:
        return type(self.control.instance.coordinator).__name__

    @translate_errors
    def GetQueueStatus(self, request: pb.QueueStatusRequest, context: grpc.ServicerContext) -> pb.QueueStatus:
        return queue_status_to_pb(*self.control.queue_status(), self._coordinator())

    @translate_errors
    def SetQueuePaused(
        self, request: pb.SetQueuePausedRequest, context: grpc.ServicerContext
    ) -> pb.QueueStatus:
        return queue_status_to_pb(*self.control.set_queue_paused(request.paused), self._coordinator())


def tick_to_pb(tick: Tick) -> pb.Tick:
    return pb.Tick(
        id=tick.id,
        status=tick.status,
        scheduled_time=_ts(tick.scheduled_time),
        run_ids=tick.run_ids,
        skip_reason=tick.skip_reason or "",
        error=tick.error or "",
        started_at=_ts(tick.started_at),
        ended_at=_ts(tick.ended_at),
    )


def instigator_to_pb(view: InstigatorView) -> pb.Instigator:
    d = view.definition
    cursor = view.state.cursor if view.state else None
    return pb.Instigator(
        name=view.name,
        kind=view.kind,
        code_location=view.location,
        status=view.status,
        job_name=d.job_name or "",
        cron_schedule=getattr(d, "cron_schedule", ""),
        execution_timezone=getattr(d, "execution_timezone", ""),
        minimum_interval_seconds=getattr(d, "minimum_interval_seconds", 0.0),
        next_tick_at=_ts(view.next_tick_at),
        definition_error=d.error or "",
        cursor=cursor or "",
        has_cursor=cursor is not None,
        last_tick=tick_to_pb(view.last_tick) if view.last_tick else None,
    )


class InstigatorServicer(pb_grpc.InstigatorServiceServicer):
    def __init__(self, instigators: Instigators) -> None:
        self.instigators = instigators

    @translate_errors
    def ListInstigators(
        self, request: pb.ListInstigatorsRequest, context: grpc.ServicerContext
    ) -> pb.ListInstigatorsResponse:
        views = self.instigators.list_all(request.kind)
        return pb.ListInstigatorsResponse(instigators=[instigator_to_pb(v) for v in views])

    @translate_errors
    def SetInstigatorStatus(
        self, request: pb.SetInstigatorStatusRequest, context: grpc.ServicerContext
    ) -> pb.Instigator:
        return instigator_to_pb(self.instigators.set_running(request.kind, request.name, request.running))

    @translate_errors
    def ListTicks(self, request: pb.ListTicksRequest, context: grpc.ServicerContext) -> pb.ListTicksResponse:
        ticks = self.instigators.ticks(request.kind, request.name, request.limit)
        return pb.ListTicksResponse(ticks=[tick_to_pb(t) for t in ticks])

    @translate_errors
    def PreviewSchedule(
        self, request: pb.PreviewScheduleRequest, context: grpc.ServicerContext
    ) -> pb.PreviewScheduleResponse:
        zone, times = self.instigators.preview(request.name, request.count)
        local = ZoneInfo(zone)
        return pb.PreviewScheduleResponse(
            execution_timezone=zone,
            ticks_utc=[_ts(t) for t in times],
            ticks_local=[t.astimezone(local).isoformat() for t in times],
        )

    @translate_errors
    def SetSensorCursor(
        self, request: pb.SetSensorCursorRequest, context: grpc.ServicerContext
    ) -> pb.Instigator:
        if not request.clear and len(request.cursor) > 1_000_000:
            raise InvalidArgument("cursor is longer than 1,000,000 characters")
        cursor = None if request.clear else request.cursor
        return instigator_to_pb(self.instigators.set_cursor(request.name, cursor))


class InstanceServicer(pb_grpc.InstanceServiceServicer):
    def __init__(self, control: ControlPlane, addresses: list[str], pid: int) -> None:
        self.control = control
        self.addresses = addresses
        self.pid = pid

    @translate_errors
    def ListWorkers(
        self, request: pb.ListWorkersRequest, context: grpc.ServicerContext
    ) -> pb.ListWorkersResponse:
        instance = self.control.instance
        timeout = float(instance.config.run_monitoring.worker_heartbeat_timeout_seconds)
        hosts = [w.to_json(timeout) for w in instance.storage.workers.all()]
        return pb.ListWorkersResponse(
            workers=[pb.WorkerHost(**{**w, "last_heartbeat_at": w["last_heartbeat_at"] or ""}) for w in hosts]
        )

    @translate_errors
    def GetInstanceInfo(
        self, request: pb.GetInstanceInfoRequest, context: grpc.ServicerContext
    ) -> pb.InstanceInfo:
        instance = self.control.instance
        locations = []
        views = self.control.locations.server_views()
        for name, snap in sorted(self.control.locations.snapshots().items()):
            view = views.get(name)
            errors = [d.error for d in (snap.schedules + snap.sensors if snap else []) if d.error]  # type: ignore[operator]
            locations.append(
                pb.CodeLocation(
                    name=name,
                    jobs=[j.name for j in snap.jobs] if snap else [],
                    schedules=[s.name for s in snap.schedules] if snap else [],
                    sensors=[s.name for s in snap.sensors] if snap else [],
                    load_error=(snap.load_error if snap else "code server not reachable") or "",
                    server_healthy=bool(view and view.healthy),
                    server_state=view.state if view else "",
                    server_pid=(view.pid or 0) if view else 0,
                    generation=snap.generation if snap else 0,
                    definition_errors=errors,
                    job_details=[
                        pb.JobDetail(name=j.name, description=j.description or "", tags=j.tags)
                        for j in (snap.jobs if snap else [])
                    ],
                )
            )
        return pb.InstanceInfo(
            version=__version__,
            home=str(instance.home),
            storage=instance.storage.describe(),
            run_coordinator=type(instance.coordinator).__name__,
            run_launcher=type(instance.launcher).__name__,
            config_json=json.dumps(instance.config.dump_public(), default=str),
            supervisor_pid=self.pid,
            addresses=self.addresses,
            code_locations=locations,
            role=self.control.role,
            lease=self._lease(),
            clock_skew_seconds=keeper.skew_seconds if (keeper := self.control.lease) else None,
        )

    def _lease(self) -> pb.Lease | None:
        """The lease as the database has it now (expires_in by its clock); None if unreadable."""
        lease = self.control.current_lease()
        if lease is None:
            return None
        return pb.Lease(holder=lease.holder, epoch=lease.epoch, expires_in_seconds=lease.expires_in_seconds)
