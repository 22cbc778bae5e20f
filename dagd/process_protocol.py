"""The protocol between the supervisor and each child it execs (daemons, code servers).

One home for what the two ends say to each other, written once:

- **stdin, parent -> child**: a daemon's first line is the config the supervisor validated
  (:mod:`dagd.instance.handoff`, read by :func:`read_config_line`); after it, each byte ``w``
  (:data:`WAKE`) wakes the child's loop early. **EOF means the parent died** (even by SIGKILL: the
  kernel closes its end): :func:`watch_parent_eof` exits the child at once, so no orphans.
- **stdout, child -> parent**: the *status pipe*, one JSON object per line, typed here as
  :class:`Started`, :class:`Progress`, :class:`Busy`, :class:`Degraded` and :class:`WakeRequest`.
  :func:`encode` and :func:`decode` are the only places that know the wire keys, so the supervisor
  acts on the kind of message instead of guessing from which keys a dict has.

The wire format is the one dagd always spoke (``{"progress": 3}``, ``{"busy": 7.0, "degraded":
null}``...): a child and a supervisor of different versions still understand each other.
The local launcher and its fork server speak over the same kind of pipes; their messages are here
too (:class:`ForkRequest` one way; :class:`ForkServerReady`, :class:`Forked`, :class:`ForkFailed`,
:class:`WorkerExited` the other).

This module is at the bottom of the layers: it imports nothing from dagd.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

log = logging.getLogger("dagd.daemon")

WAKE = b"w"  # parent -> child on stdin, after the config line: wake the loop now


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED  # a message that says nothing about degraded leaves it as it was


@dataclass(frozen=True)
class Started:
    """The child is up (its first message, like systemd's ``READY=1``)."""

    pid: int
    generation: int | None = None  # a code server: the generation of its definitions
    degraded: str | None | _Unchanged = UNCHANGED


@dataclass(frozen=True)
class Progress:
    """The child's loop moved: ``count`` is a daemon's iteration or a code server's generation.

    ``degraded`` is the storage outage the daemon is in (None: none), or UNCHANGED when it says
    nothing about it. ``error``: the iteration failed (recorded, not a hang); ``load_error``: a code
    server's definitions do not load (the last good ones are kept)."""

    count: int
    degraded: str | None | _Unchanged = UNCHANGED
    error: str | None = None
    load_error: str | None = None


@dataclass(frozen=True)
class Busy:
    """The loop is about to block for at most ``seconds`` (a call with its own bound): progress now,
    and silence until then is no hang."""

    seconds: float
    degraded: str | None | _Unchanged = UNCHANGED


@dataclass(frozen=True)
class Degraded:
    """Storage is unreachable (``reason``) or reachable again (None): an outage, not a hang."""

    reason: str | None
    count: int | None = None

    @property
    def degraded(self) -> str | None:
        return self.reason


@dataclass(frozen=True)
class WakeRequest:
    """Wake another daemon (e.g. the run queue after a submission). Any of the child's threads may
    send it, so it is no sign that the child's loop moves."""

    daemon: str


StatusMessage = Started | Progress | Busy | Degraded | WakeRequest


def _put_degraded(out: dict[str, Any], degraded: str | None | _Unchanged) -> None:
    if degraded is not UNCHANGED:
        out["degraded"] = degraded


def encode(message: StatusMessage) -> str:
    """One line of the status pipe (without the newline)."""
    out: dict[str, Any]
    if isinstance(message, Started):
        out = {"started": message.pid}
        if message.generation is not None:
            out["generation"] = message.generation
        _put_degraded(out, message.degraded)
    elif isinstance(message, Progress):
        out = {"progress": message.count}
        _put_degraded(out, message.degraded)
        if message.error is not None:
            out["error"] = message.error
        if message.load_error is not None:
            out["load_error"] = message.load_error
    elif isinstance(message, Busy):
        out = {"busy": message.seconds}
        _put_degraded(out, message.degraded)
    elif isinstance(message, Degraded):
        out = {"degraded": message.reason}
        if message.count is not None:
            out["iteration"] = message.count
    else:
        out = {"wake": message.daemon}
    return json.dumps(out)


def decode(raw: bytes | str) -> StatusMessage | None:
    """The message of one status-pipe line; None for a line that is not one (ignored)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    degraded = data["degraded"] if "degraded" in data else UNCHANGED
    if degraded is not UNCHANGED and degraded is not None:
        degraded = str(degraded)
    try:
        if "wake" in data:
            return WakeRequest(str(data["wake"]))
        if "started" in data:
            generation = data.get("generation")
            return Started(int(data["started"]), None if generation is None else int(generation), degraded)
        if "busy" in data:
            return Busy(float(data["busy"]), degraded)
        if "progress" in data:
            error, load_error = data.get("error"), data.get("load_error")
            return Progress(
                int(data["progress"]),
                degraded,
                None if error is None else str(error),
                None if load_error is None else str(load_error),
            )
        if "degraded" in data:
            iteration = data.get("iteration")
            return Degraded(
                None if data["degraded"] is None else str(data["degraded"]),
                None if iteration is None else int(iteration),
            )
    except (TypeError, ValueError):
        return None
    return None


class StatusPipe:
    """The child's end of the status pipe. Never blocks the loop for long, never raises: a parent
    that is gone is the stdin watcher's business."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: StatusMessage) -> None:
        if self._stream is None:
            return
        with self._lock:
            try:
                self._stream.write(encode(message) + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                self._stream = None


def watch_parent_eof(
    on_byte: Callable[[bytes], None] | None = None, on_eof: Callable[[], None] | None = None
) -> None:
    """In a background thread: exit when stdin hits EOF (the supervisor is gone); hand any bytes
    read (wake-ups, :data:`WAKE`) to ``on_byte``. With ``on_eof``, call it instead of exiting at
    once (the web UI stops its server and unpublishes its URL)."""

    def watch() -> None:
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            fd = -1  # no stdin at all: read as EOF below
        while True:
            try:
                data = os.read(fd, 512)
            except OSError:
                data = b""
            if not data:
                if on_eof is not None:
                    on_eof()
                    return
                log.warning("supervisor gone (stdin closed): exiting")
                os._exit(0)
            if on_byte is not None:
                on_byte(data)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def read_config_line(fd: int = 0) -> bytes:
    """The first line of stdin: the config the supervisor validated (:mod:`dagd.instance.handoff`).

    The supervisor writes it right after the spawn, before any wake-up, so nothing after the
    newline can be lost. EOF first means the supervisor is already gone: exit like the watcher.
    """
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 65536)
        if not chunk:
            log.warning("supervisor gone (stdin closed) before sending the config: exiting")
            os._exit(0)
        data += chunk
    return data.partition(b"\n")[0]


# -- the fork server (dagd/runs/local/forkserver.py) and its launcher's end ----------------------
#
# The same pipes: the launcher writes one ForkRequest per line to the fork server's stdin (EOF: the
# launcher is gone, the server exits and its workers carry on); the server answers on its stdout.


@dataclass(frozen=True)
class ForkRequest:
    """Fork a worker for attempt ``attempt`` of ``run_id``; ``key`` matches the answer to it."""

    run_id: str
    attempt: int
    token: str
    key: str


@dataclass(frozen=True)
class ForkServerReady:
    pid: int


@dataclass(frozen=True)
class Forked:
    key: str
    pid: int


@dataclass(frozen=True)
class ForkFailed:
    key: str
    message: str


@dataclass(frozen=True)
class WorkerExited:
    """A worker the server forked ended (the run queue may look again)."""

    pid: int
    code: int


ForkServerMessage = ForkServerReady | Forked | ForkFailed | WorkerExited


def encode_fork(message: ForkRequest | ForkServerMessage) -> str:
    """One line between the launcher and its fork server (without the newline)."""
    out: dict[str, Any]
    if isinstance(message, ForkRequest):
        out = {
            "run_id": message.run_id,
            "attempt": message.attempt,
            "token": message.token,
            "key": message.key,
        }
    elif isinstance(message, ForkServerReady):
        out = {"ready": message.pid}
    elif isinstance(message, Forked):
        out = {"launched": message.key, "pid": message.pid}
    elif isinstance(message, ForkFailed):
        out = {"error": message.key, "message": message.message}
    else:
        out = {"exited": message.pid, "code": message.code}
    return json.dumps(out)


def _object(raw: bytes | str) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def decode_fork_request(raw: bytes | str) -> ForkRequest | None:
    data = _object(raw)
    try:
        if data is not None:
            return ForkRequest(
                str(data["run_id"]), int(data["attempt"]), str(data["token"]), str(data["key"])
            )
    except (KeyError, TypeError, ValueError):
        pass
    return None


def decode_fork_reply(raw: bytes | str) -> ForkServerMessage | None:
    data = _object(raw)
    if data is None:
        return None
    try:
        if "ready" in data:
            return ForkServerReady(int(data["ready"]))
        if "launched" in data:
            return Forked(str(data["launched"]), int(data["pid"]))
        if "error" in data:
            return ForkFailed(str(data["error"]), str(data.get("message", "fork server error")))
        if "exited" in data:
            return WorkerExited(int(data["exited"]), int(data["code"]))
    except (KeyError, TypeError, ValueError):
        pass
    return None
