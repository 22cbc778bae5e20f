"""One shared change reader per supervisor, fanned out to every open stream (issue #20).

A single thread reads new run events with a gap-aware cursor (dagd.runs.cursor) and hands each
batch to the streams that want run changes; log followers and daemon watchers are only woken.
It wakes on PostgreSQL's NOTIFY (``dagd_changes``, sent by triggers on run_events and run_logs,
whichever process or host wrote them) and otherwise polls: every 20 ms on SQLite, every 250 ms on
PostgreSQL as a fallback. So 1,000 watchers cost one query per change, not 1,000.

Back-pressure: each stream has a bounded queue. A stream whose queue is full is marked as having
fallen behind and gets nothing more; its handler ends it with ABORTED and the client resumes from
its last cursor. A handler stuck sending to a reader that never reads is cancelled after a grace
period, so a slow client never grows the supervisor's memory. At most ``max_streams`` streams are
open at once (TooManyStreams past it).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dagd.errors import FellBehind, TooManyStreams, Unavailable
from dagd.runs.cursor import Cursor
from dagd.runs.model import LogLine, RunStatus
from dagd.storage.changes import ChangeBatch, RunChange, latest_ids, oldest_cursor, read_changes
from dagd.storage.schema import NOTIFY_CHANNEL
from dagd.storage.sql import PG_CONNECTION_ARGS

if TYPE_CHECKING:
    from dagd.storage.database import Database
    from dagd.storage.runs import RunStore

log = logging.getLogger(__name__)

SQLITE_POLL_SECONDS = 0.02
POSTGRES_POLL_SECONDS = 0.25
# A stream that fell behind but whose handler is still blocked sending is cancelled after this.
STUCK_GRACE_SECONDS = 10.0
WAKE = object()  # what a waker subscription receives


@dataclass(eq=False)
class Subscription:
    """One open stream's inbox: change batches (kind "changes"), wake-ups ("logs"), or only its
    closing ("daemons": those poll on their own)."""

    kind: str
    queue: queue.Queue[Any]
    behind: bool = False
    behind_since: float = 0.0
    closed: bool = False
    on_stuck: Callable[[], None] | None = None
    stuck_handled: bool = field(default=False)
    # A watcher's filter, applied by the hub: a batch with nothing for it is not handed over, so
    # 1,000 idle watchers are not woken by every change (``job`` indexes it: a watcher of one
    # job is not even looked at for a batch without that job). Its handler moves its cursor past
    # what it was not given while its inbox is empty (StreamHub.idle_position).
    matches: Callable[[RunChange], bool] | None = None
    job: str | None = None

    def offer_batch(self, batch: ChangeBatch, now: float) -> None:
        if self.matches is None or any(c.status is not None and self.matches(c) for c in batch.changes):
            self.offer(batch, now)

    def offer(self, item: Any, now: float) -> None:
        if self.behind or self.closed:
            return
        if self.kind != "changes":
            if self.queue.empty():  # wake-ups coalesce
                with contextlib.suppress(queue.Full):
                    self.queue.put_nowait(item)
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.behind, self.behind_since = True, now
            # Make room for the sentinel that wakes the handler (which may be emptying it now).
            with contextlib.suppress(queue.Full, queue.Empty):
                self.queue.get_nowait()
            with contextlib.suppress(queue.Full):
                self.queue.put_nowait(None)

    def get(self, timeout: float) -> Any:
        """The next item, None when the stream fell behind or closed, WAKE on timeout too."""
        if self.behind or self.closed:
            return None
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return WAKE

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)


class StreamHub:
    def __init__(
        self,
        storage: Database,
        *,
        max_streams: int = 1000,
        queue_size: int = 256,
        poll_seconds: float | None = None,
        pg_conninfo: str | None = None,
    ) -> None:
        self.storage = storage
        self.max_streams = max_streams
        self.queue_size = queue_size
        self.pg_conninfo = pg_conninfo
        default = POSTGRES_POLL_SECONDS if pg_conninfo else SQLITE_POLL_SECONDS
        self.poll_seconds = poll_seconds or default
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._by_kind: dict[str, set[Subscription]] = {}
        self._by_job: dict[str, set[Subscription]] = {}
        self._behind: set[Subscription] = set()
        self._fanned = Cursor()  # the position after the last batch handed out
        self._cursor = Cursor()
        self._logs_max = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stream-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- subscriptions -----------------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(
        self, kind: str, matches: Callable[[RunChange], bool] | None = None, job: str | None = None
    ) -> Iterator[tuple[Subscription, Cursor]]:
        """An inbox, and the hub's position when it was opened (changes after it arrive in it)."""
        if not self._ready.wait(timeout=10):
            raise Unavailable("the stream reader is not ready (storage unreachable?)")
        size = self.queue_size if kind == "changes" else 1
        sub = Subscription(kind, queue.Queue(maxsize=size + 1), matches=matches, job=job)
        with self._lock:
            if len(self._subs) >= self.max_streams or self._stop.is_set():
                raise TooManyStreams(
                    f"too many open streams ({self.max_streams}, streams.max_streams): try again later"
                )
            self._subs.add(sub)
            self._group(sub).add(sub)
            position = self._cursor
        try:
            yield sub, position
        finally:
            with self._lock:
                self._subs.discard(sub)
                self._group(sub).discard(sub)
                self._behind.discard(sub)

    def _group(self, sub: Subscription) -> set[Subscription]:
        if sub.kind == "changes" and sub.job is not None:
            return self._by_job.setdefault(sub.job, set())
        return self._by_kind.setdefault(sub.kind, set())

    def idle_position(self, sub: Subscription, cursor: Cursor) -> Cursor:
        """``cursor`` moved past every batch fanned out so far, if ``sub`` has nothing unread: the
        batches it was not given had nothing for it."""
        with self._lock:
            return cursor.merge(self._fanned) if sub.queue.empty() else cursor

    @property
    def open_streams(self) -> int:
        with self._lock:
            return len(self._subs)

    # -- the reader --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception:
                log.exception("stream reader failed; restarting in 1s")
                self._stop.wait(1.0)

    def _loop(self) -> None:
        events, logs, now = latest_ids(self.storage)
        if not self._ready.is_set():
            self._cursor, self._logs_max = Cursor(last=events), logs
            self._fanned = self._cursor
            self._ready.set()
        with self._waiter() as wait:
            while not self._stop.is_set():
                self._pass()
                wait()

    def _pass(self) -> None:
        events, logs, now = latest_ids(self.storage)
        woke = logs != self._logs_max
        self._logs_max = logs
        cursor = self._cursor.expire(now)
        while events > cursor.last or cursor.gaps:
            batch = read_changes(self.storage, cursor, ids_only=not self._has_watchers())
            if not batch.ids:
                break
            after = cursor.advance(batch.ids, batch.now)
            if not self._fan_out(batch, after):
                continue  # a watcher opened during an ids-only read: read the batch again, whole
            cursor = after
            woke = True
            if events <= cursor.last:
                break
        mono = time.monotonic()
        with self._lock:
            self._cursor = self._fanned = cursor
            loggers = list(self._by_kind.get("logs", ())) if woke else []
            behind = list(self._behind)
        for sub in loggers:
            sub.offer(WAKE, mono)
        for sub in behind:
            if not sub.stuck_handled and mono - sub.behind_since > STUCK_GRACE_SECONDS:
                sub.stuck_handled = True
                if sub.on_stuck is not None:
                    sub.on_stuck()

    def _has_watchers(self) -> bool:
        with self._lock:
            return self._watching()

    def _watching(self) -> bool:
        """Whether any run watcher is open (the caller holds the lock)."""
        return bool(self._by_kind.get("changes")) or any(self._by_job.values())

    def _fan_out(self, batch: ChangeBatch, after: Cursor) -> bool:
        """Hand a batch to the watchers it may concern, and move the hub's position past it, in one
        step under the lock (so idle_position never skips a batch still on its way). False, and
        nothing moved, for an ids-only batch when a watcher has opened since it was read: that
        watcher's position is before the batch, so the batch must be read with its changes."""
        mono = time.monotonic()
        jobs = {c.run.job_name for c in batch.changes if c.status is not None and c.run is not None}
        with self._lock:
            if not batch.complete and self._watching():
                return False
            candidates = [*self._by_kind.get("changes", ())]
            for job in jobs:
                candidates += self._by_job.get(job, ())
            for sub in candidates:
                sub.offer_batch(batch, mono)
                if sub.behind:
                    self._behind.add(sub)
            self._cursor = self._fanned = after
        return True

    @contextlib.contextmanager
    def _waiter(self) -> Iterator[Callable[[], None]]:
        if not self.pg_conninfo:

            def sleep() -> None:
                self._stop.wait(self.poll_seconds)

            yield sleep
            return
        import psycopg
        from psycopg.conninfo import make_conninfo

        # Keepalives and tcp_user_timeout, as on every PostgreSQL connection: a cut link fails.
        conn = psycopg.connect(make_conninfo(self.pg_conninfo, **PG_CONNECTION_ARGS), autocommit=True)
        try:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

            def wait() -> None:
                # Any notification wakes one pass; the rest that came meanwhile are drained.
                for _ in conn.notifies(timeout=self.poll_seconds, stop_after=1):
                    pass
                for _ in conn.notifies(timeout=0):
                    pass

            yield wait
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def pg_conninfo(storage: Database) -> str | None:
    """A libpq URL for a LISTEN connection on the same database as ``storage``, or None on SQLite."""
    engine = getattr(storage, "engine", None)
    if storage.dialect != "postgresql" or engine is None:
        return None
    url = engine.url.set(drivername="postgresql")
    return str(url.render_as_string(hide_password=False))


