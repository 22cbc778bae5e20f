"""The client side of the streams (issue #20): iterators that reconnect by themselves.

:func:`watch_runs` yields each run status change once: when the connection drops, the supervisor
restarts, or the stream is ended because this reader fell behind, it reconnects with the cursor
of the last message it received, so nothing is missed and nothing is repeated. :func:`follow_logs`
resumes after the last log line received, :func:`watch_daemons` starts again with every daemon's
status. Other errors (a bad filter, too many streams) are raised as the same errors as every other
call (dagd.errors).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grpc

from dagd.api.v1 import dagd_pb2 as pb
from dagd.client.client import Client, _status_values, daemon_from_pb, run_from_pb
from dagd.errors import DagdError, FellBehind, Unavailable

# Reconnect quickly at first, then every 2 s; give up after this long without a connection.
RECONNECT_GIVE_UP_SECONDS = 60.0


def _retryable(error: DagdError) -> bool:
    return isinstance(error, (Unavailable, FellBehind))


def _resuming(
    client: Client,
    open_call: Callable[[], Iterator[Any]],
    handle: Callable[[Any], Iterator[Any]],
    *,
    resume: bool,
    give_up_after: float,
) -> Iterator[Any]:
    """Run ``open_call`` again after retryable failures; ``handle`` turns messages into items (and
    remembers where to resume)."""
    failing_since: float | None = None
    delay = 0.05
    while True:
        try:
            call = open_call()
            for message in call:
                failing_since, delay = None, 0.05
                yield from handle(message)
            return
        except grpc.RpcError as exc:
            error = client.translate_error(exc)
            if not resume or not _retryable(error):
                raise error from None
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > give_up_after:
                raise error from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def change_from_pb(cursor: str, change: pb.RunChange) -> dict[str, Any]:
    """One status change as `dagctl runs watch --json` prints it."""
    run = run_from_pb(change.run) if change.HasField("run") else None
    return {
        "run_id": change.run_id,
        "job_name": run["job_name"] if run else None,
        "status": pb.RunStatus.Name(change.status),
        "at": change.at or None,
        "message": change.message,
        "event_id": change.event_id,
        "cursor": cursor,
        "run": run,
    }


def watch_runs(
    client: Client,
    *,
    cursor: str = "",
    job_name: str | None = None,
    statuses: Sequence[str] = (),
    tags: Mapping[str, str] | None = None,
    run_ids: Sequence[str] = (),
    from_beginning: bool = False,
    resume: bool = True,
    give_up_after: float = RECONNECT_GIVE_UP_SECONDS,
) -> Iterator[dict[str, Any]]:
    """Each run status change as it happens (see :func:`change_from_pb` for the shape).

    ``cursor`` resumes after a change received earlier (its ``"cursor"``).
    """
    for _, change in watch_positions(
        client, cursor=cursor, job_name=job_name, statuses=statuses, tags=tags, run_ids=run_ids,
        from_beginning=from_beginning, resume=resume, give_up_after=give_up_after,
    ):  # fmt: skip
        if change is not None:
            yield change


def watch_positions(
    client: Client,
    *,
    cursor: str = "",
    job_name: str | None = None,
    statuses: Sequence[str] = (),
    tags: Mapping[str, str] | None = None,
    run_ids: Sequence[str] = (),
    from_beginning: bool = False,
    resume: bool = True,
    give_up_after: float = RECONNECT_GIVE_UP_SECONDS,
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """:func:`watch_runs` with every position: (cursor, change), or (cursor, None) for the
    stream's starting position and its keep-alives (save the cursor to resume later)."""
    position = cursor
    status_values = _status_values(statuses)

    def open_call() -> Iterator[Any]:
        request = pb.WatchRunsRequest(
            cursor=position,
            statuses=status_values,
            job_name=job_name or "",
            tags=dict(tags or {}),
            run_ids=list(run_ids),
            from_beginning=from_beginning,
        )
        return client.runs.WatchRuns(request, metadata=client._metadata)  # type: ignore[no-any-return]

    def handle(message: pb.WatchRunsResponse) -> Iterator[tuple[str, dict[str, Any] | None]]:
        nonlocal position
        position = message.cursor
        change = change_from_pb(message.cursor, message.change) if message.HasField("change") else None
        yield position, change

    yield from _resuming(client, open_call, handle, resume=resume, give_up_after=give_up_after)


