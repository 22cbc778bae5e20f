"""A typed client of ``dagd.api.v1``: typed results in (:mod:`dagd.client.types`, dataclasses that are
also the dicts of SPEC §6's JSON shapes), dagd errors instead of RpcError. docs/client.md tells how
another service uses it.

This is the one client-side place where gRPC status codes become dagd errors. The address comes
from ``--address``, else from the ``supervisor.json`` the supervisor publishes in ``$DAGD_HOME``.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from dagd import home as layout
from dagd.api.v1 import dagd_pb2 as pb
from dagd.api.v1 import dagd_pb2_grpc as pb_grpc
from dagd.client import types
from dagd.errors import (
    ERROR_METADATA_KEY,
    RUN_INDEX_METADATA_KEY,
    Conflict,
    DagdError,
    FellBehind,
    InvalidArgument,
    InvalidTransition,
    NotFound,
    TooManyStreams,
    Unauthenticated,
    Unavailable,
    at_index,
)

CODE_TO_ERROR: dict[grpc.StatusCode, type[DagdError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidTransition,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
}


class SupervisorUnreachable(Unavailable):
    """No supervisor answers at the instance's address."""


@dataclass(frozen=True)
class Published:
    pid: int
    started_at: float
    addresses: list[str]

    @property
    def alive(self) -> bool:
        from dagd.processes import process_matches  # psutil inside: dagctl starts faster without it

        return process_matches(self.pid, self.started_at)


