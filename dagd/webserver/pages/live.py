"""Server-sent events for the pages' live parts (issue #20): the supervisor's streams, relayed.

``/live`` tells a page that something it shows changed (``event: change``); the page then
refreshes its live parts once (static/app.js). Its first event, ``ready``, comes once the
supervisor has subscribed the stream: the page refreshes on it too, since a change made between
the page's render and that moment is before the stream's start. ``?run=ID`` narrows it to one run's status changes,
``?watch=daemons`` follows the daemons instead. Each event's ``id`` is the stream cursor, so the
browser's EventSource, reconnecting by itself, sends it back as ``Last-Event-ID`` and misses
nothing. ``/runs/{id}/log/stream?after=SEQ`` sends the run's new log lines (``event: lines``)
and ends with ``event: end`` once the run has finished.

Each stream is one gRPC call iterated on a thread of its own; the thread waits while the browser
is slow (a bounded queue), so the supervisor, not the webserver, decides when a reader fell
behind. A closed tab cancels the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from dagd.client.streams import OpenStream, open_daemon_changes, open_log_follow, open_run_changes
from dagd.errors import InvalidArgument
from dagd.webserver.render import ui_of

KEEPALIVE_SECONDS = 15.0
_END = object()


def _relay(
    stream: OpenStream,
    loop: asyncio.AbstractEventLoop,
    inbox: asyncio.Queue[Any],
    failed: Callable[[BaseException], None],
) -> None:
    def put(item: Any) -> None:
        with contextlib.suppress(RuntimeError, asyncio.CancelledError, TimeoutError):
            asyncio.run_coroutine_threadsafe(inbox.put(item), loop).result(timeout=3600)

    try:
        for item in stream:
            put(item)
    except Exception as exc:  # the call ended: cancelled (tab closed), supervisor gone, fell behind
        failed(exc)
    put(_END)


async def _events(
    stream: OpenStream,
    render: Callable[[Any], str | None],
    end: Callable[[], str] | None = None,
    failed: Callable[[BaseException], None] = lambda exc: None,
) -> AsyncIterator[str]:
    inbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    loop = asyncio.get_running_loop()
    threading.Thread(target=_relay, args=(stream, loop, inbox, failed), name="sse", daemon=True).start()
    try:
        yield "retry: 2000\n\n"
        while True:
            try:
                item = await asyncio.wait_for(inbox.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if item is _END:
                if end is not None:
                    yield end()
                return
            text = render(item)
            if text:
                yield text
    finally:
        stream.cancel()


def _sse(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def live(request: Request) -> StreamingResponse:
    gateway = ui_of(request).gateway
    if request.query_params.get("watch") == "daemons":
        client = gateway.client()
        stream = await asyncio.to_thread(open_daemon_changes, client)
        return _sse(
            _events(
                stream,
                lambda d: f"event: change\ndata: {json.dumps(d['name'])}\n\n",
                failed=lambda exc: gateway.stream_failed(client, exc),
            )
        )
    run_id = request.query_params.get("run", "")
    cursor = request.headers.get("last-event-id", "")

    opened = {"ready": False}

    def render(item: tuple[str, dict[str, Any] | None]) -> str:
        position, change = item
        if not opened["ready"]:
            # The stream's first message is its starting position, sent once the supervisor has
            # subscribed: the page refreshes on it, so a change between the page's render and
            # this moment (which the stream, starting from now, will not send) is shown too.
            opened["ready"] = True
            return f"id: {position}\nevent: ready\ndata: {{}}\n\n"
        if change is None:
            return f"id: {position}\n\n"  # the position moved; nothing to show
        data = {"run_id": change["run_id"], "status": change["status"]}
        return f"id: {position}\nevent: change\ndata: {json.dumps(data)}\n\n"

    client = gateway.client()
    stream = await asyncio.to_thread(
        lambda: open_run_changes(client, cursor=cursor, run_ids=[run_id] if run_id else [])
    )
    return _sse(_events(stream, render, failed=lambda exc: gateway.stream_failed(client, exc)))


async def log_stream(request: Request) -> StreamingResponse:
    gateway = ui_of(request).gateway
    run_id = request.path_params["run_id"]
    try:
        after = max(int(request.query_params.get("after", "0")), 0)
        # An EventSource reconnecting sends the id of the last event it got: the last line's seq.
        after = max(after, int(request.headers.get("last-event-id") or "0"))
    except ValueError:
        raise InvalidArgument("after must be an integer") from None
    client = gateway.client()
    stream = await asyncio.to_thread(lambda: open_log_follow(client, run_id, after_seq=after))
    status = {"value": ""}

    def render(item: tuple[list[dict[str, Any]], str]) -> str | None:
        lines, status["value"] = item
        if not lines:
            return None
        return f"id: {lines[-1]['seq']}\nevent: lines\ndata: {json.dumps(lines)}\n\n"

    def end() -> str:
        finished = status["value"] in ("SUCCESS", "FAILURE", "CANCELED")
        # Only a finished run ends the stream for good; otherwise the browser reconnects.
        return f"event: end\ndata: {json.dumps(status['value'])}\n\n" if finished else ""

    return _sse(_events(stream, render, end, failed=lambda exc: gateway.stream_failed(client, exc)))


routes = [
    Route("/live", live, name="live"),
    Route("/runs/{run_id}/log/stream", log_stream, name="run_log_stream"),
]