# -- what each kind of stream sends ------------------------------------------------------------------

KEEPALIVE_SECONDS = 15.0
# How often an idle stream's handler wakes by itself. A closed call wakes it at once (its inbox is
# closed by the call's callback), so this only paces keep-alives: 1,000 idle streams waking every
# second cost the supervisor several % of a core and slowed submissions.
IDLE_WAKE_SECONDS = 5.0
CATCH_UP_PAGE = 1000


def watch_runs(
    hub: StreamHub,
    start: Cursor | None,
    *,
    from_beginning: bool,
    matches: Callable[[RunChange], bool],
    is_active: Callable[[], bool],
    on_open: Callable[[Subscription], None] = lambda sub: None,
    job: str | None = None,
) -> Iterator[tuple[Cursor, RunChange | None]]:
    """(cursor after it, change) for each status change ``start`` has not seen, as they happen;
    (cursor, None) now and then as a keep-alive. Raises FellBehind when the reader lags too far."""
    with hub.subscribe("changes", matches, job) as (sub, position):
        on_open(sub)
        cursor = start if start is not None else oldest_cursor(hub.storage) if from_beginning else position
        yield cursor, None  # the starting position, so even a client that sees nothing can resume
        last_sent = time.monotonic()
        while True:  # catch up from storage; changes meanwhile wait in the inbox
            batch = read_changes(hub.storage, cursor, CATCH_UP_PAGE)
            fresh = sum(1 for i in batch.ids if i > cursor.last)
            for after, change in _deliver(cursor, batch, matches):
                last_sent = time.monotonic()
                yield after, change
            cursor = cursor.advance(batch.ids, batch.now)
            if fresh < CATCH_UP_PAGE:
                break
        while is_active():
            item = sub.get(timeout=IDLE_WAKE_SECONDS)
            if item is None:
                if sub.behind:
                    raise FellBehind(
                        "the stream fell behind (the client read too slowly); resume from the last cursor"
                    )
                raise _stopping()
            if item is WAKE:
                cursor = hub.idle_position(sub, cursor)
                if time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
                    last_sent = time.monotonic()
                    yield cursor, None
                continue
            for after, change in _deliver(cursor, item, matches):
                last_sent = time.monotonic()
                yield after, change
            cursor = cursor.advance(item.ids, item.now)


