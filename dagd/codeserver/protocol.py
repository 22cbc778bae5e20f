"""The code-server wire format and its client: one JSON object per line, one request per connection.

Requests (``op``):

- ``snapshot``: the location's definitions as plain data (:class:`LocationSnapshot`);
- ``schedule``: evaluate a schedule function for one scheduled time;
- ``sensor``: evaluate a sensor function with its cursor;
- ``evaluate_many``: evaluate many schedules and sensors at once (``items``, each with a ``kind``
  and the fields of the single requests); the answers stream back in groups as they finish, one
  line per group (``{"answers": [{"index", "result"}...]}``), the last one with ``"done": true``.
  The scheduler and sensor daemons use it so that a thousand evaluations are one connection, not
  a thousand, and a slow function delays only its own answer.

Evaluations answer an :class:`Evaluation`. A request that takes longer than its ``timeout`` is
answered with an error by the server, and the client gives up a little later still, so a hung user
function fails its own tick and nothing else.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from dagd.errors import DagdError, Unavailable

MAX_LINE = 64 * 1024 * 1024


@dataclass(frozen=True)
class JobInfo:
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    resumable: bool = False
    description: str | None = None


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    cron_schedule: str
    job_name: str
    execution_timezone: str = "UTC"
    tags: dict[str, str] = field(default_factory=dict)
    default_status: str = "STOPPED"
    run_config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # a definition error (bad cron, unknown job...): it does not run


@dataclass(frozen=True)
class SensorInfo:
    name: str
    job_name: str | None
    minimum_interval_seconds: float = 30
    default_status: str = "STOPPED"
    error: str | None = None


@dataclass(frozen=True)
class LocationSnapshot:
    name: str
    generation: int  # bumps on every successful reload
    jobs: list[JobInfo] = field(default_factory=list)
    schedules: list[ScheduleInfo] = field(default_factory=list)
    sensors: list[SensorInfo] = field(default_factory=list)
    load_error: str | None = None  # the latest load failed; the definitions are the last good ones

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocationSnapshot:
        return cls(
            name=data["name"],
            generation=data["generation"],
            jobs=[JobInfo(**j) for j in data["jobs"]],
            schedules=[ScheduleInfo(**s) for s in data["schedules"]],
            sensors=[SensorInfo(**s) for s in data["sensors"]],
            load_error=data.get("load_error"),
        )

    def job(self, name: str) -> JobInfo | None:
        return next((j for j in self.jobs if j.name == name), None)


@dataclass(frozen=True)
class RunRequestData:
    job_name: str
    run_key: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    run_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    run_requests: list[RunRequestData] = field(default_factory=list)
    skip_reason: str | None = None
    cursor: str | None = None
    cursor_updated: bool = False
    error: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(
            run_requests=[RunRequestData(**r) for r in data.get("run_requests", [])],
            skip_reason=data.get("skip_reason"),
            cursor=data.get("cursor"),
            cursor_updated=bool(data.get("cursor_updated")),
            error=data.get("error"),
        )


class CodeServerError(DagdError):
    """The code server answered with an error, or could not be reached."""


class CodeServerClient:
    def __init__(self, socket_path: str, *, connect_timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.connect_timeout = connect_timeout

    def _send(self, request: dict[str, Any], read_timeout: float) -> socket.socket:
        """A connection with ``request`` sent on it (one request per connection)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.connect_timeout)
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise Unavailable(
                f"code server at {self.socket_path} is not reachable: {exc.strerror or exc}"
            ) from None
        try:
            sock.settimeout(read_timeout)
            sock.sendall(json.dumps(request).encode() + b"\n")
        except BaseException:
            sock.close()
            raise
        return sock

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        sock = self._send(request, timeout)
        try:
            reader = sock.makefile("rb")
            try:
                line = reader.readline(MAX_LINE)
            except TimeoutError:
                raise CodeServerError(f"code server did not answer within {timeout:.0f}s") from None
            if not line:
                raise CodeServerError("code server closed the connection without answering")
            response: dict[str, Any] = json.loads(line)
        finally:
            sock.close()
        if "fatal" in response:
            raise CodeServerError(response["fatal"])
        return response

    def snapshot(self, timeout: float = 10.0) -> LocationSnapshot:
        return LocationSnapshot.from_dict(self.call({"op": "snapshot"}, timeout))

    def evaluate_sensor(
        self, name: str, cursor: str | None, last_tick_at: str | None, timeout: float
    ) -> Evaluation:
        request = {
            "op": "sensor",
            "name": name,
            "cursor": cursor,
            "last_tick_at": last_tick_at,
            "timeout": timeout,
        }
        return Evaluation.from_dict(self.call(request, timeout + 5))

    def evaluate_many(
        self,
        items: list[dict[str, Any]],
        timeout: float,
        on_answers: Callable[[list[tuple[int, Evaluation]]], None],
    ) -> None:
        """Evaluate ``items`` in one request; ``on_answers([(index, evaluation)...])`` per group that arrives.

        Raises :class:`CodeServerError` (or :class:`Unavailable`) if the server goes away before
        answering every item; the items answered until then have had their ``on_answers``.
        """
        if not items:
            return
        # Some answer (a result or a timeout) arrives at least every `timeout` seconds while
        # anything is still running; a silent server for longer than that is gone.
        sock = self._send({"op": "evaluate_many", "items": items, "timeout": timeout}, timeout + 5)
        try:
            reader = sock.makefile("rb")
            while True:
                try:
                    line = reader.readline(MAX_LINE)
                except TimeoutError:
                    raise CodeServerError(f"code server did not answer within {timeout:.0f}s") from None
                if not line:
                    raise CodeServerError(
                        "code server closed the connection before answering every evaluation"
                    )
                message = json.loads(line)
                if "fatal" in message:
                    raise CodeServerError(message["fatal"])
                answers = message.get("answers") or []
                if answers:
                    on_answers([(int(a["index"]), Evaluation.from_dict(a["result"])) for a in answers])
                if message.get("done"):
                    return
        finally:
            sock.close()