def follow_logs(
    client: Client, run_id: str, *, after_seq: int = 0, give_up_after: float = RECONNECT_GIVE_UP_SECONDS
) -> Iterator[tuple[list[dict[str, Any]], str]]:
    """(new log lines, run status) as they are written; ends once the run has finished."""
    last = after_seq

    def open_call() -> Iterator[Any]:
        request = pb.FollowRunLogsRequest(run_id=run_id, after_seq=last)
        return client.runs.FollowRunLogs(request, metadata=client._metadata)  # type: ignore[no-any-return]

    def handle(message: pb.FollowRunLogsResponse) -> Iterator[tuple[list[dict[str, Any]], str]]:
        nonlocal last
        lines = [
            {"seq": ln.seq, "at": ln.at, "stream": ln.stream, "level": ln.level, "message": ln.message}
            for ln in message.lines
        ]
        if lines:
            last = lines[-1]["seq"]
        yield lines, pb.RunStatus.Name(message.run_status)

    yield from _resuming(client, open_call, handle, resume=True, give_up_after=give_up_after)


FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


def wait_for_run(
    client: Client, run_id: str, *, give_up_after: float = RECONNECT_GIVE_UP_SECONDS
) -> dict[str, Any]:
    """Block until the run has finished; the run (as :func:`run_from_pb` shapes it)."""
    checked = False
    for _, change in watch_positions(client, run_ids=[run_id], give_up_after=give_up_after):
        if not checked:
            # The stream's first message is its starting position: no change after it is missed,
            # so one read of the run now tells whether it had already finished.
            checked = True
            run = client.get_run(run_id)[0]
            if run["status"] in FINISHED:
                return run
        if change is not None and change["status"] in FINISHED:
            return change["run"] or client.get_run(run_id)[0]
    raise Unavailable("the run stream ended before the run finished")


def watch_daemons(
    client: Client, *, give_up_after: float = RECONNECT_GIVE_UP_SECONDS
) -> Iterator[dict[str, Any]]:
    """Every daemon's status, then each change of one; after a reconnect, every daemon again."""

    def open_call() -> Iterator[Any]:
        return client.daemons.WatchDaemons(pb.WatchDaemonsRequest(), metadata=client._metadata)  # type: ignore[no-any-return]

    def handle(message: pb.WatchDaemonsResponse) -> Iterator[dict[str, Any]]:
        yield {**daemon_from_pb(message.daemon), "role": message.role}

    yield from _resuming(client, open_call, handle, resume=True, give_up_after=give_up_after)


class OpenStream:
    """One stream call, without resuming: iterate it (blocking) on one thread, ``cancel()`` it
    from another (the web UI relays it to a browser, whose EventSource does the resuming)."""

    def __init__(self, call: Any, convert: Callable[[Any], Any]) -> None:
        self._call = call
        self._convert = convert

    def __iter__(self) -> Iterator[Any]:
        for message in self._call:
            yield self._convert(message)

    def cancel(self) -> None:
        self._call.cancel()


def open_run_changes(client: Client, *, cursor: str = "", run_ids: Sequence[str] = ()) -> OpenStream:
    """(cursor, change or None) pairs of :func:`watch_positions`, from one call."""
    call = client.runs.WatchRuns(
        pb.WatchRunsRequest(cursor=cursor, run_ids=list(run_ids)), metadata=client._metadata
    )

    def convert(message: pb.WatchRunsResponse) -> tuple[str, dict[str, Any] | None]:
        change = change_from_pb(message.cursor, message.change) if message.HasField("change") else None
        return message.cursor, change

    return OpenStream(call, convert)


def open_log_follow(client: Client, run_id: str, *, after_seq: int = 0) -> OpenStream:
    """(lines, status) pairs of :func:`follow_logs`, from one call."""
    call = client.runs.FollowRunLogs(
        pb.FollowRunLogsRequest(run_id=run_id, after_seq=after_seq), metadata=client._metadata
    )

    def convert(message: pb.FollowRunLogsResponse) -> tuple[list[dict[str, Any]], str]:
        lines = [
            {"seq": ln.seq, "at": ln.at, "stream": ln.stream, "level": ln.level, "message": ln.message}
            for ln in message.lines
        ]
        return lines, pb.RunStatus.Name(message.run_status)

    return OpenStream(call, convert)


def open_daemon_changes(client: Client) -> OpenStream:
    """Daemon statuses of :func:`watch_daemons`, from one call."""
    call = client.daemons.WatchDaemons(pb.WatchDaemonsRequest(), metadata=client._metadata)
    return OpenStream(call, lambda m: {**daemon_from_pb(m.daemon), "role": m.role})