def _deliver(
    cursor: Cursor, batch: ChangeBatch, matches: Callable[[RunChange], bool]
) -> Iterator[tuple[Cursor, RunChange]]:
    """Walk a batch in id order: each unseen status change that matches, with the cursor after it."""
    for change in batch.changes:
        if not cursor.is_new(change.event_id):
            continue
        cursor = cursor.advance((change.event_id,), batch.now)
        if change.status is not None and matches(change):
            yield cursor, change


def follow_logs(
    hub: StreamHub,
    runs: RunStore,
    run_id: str,
    after_seq: int,
    is_active: Callable[[], bool],
    on_open: Callable[[Subscription], None] = lambda sub: None,
) -> Iterator[tuple[list[LogLine], RunStatus]]:
    """Batches of log lines after ``after_seq`` as they are written; the last one (possibly empty)
    has the finished status."""
    with hub.subscribe("logs") as (sub, _):
        on_open(sub)
        while is_active():
            status = runs.require(run_id).status  # before the lines: a finished run wrote them all
            while True:
                lines = runs.read_logs(run_id, after_seq=after_seq, limit=1000)
                if not lines:
                    break
                after_seq = lines[-1].seq
                yield lines, status
            if status.is_finished:
                yield [], status
                return
            if sub.get(timeout=IDLE_WAKE_SECONDS) is None:
                raise _stopping()


DAEMON_POLL_SECONDS = 0.5


def _stopping() -> Unavailable:
    """Why an open stream ends when its inbox closes: the supervisor is stopping (or the call
    ended, and then nobody hears it). Clients reconnect, to this supervisor or another."""
    return Unavailable("the supervisor is stopping; reconnect and resume from the last cursor")


def watch_daemons(
    hub: StreamHub,
    statuses: Callable[[], list[tuple[Any, Any]]],
    is_active: Callable[[], bool],
    on_open: Callable[[Subscription], None] = lambda sub: None,
) -> Iterator[tuple[Any, Any]]:
    """Every daemon's (view, heartbeat) first, then again whenever its health, state, pid,
    restarts or degradation change."""
    with hub.subscribe("daemons") as (sub, _):
        on_open(sub)
        sent: dict[str, tuple[Any, ...]] = {}
        while is_active():
            for view, beat in statuses():
                key = (view.healthy, view.state, view.pid, view.restarts, view.degraded)
                if sent.get(view.name) != key:
                    sent[view.name] = key
                    yield view, beat
            if sub.get(timeout=DAEMON_POLL_SECONDS) is None:
                raise _stopping()