def read_published(home: pathlib.Path) -> Published | None:
    try:
        data = json.loads(layout.supervisor_file(home).read_text())
        return Published(
            pid=int(data["pid"]), started_at=float(data["started_at"]), addresses=list(data["addresses"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def not_running(home: pathlib.Path) -> SupervisorUnreachable:
    return SupervisorUnreachable(
        f"no supervisor is running for DAGD_HOME={home} (start one with `dagctl dev` or `dagctl daemon run`)"
    )


def resolve_address(home: pathlib.Path, address: str | None) -> str:
    """``address``, else the one the home's supervisor published.

    Whether that supervisor still runs is not checked here (psutil costs every dagctl start-up
    several ms): a call to a dead one fails to connect, and only then is the pid looked at, to say
    "no supervisor is running" instead of a connection error (Client._call).
    """
    if address:
        return address
    published = read_published(home)
    if published is None:
        raise not_running(home)
    return published.addresses[0]


def _status_name(value: int) -> str:
    return pb.RunStatus.Name(value) if value in pb.RunStatus.values() else str(value)


def _status_values(statuses: Sequence[str]) -> list[Any]:
    values = []
    for status in statuses:
        if status.upper() not in pb.RunStatus.keys() or status.upper() == "RUN_STATUS_UNSPECIFIED":
            known = ", ".join(k for k in pb.RunStatus.keys() if k != "RUN_STATUS_UNSPECIFIED")
            raise InvalidArgument(f"unknown run status {status!r} (one of {known})")
        values.append(pb.RunStatus.Value(status.upper()))
    return values


def _queue_from_pb(q: pb.QueueStatus) -> types.QueueStatus:
    return types.QueueStatus(
        paused=q.paused,
        queued=q.queued,
        in_progress=q.in_progress,
        max_concurrent_runs=q.max_concurrent_runs,
        tag_limits=[
            types.TagLimitUsage(
                limit=t.limit,
                in_use=t.in_use,
                capacity=t.capacity,
                key=t.key or None,
                value=t.value or None,
                per_unique_value=t.per_unique_value,
            )
            for t in q.tag_limits
        ],
        queue_daemon_healthy=q.queue_daemon_healthy,
        run_coordinator=q.run_coordinator,
    )


def _tick_from_pb(t: pb.Tick) -> dict[str, Any]:
    return {
        "id": t.id,
        "status": t.status,
        "scheduled_time": t.scheduled_time or None,
        "run_ids": list(t.run_ids),
        "skip_reason": t.skip_reason or None,
        "error": t.error or None,
        "started_at": t.started_at or None,
        "ended_at": t.ended_at or None,
    }


def _instigator_from_pb(i: pb.Instigator) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": i.name,
        "kind": i.kind,
        "code_location": i.code_location,
        "status": i.status,
        "job_name": i.job_name or None,
        "definition_error": i.definition_error or None,
        "last_tick": _tick_from_pb(i.last_tick) if i.HasField("last_tick") else None,
    }
    if i.kind == "schedule":
        out.update(
            cron_schedule=i.cron_schedule,
            execution_timezone=i.execution_timezone,
            next_tick_at=i.next_tick_at or None,
        )
    else:
        out.update(
            minimum_interval_seconds=i.minimum_interval_seconds, cursor=i.cursor if i.has_cursor else None
        )
    return out


def _struct_or_json(struct: Any, text: str) -> dict[str, Any]:
    """A JSON object field: its text (exact: Struct numbers are all doubles) if the server sent
    it, else the typed google.protobuf.Struct beside it."""
    if text:
        return json.loads(text)  # type: ignore[no-any-return]
    from google.protobuf import json_format

    return json_format.MessageToDict(struct)


def run_from_pb(run: pb.Run) -> types.Run:
    """A run in the JSON shape of SPEC §6 (plus a few more fields)."""
    return types.Run(
        run_id=run.run_id,
        job_name=run.job_name,
        status=_status_name(run.status),
        tags=dict(sorted(run.tags.items())),
        priority=run.priority,
        created_at=run.created_at or None,
        started_at=run.started_at or None,
        ended_at=run.ended_at or None,
        run_config=_struct_or_json(run.run_config, run.run_config_json),
        error=run.error or None,
        worker_pid=run.worker_pid or None,
        attempt=run.attempt,
        host=run.host or None,
    )


def attempt_from_pb(attempt: pb.RunAttempt) -> types.RunAttempt:
    return types.RunAttempt(
        attempt=attempt.attempt,
        state=attempt.state,
        host=attempt.host or None,
        pid=attempt.pid or None,
        worker=attempt.worker or None,
        queue=attempt.queue or None,
        dispatched_at=attempt.dispatched_at or None,
        claimed_at=attempt.claimed_at or None,
        heartbeat_at=attempt.heartbeat_at or None,
        ended_at=attempt.ended_at or None,
        end_reason=attempt.end_reason or None,
    )


def _submit_request(
    job_name: str,
    tags: Mapping[str, str] | None,
    run_config: Mapping[str, Any] | None,
    run_config_json: str | None,
    priority: int | None,
    idempotency_key: str,
) -> pb.SubmitRunRequest:
    request = pb.SubmitRunRequest(
        job_name=job_name,
        tags=dict(tags or {}),
        # Empty means {} to the supervisor: no JSON to write for the common case.
        run_config_json=run_config_json
        if run_config_json is not None
        else (json.dumps(run_config) if run_config else ""),
        idempotency_key=idempotency_key,
    )
    if priority is not None:
        from dagd.runs.model import MAX_PRIORITY, MIN_PRIORITY

        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidArgument(
                f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {priority}"
            )
        request.priority = priority
    return request


BATCH_ENTRY_FIELDS = ("job_name", "tags", "run_config", "run_config_json", "priority", "idempotency_key")


def _batch_entry(entry: Mapping[str, Any], job_name: str | None) -> pb.SubmitRunRequest:
    """One entry of submit_many, checked for shape (the supervisor validates the rest)."""
    if not isinstance(entry, Mapping):
        raise InvalidArgument(f"expected an object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(BATCH_ENTRY_FIELDS))
    if unknown:
        raise InvalidArgument(f"unknown field {unknown[0]!r} (known: {', '.join(BATCH_ENTRY_FIELDS)})")
    job = entry.get("job_name", job_name)
    if not isinstance(job, str) or not job:
        raise InvalidArgument("job_name is required (a string)")
    tags = entry.get("tags") or {}
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidArgument("tags must be an object of string values")
    config = entry.get("run_config")
    if config is not None and not isinstance(config, Mapping):
        raise InvalidArgument("run_config must be an object")
    config_json = entry.get("run_config_json")
    if config_json is not None and not isinstance(config_json, str):
        raise InvalidArgument("run_config_json must be a string")
    priority = entry.get("priority")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        raise InvalidArgument("priority must be an integer")
    key = entry.get("idempotency_key") or ""
    if not isinstance(key, str):
        raise InvalidArgument("idempotency_key must be a string")
    return _submit_request(job, tags, config, config_json, priority, key)


class Client:
    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls_ca_file: str | None = None,
        timeout: float = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.address = address
        self.timeout = timeout
        # The home whose supervisor.json gave the address (for_home without --address), else None.
        self._published_by: pathlib.Path | None = None
        self._metadata: list[tuple[str, str]] = [("authorization", f"Bearer {token}")] if token else []
        # Sent with every call; coordinator hooks see them (e.g. to tag runs with who submitted).
        self._metadata += [(k.lower(), v) for k, v in metadata]
        if tls_ca_file:
            try:
                ca = pathlib.Path(tls_ca_file).read_bytes()
            except OSError as exc:
                raise InvalidArgument(
                    f"cannot read the TLS CA file {tls_ca_file}: {exc.strerror or exc}"
                ) from None
            creds = grpc.ssl_channel_credentials(ca)
            self._channel = grpc.secure_channel(address, creds)
        else:
            self._channel = grpc.insecure_channel(address)
        self.runs = pb_grpc.RunServiceStub(self._channel)
        self.instance = pb_grpc.InstanceServiceStub(self._channel)
        self.daemons = pb_grpc.DaemonServiceStub(self._channel)
        self.queue = pb_grpc.QueueServiceStub(self._channel)
        self.instigators = pb_grpc.InstigatorServiceStub(self._channel)

    @classmethod
    def for_home(
        cls,
        home: pathlib.Path,
        *,
        address: str | None = None,
        token: str | None = None,
        tls_ca_file: str | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> Client:
        client = cls(resolve_address(home, address), token=token, tls_ca_file=tls_ca_file, metadata=metadata)
        client._published_by = None if address else home
        return client

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, metadata: Sequence[tuple[str, str]] = ()) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=[*self._metadata, *metadata])
        except grpc.RpcError as exc:
            raise self.translate_error(exc) from None

    def translate_error(self, exc: grpc.RpcError) -> DagdError:
        """The dagd error for a failed call (streams call this too: dagd.client.streams)."""
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else str(exc)
        # The supervisor's own answers carry ERROR_METADATA_KEY: an UNAVAILABLE it sent (its
        # storage is down) means it is reachable, whatever the message says about connections.
        trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
        answered = any(item[0] == ERROR_METADATA_KEY for item in trailing or ())
        if (
            code == grpc.StatusCode.UNAVAILABLE
            and not answered
            and ("connect" in (details or "").lower() or not details)
        ):
            if self._published_by is not None:
                published = read_published(self._published_by)
                if published is None or not published.alive:
                    return not_running(self._published_by)
            return SupervisorUnreachable(f"cannot reach the supervisor at {self.address}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and not answered:
            # Alive enough to accept the connection, but no answer (stopped, hung, overloaded).
            return SupervisorUnreachable(
                f"the supervisor at {self.address} did not answer within {self.timeout:g}s"
            )
        names = {value for key, value in trailing or () if key == ERROR_METADATA_KEY}
        streams: tuple[type[DagdError], ...] = (FellBehind, TooManyStreams)
        error = next((e for e in streams if e.__name__ in names), CODE_TO_ERROR.get(code, DagdError))
        result = error(details or code.name)
        index = next((item[1] for item in trailing or () if item[0] == RUN_INDEX_METADATA_KEY), None)
        if index is not None and str(index).isdigit():
            result.run_index = int(index)  # which entry of a batch (SubmitRuns) was refused
        return result

    # -- runs ----------------------------------------------------------------------------------

    def submit(
        self,
        job_name: str,
        *,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
        run_config_json: str | None = None,
        priority: int | None = None,
        idempotency_key: str = "",
        metadata: Sequence[tuple[str, str]] = (),
    ) -> types.Run:
        request = _submit_request(job_name, tags, run_config, run_config_json, priority, idempotency_key)
        return run_from_pb(self._call(self.runs.SubmitRun, request, metadata))

    def submit_many(
        self,
        runs: Sequence[Mapping[str, Any]],
        *,
        job_name: str | None = None,
        run_ids_only: bool = False,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> list[Any]:  # list[types.Run], or list[str] with run_ids_only
        """Submit many runs in one call, all or none (SubmitRuns).

        Each entry is a mapping with any of ``job_name`` (else ``job_name=`` here), ``tags``,
        ``run_config`` (or ``run_config_json``), ``priority`` and ``idempotency_key``. The runs
        come back in the order given (their ids only with ``run_ids_only``, which a batch of
        thousands needs to fit the message size limit). A bad entry fails the whole call with
        the error SubmitRun would give, its message starting ``runs[N]:`` and its ``run_index`` N.
        """
        requests = []
        for index, entry in enumerate(runs):
            try:
                requests.append(_batch_entry(entry, job_name))
            except DagdError as exc:
                raise at_index(exc, index) from None
        response = self._call(
            self.runs.SubmitRuns, pb.SubmitRunsRequest(runs=requests, run_ids_only=run_ids_only), metadata
        )
        if run_ids_only:
            return list(response.run_ids)
        return [run_from_pb(r) for r in response.runs]

    def resolve_run_id(self, run_id_or_prefix: str) -> str:
        """The full id for a full id or a unique prefix of at least 6 characters (SPEC §9.4).

        A full id is returned as it is, without a call; a prefix costs one call (one indexed
        storage query in the supervisor). Too short or ambiguous: InvalidArgument naming the
        candidates; no match: NotFound.
        """
        from dagd.storage.run_ids import is_prefix

        if not is_prefix(run_id_or_prefix):
            return run_id_or_prefix  # a whole id (or something that is no id: the next call says so)
        request = pb.ResolveRunIdRequest(run_id_or_prefix=run_id_or_prefix)
        return str(self._call(self.runs.ResolveRunId, request).run_id)

    def get_run(self, run_id: str) -> tuple[types.Run, list[types.RunEvent]]:
        """The run (with its ``attempts``) and its events, oldest first."""
        response = self._call(self.runs.GetRun, pb.GetRunRequest(run_id=run_id))
        events = [
            types.RunEvent(
                at=e.at,
                kind=e.kind,
                status=_status_name(e.status) if e.status else None,
                message=e.message,
            )
            for e in response.events
        ]
        run = run_from_pb(response.run)
        run["attempts"] = [attempt_from_pb(a) for a in response.attempts]
        return run, events

    def list_runs(
        self,
        *,
        statuses: Sequence[str] = (),
        job_name: str = "",
        tags: Mapping[str, str] | None = None,
        limit: int = 100,
        page_token: str = "",
    ) -> tuple[list[types.Run], str]:
        """Runs, newest first, and the page token of the next (older) page ("" at the end)."""
        status_values = _status_values(statuses)
        response = self._call(
            self.runs.ListRuns,
            pb.ListRunsRequest(
                statuses=status_values,
                job_name=job_name,
                tags=dict(tags or {}),
                limit=limit,
                page_token=page_token,
            ),
        )
        return [run_from_pb(r) for r in response.runs], response.next_page_token

    def terminate(self, run_id: str) -> tuple[types.Run, bool]:
        response = self._call(self.runs.TerminateRun, pb.TerminateRunRequest(run_id=run_id))
        return run_from_pb(response.run), response.changed

    def terminate_runs(
        self, *, statuses: Sequence[str], job_name: str = "", tags: Mapping[str, str] | None = None
    ) -> tuple[list[str], list[str]]:
        response = self._call(
            self.runs.TerminateRuns,
            pb.TerminateRunsRequest(
                statuses=_status_values(statuses), job_name=job_name, tags=dict(tags or {})
            ),
        )
        return list(response.canceled_run_ids), list(response.canceling_run_ids)

    def explain_run(self, run_id: str) -> dict[str, Any]:
        e = self._call(self.runs.ExplainRun, pb.ExplainRunRequest(run_id=run_id))
        return {
            "run_id": e.run_id,
            "status": _status_name(e.status),
            "summary": e.summary,
            "reasons": list(e.reasons),
            "holders": list(e.holders),
            "position": e.position or None,
            "queue_paused": e.queue_paused,
            "queue_daemon_healthy": e.queue_daemon_healthy,
            "run_coordinator": e.run_coordinator,
            "launchable": e.launchable,
        }

    def queue_status(self) -> types.QueueStatus:
        return _queue_from_pb(self._call(self.queue.GetQueueStatus, pb.QueueStatusRequest()))

    def set_queue_paused(self, paused: bool) -> types.QueueStatus:
        return _queue_from_pb(self._call(self.queue.SetQueuePaused, pb.SetQueuePausedRequest(paused=paused)))

    def read_logs(
        self, run_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> tuple[list[types.LogLine], int, str]:
        """Log lines after ``after_seq``, the last line's seq, and the run's status."""
        response = self._call(
            self.runs.ReadRunLogs, pb.ReadRunLogsRequest(run_id=run_id, after_seq=after_seq, limit=limit)
        )
        lines = [
            types.LogLine(seq=ln.seq, at=ln.at, stream=ln.stream, level=ln.level, message=ln.message)
            for ln in response.lines
        ]
        return lines, response.last_seq, _status_name(response.run_status)

    # -- daemons -------------------------------------------------------------------------------

    def daemon_status(self) -> types.DaemonStatus:
        response = self._call(self.daemons.GetDaemonStatus, pb.GetDaemonStatusRequest())
        return types.DaemonStatus(
            daemons=[daemon_from_pb(d) for d in response.daemons],
            draining=response.draining,
            role=response.role or None,
        )

    def restart_daemon(self, name: str) -> types.Daemon:
        response = self._call(self.daemons.RestartDaemon, pb.RestartDaemonRequest(name=name))
        return daemon_from_pb(response.daemon)

    # -- schedules and sensors -------------------------------------------------------------------

    def list_instigators(self, kind: str) -> list[dict[str, Any]]:
        response = self._call(self.instigators.ListInstigators, pb.ListInstigatorsRequest(kind=kind))
        return [_instigator_from_pb(i) for i in response.instigators]

    def set_instigator_running(self, kind: str, name: str, running: bool) -> dict[str, Any]:
        request = pb.SetInstigatorStatusRequest(kind=kind, name=name, running=running)
        return _instigator_from_pb(self._call(self.instigators.SetInstigatorStatus, request))

    def list_ticks(self, kind: str, name: str, limit: int = 20) -> list[dict[str, Any]]:
        response = self._call(
            self.instigators.ListTicks, pb.ListTicksRequest(kind=kind, name=name, limit=limit)
        )
        return [_tick_from_pb(t) for t in response.ticks]

    def preview_schedule(self, name: str, count: int = 5) -> dict[str, Any]:
        r = self._call(self.instigators.PreviewSchedule, pb.PreviewScheduleRequest(name=name, count=count))
        return {
            "execution_timezone": r.execution_timezone,
            "ticks_utc": list(r.ticks_utc),
            "ticks_local": list(r.ticks_local),
        }

    def set_sensor_cursor(self, name: str, cursor: str | None) -> dict[str, Any]:
        request = pb.SetSensorCursorRequest(name=name, cursor=cursor or "", clear=cursor is None)
        return _instigator_from_pb(self._call(self.instigators.SetSensorCursor, request))

    # -- instance ------------------------------------------------------------------------------

    def list_workers(self) -> list[dict[str, Any]]:
        """The fleet's worker hosts (the Celery launcher), as ``dagctl workers status --json``."""
        response = self._call(self.instance.ListWorkers, pb.ListWorkersRequest())
        return [
            {
                "name": w.name,
                "host": w.host,
                "queues": list(w.queues),
                "slots": w.slots,
                "in_use": w.in_use,
                "accepting": w.accepting,
                "last_heartbeat_at": w.last_heartbeat_at or None,
                "healthy": w.healthy,
            }
            for w in response.workers
        ]

    def instance_info(self) -> dict[str, Any]:
        info = self._call(self.instance.GetInstanceInfo, pb.GetInstanceInfoRequest())
        return {
            "version": info.version,
            "home": info.home,
            "storage": info.storage,
            "run_coordinator": info.run_coordinator,
            "run_launcher": info.run_launcher,
            "supervisor_pid": info.supervisor_pid,
            "addresses": list(info.addresses),
            "config": json.loads(info.config_json) if info.config_json else {},
            "code_locations": [
                {
                    "name": loc.name,
                    "jobs": list(loc.jobs),
                    "schedules": list(loc.schedules),
                    "sensors": list(loc.sensors),
                    "load_error": loc.load_error or None,
                    "definition_errors": list(loc.definition_errors),
                    "job_details": [
                        {
                            "name": j.name,
                            "description": j.description or None,
                            "tags": dict(sorted(j.tags.items())),
                        }
                        for j in loc.job_details
                    ],
                    "server": {
                        "healthy": loc.server_healthy,
                        "state": loc.server_state or None,
                        "pid": loc.server_pid or None,
                        "generation": loc.generation,
                    },
                }
                for loc in info.code_locations
            ],
            "role": info.role or None,
            "lease": (
                {
                    "holder": info.lease.holder,
                    "epoch": info.lease.epoch,
                    "expires_in_seconds": round(info.lease.expires_in_seconds, 3),
                }
                if info.HasField("lease")
                else None
            ),
            "clock_skew_seconds": (
                round(info.clock_skew_seconds, 3) if info.HasField("clock_skew_seconds") else None
            ),
        }

    def delete_runs(self, run_ids: Sequence[str]) -> list[str]:
        """Delete finished runs (all or none); the ids deleted."""
        response = self._call(self.runs.DeleteRuns, pb.DeleteRunsRequest(run_ids=list(run_ids)))
        return list(response.deleted_run_ids)

    def purge_runs(self, older_than_days: float, statuses: Sequence[str] = ()) -> Iterator[int]:
        """Delete finished runs that ended over ``older_than_days`` ago, a call at a time (each
        bounded by the supervisor); yields each call's count."""
        request = pb.PurgeRunsRequest(older_than_days=older_than_days, statuses=_status_values(statuses))
        while True:
            response = self._call(self.runs.PurgeRuns, request)
            yield response.deleted
            if not response.more:
                return


def daemon_from_pb(d: pb.DaemonStatus) -> types.Daemon:
    """A daemon in the JSON shape of SPEC §6 (plus state, detail and restart reasons)."""
    return types.Daemon(
        name=d.name,
        healthy=d.healthy,
        pid=d.pid or None,
        last_heartbeat_at=d.last_heartbeat_at or None,
        restarts=d.restarts,
        # An exit it was asked for (a commanded restart, a shutdown) is not an error.
        last_error=(d.last_errors[0] if d.last_errors else None)
        or (d.last_exit if d.last_exit_reason not in ("COMMANDED", "SHUTDOWN") else None)
        or None,
        state=d.state,
        detail=d.detail,
        incarnation=d.incarnation,
        uptime_seconds=round(d.uptime_seconds, 3),
        iteration=d.iteration,
        phase=d.phase,
        restarts_by_reason=dict(d.restarts_by_reason),
        last_exit=d.last_exit or None,
        last_exit_reason=d.last_exit_reason or None,
        last_errors=list(d.last_errors),
        degraded=d.degraded,
        info=_struct_or_json(d.info, d.info_json),
        # By the database's clock: right whichever host asks, whatever its clock.
        heartbeat_age_seconds=(
            round(d.heartbeat_age_seconds, 3) if d.HasField("heartbeat_age_seconds") else None
        ),
    )
