"""Fuzzing the control plane (SPEC §8): malformed requests against one live supervisor per backend.

Every method of every ``dagd.api.v1`` service (and the health check) gets random bytes, messages
with random field values (huge strings, NUL characters, unknown enum values, extreme integers) and
hand-encoded messages whose strings are not UTF-8; and its definitions file is rewritten with
broken code, which ``dagctl instance info`` must report as a one-line load error naming the file
while the last good definitions stay loaded. Whatever arrives, the supervisor must:

- answer with a fitting status code (OK, or INVALID_ARGUMENT, NOT_FOUND, ...), never UNKNOWN or
  INTERNAL, with one line of details and no traceback;
- change nothing when it refuses (no run created, none removed);
- keep serving (health SERVING and every daemon healthy after each test), and log no unexpected
  error.

The supervisor runs ``daemon run`` on PostgreSQL, the stricter backend (it refuses NUL characters
in text and integers past a column's width, where SQLite stores the one and overflows in Python
on the other), with ``max_concurrent_runs: 0`` so accepted submissions stay QUEUED and visible.
The regression tests at the end pin the bugs this suite found.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import message_factory, struct_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from helpers.procs import DagdProcess, assert_no_leftovers, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagd.api.v1 import dagd_pb2 as pb

DEFS = pathlib.Path(__file__).with_name("fuzz_defs.py")
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# Codes a refusal may carry. UNKNOWN, INTERNAL (a bug), UNIMPLEMENTED (a method that exists) and
# UNAVAILABLE (the database is up) may not.
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def fuzz(examples: int) -> settings:
    """Bounded: the whole suite stays within about a minute on a 2-core machine. For a deeper
    hunt, outside CI: ``DAGD_FUZZ_SCALE=20 pytest tests/fuzz`` runs twenty times the examples."""
    return settings(FUZZ, max_examples=examples * int(os.environ.get("DAGD_FUZZ_SCALE", "1")))


@dataclass(frozen=True)
class Method:
    path: str
    request: type[Message]
    descriptor: MethodDescriptor

    def __repr__(self) -> str:  # hypothesis prints it in a failing example
        return self.path


METHODS = [
    Method(f"/{service.full_name}/{m.name}", getattr(pb, m.input_type.name), m)
    for service in pb.DESCRIPTOR.services_by_name.values()
    for m in service.methods
]
assert len(METHODS) >= 17, [m.path for m in METHODS]
STREAMING = {m.path for m in METHODS if m.descriptor.server_streaming}
assert len(STREAMING) >= 3, STREAMING


@dataclass(frozen=True)
class Answer:
    code: grpc.StatusCode
    details: str
    body: bytes | None


class Live:
    """The running supervisor, called with raw bytes on any method path."""

    def __init__(self, proc: DagdProcess) -> None:
        self.proc = proc
        address = json.loads((proc.home / "supervisor.json").read_text())["addresses"][0]
        self.channel = grpc.insecure_channel(address)

    def call(self, path: str, data: bytes, timeout: float = 20) -> Answer:
        if path in STREAMING:
            return self._open_stream(path, data)
        method = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            return Answer(grpc.StatusCode.OK, "", method(data, timeout=timeout))
        except grpc.RpcError as exc:
            return Answer(exc.code(), exc.details() or "", None)

    def _open_stream(self, path: str, data: bytes, timeout: float = 3) -> Answer:
        """A watch: refused at once (an error), or accepted (its first message, or still open and
        quiet at the deadline: a watch with nothing to say yet is not a refusal)."""
        method = self.channel.unary_stream(path, request_serializer=None, response_deserializer=None)
        call = method(data, timeout=timeout)
        try:
            first = next(call, b"")
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return Answer(grpc.StatusCode.OK, "", b"")
            return Answer(exc.code(), exc.details() or "", None)
        finally:
            call.cancel()
        return Answer(grpc.StatusCode.OK, "", first)

    def call_ok(self, path: str, request: Message) -> bytes:
        answer = self.call(path, request.SerializeToString())
        assert answer.code == grpc.StatusCode.OK and answer.body is not None, (path, answer)
        return answer.body

    def run_ids(self) -> set[str]:
        ids: set[str] = set()
        token = ""
        while True:
            body = self.call_ok(
                "/dagd.api.v1.RunService/ListRuns", pb.ListRunsRequest(limit=1000, page_token=token)
            )
            page = pb.ListRunsResponse.FromString(body)
            ids.update(run.run_id for run in page.runs)
            token = page.next_page_token
            if not token:
                return ids

    def serving(self) -> None:
        body = self.call_ok(HEALTH_CHECK, health_pb2.HealthCheckRequest())
        assert (
            health_pb2.HealthCheckResponse.FromString(body).status == health_pb2.HealthCheckResponse.SERVING
        )

        def unhealthy() -> list[str]:
            body = self.call_ok("/dagd.api.v1.DaemonService/GetDaemonStatus", pb.GetDaemonStatusRequest())
            daemons = pb.GetDaemonStatusResponse.FromString(body).daemons
            return [f"{d.name}: {d.detail}" for d in daemons if not d.healthy]

        # Polled, not sampled once: on a loaded machine a daemon may be between two heartbeats'
        # worth of work; what must hold is that every one is (or soon is) healthy, none crashed.
        deadline = time.monotonic() + 30
        while (bad := unhealthy()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not bad, f"unhealthy daemons after fuzzing: {bad}"


@pytest.fixture(scope="module")
def live(pg_engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One supervisor for the whole module, on its own PostgreSQL schema."""
    base = tmp_path_factory.mktemp("fuzz")
    home = base / "home"
    home.mkdir()
    # A workspace over a copy of the definitions: the definitions fuzzer rewrites the copy.
    (base / "defs.py").write_text(DEFS.read_text())
    (base / "workspace.yaml").write_text("load_from:\n  - python_file: defs.py\n")
    schema = f"dagd_fuzz_{uuid.uuid4().hex[:10]}"
    with pg_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    # The session's PostgreSQL (DAGD_TEST_POSTGRES_URL), as the pg_engine fixture connected to it.
    pg = pg_engine.url.render_as_string(hide_password=False)
    url = f"{pg}{'&' if '?' in pg else '?'}options=-csearch_path%3D{schema}"
    proc = DagdProcess(home)
    proc.write_config(
        f"run_coordinator: {{config: {{max_concurrent_runs: 0}}}}\nstorage: {{postgres: {{url: '{url}'}}}}\n"
    )
    try:
        proc.start("-w", str(base / "workspace.yaml"), command=("daemon", "run"))
        server = Live(proc)
        # One accepted run, so the methods that take a run id have a real one to chew on too.
        server.call_ok("/dagd.api.v1.RunService/SubmitRun", pb.SubmitRunRequest(job_name="hello"))
        yield server
        server.channel.close()
    finally:
        proc.stop()
        assert_no_leftovers(home)
        with pg_engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(autouse=True)
def still_serving(live: Live) -> Iterator[None]:
    """After every test: the supervisor answers health and every daemon is healthy."""
    yield
    live.serving()


def check(method: str, answer: Answer) -> None:
    """A fitting code, and details that are one line without a traceback."""
    if answer.code == grpc.StatusCode.OK:
        return
    assert answer.code in REFUSALS, f"{method} answered {answer.code.name}: {answer.details!r}"
    assert answer.details, f"{method} answered {answer.code.name} without details"
    assert "\n" not in answer.details, f"{method}: details span lines: {answer.details!r}"
    assert "Traceback" not in answer.details, f"{method}: traceback in details: {answer.details!r}"


def refused_changed_nothing(live: Live, method: str, data: bytes, before: set[str]) -> Answer:
    """Send ``data``; if refused, the set of runs must be what it was."""
    answer = live.call(method, data)
    check(method, answer)
    if answer.code != grpc.StatusCode.OK:
        after = live.run_ids()
        assert after == before, f"{method} refused ({answer.details!r}) but runs changed: {after ^ before}"
    return answer


# -- strategies --------------------------------------------------------------------------------

NAMES = ["hello", "yearly", "idle", "schedule", "sensor", "scheduler", "run_queue", "QUEUED", ""]
EDGE_TEXT = ["\x00", "a\x00b", " ", "\n", "\u202e", "\U0001f4a9" * 100, "'; DROP TABLE runs; --", "%s%n"]


def strings() -> st.SearchStrategy[str]:
    huge = st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(256, 200_000))
    return st.one_of(st.sampled_from(NAMES), st.sampled_from(EDGE_TEXT), st.text(max_size=40), huge)


def integers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = INT32 if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_ENUM) else INT64
    return st.one_of(st.sampled_from([low, high, -1, 0, 1, 1000, 1001]), st.integers(low, high))


def structs() -> st.SearchStrategy[struct_pb2.Struct]:
    """A google.protobuf.Struct (a typed run config) of JSON scalars and small lists."""
    scalars = st.one_of(strings(), st.floats(allow_nan=False), st.booleans(), st.none())
    values = st.one_of(scalars, st.lists(scalars, max_size=3))

    def build(fields: dict[str, Any]) -> struct_pb2.Struct:
        out = struct_pb2.Struct()
        out.update(fields)
        return out

    return st.dictionaries(strings(), values, max_size=4).map(build)


def field_values(field: FieldDescriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return st.dictionaries(strings(), strings(), max_size=4)
    if field.message_type is not None and field.message_type.full_name == "google.protobuf.Struct":
        single: st.SearchStrategy[Any] = structs()
    elif field.message_type is not None:  # a nested request (SubmitRuns' runs): one level deep
        single = messages(message_factory.GetMessageClass(field.message_type), depth + 1)
    elif field.type == FieldDescriptor.TYPE_STRING:
        single: st.SearchStrategy[Any] = strings()
    elif field.type == FieldDescriptor.TYPE_BOOL:
        single = st.booleans()
    elif field.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        single = st.one_of(st.sampled_from(known), integers(field))
    else:
        single = integers(field)
    return st.lists(single, max_size=4) if field.is_repeated else single


@st.composite
def messages(draw: st.DrawFn, message: type[Message], depth: int = 0) -> Message:
    """A message of type ``message`` with random field values (message fields one level deep)."""
    kwargs = {}
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None and depth > 0 and not field.message_type.GetOptions().map_entry:
            continue
        if draw(st.booleans()):
            kwargs[field.name] = draw(field_values(field, depth))
    return message(**kwargs)


@st.composite
def requests(draw: st.DrawFn, method: Method) -> bytes:
    """A well-formed message of the method's request type with random field values."""
    return draw(messages(method.request)).SerializeToString()


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80"]


def invalid_utf8() -> st.SearchStrategy[bytes]:
    """Bytes that are not UTF-8: valid text around one broken sequence."""
    ascii_bytes = st.text(alphabet="abc/=-_", max_size=8).map(str.encode)
    return st.builds(lambda a, bad, b: a + bad + b, ascii_bytes, st.sampled_from(BAD_UTF8), ascii_bytes)


def string_fields(method: Method) -> list[FieldDescriptor]:
    return [f for f in method.request.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_STRING]


def map_fields(method: Method) -> list[FieldDescriptor]:
    return [
        f
        for f in method.request.DESCRIPTOR.fields
        if f.message_type is not None and f.message_type.GetOptions().map_entry
    ]


WITH_STRINGS = [m for m in METHODS if string_fields(m)]
WITH_TAGS = [m for m in METHODS if map_fields(m)]
SUBMIT = "/dagd.api.v1.RunService/SubmitRun"


# -- the fuzzers -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@fuzz(100)
@given(method=st.sampled_from([*METHODS]), data=st.binary(max_size=300))
def test_random_bytes_to_every_method(live: Live, method: Method, data: bytes) -> None:
    refused_changed_nothing(live, method.path, data, live.run_ids())


@pytest.mark.timeout(60)
@fuzz(30)
@given(data=st.binary(max_size=300))
def test_random_bytes_to_the_health_check(live: Live, data: bytes) -> None:
    check(HEALTH_CHECK, live.call(HEALTH_CHECK, data))


@pytest.mark.timeout(120)
@fuzz(100)
@given(st.data())
def test_random_field_values_in_every_request(live: Live, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(METHODS))
    payload = data.draw(requests(method), label="request")
    before = live.run_ids()
    answer = refused_changed_nothing(live, method.path, payload, before)
    if method.path == SUBMIT and answer.code == grpc.StatusCode.OK:
        assert answer.body is not None
        assert pb.Run.FromString(answer.body).run_id in live.run_ids() - before


@pytest.mark.timeout(60)
@fuzz(40)
@given(st.data())
def test_invalid_utf8_in_tag_keys_and_values(live: Live, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(WITH_TAGS))
    field = data.draw(st.sampled_from(map_fields(method)))
    bad = data.draw(invalid_utf8(), label="bad")
    good = data.draw(st.text(alphabet="xyz", min_size=1, max_size=5)).encode()
    key, value = data.draw(st.sampled_from([(bad, good), (good, bad), (bad, bad)]))
    entry = length_delimited(1, key) + length_delimited(2, value)
    # A valid job name and status first, so only the tag can be what is refused.
    prefix = length_delimited(1, b"hello") if method.path == SUBMIT else b""
    if method.path.endswith("/TerminateRuns"):
        prefix = varint(1 << 3 | 0) + varint(pb.QUEUED)
    before = live.run_ids()
    answer = refused_changed_nothing(
        live, method.path, prefix + length_delimited(field.number, entry), before
    )
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, (method, answer)
    assert "UTF-8" in answer.details, answer.details


@pytest.mark.timeout(60)
@fuzz(40)
@given(st.data())
def test_invalid_utf8_in_any_string_field(live: Live, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(WITH_STRINGS))
    field = data.draw(st.sampled_from(string_fields(method)))
    bad = data.draw(invalid_utf8(), label="bad")
    answer = refused_changed_nothing(live, method.path, length_delimited(field.number, bad), live.run_ids())
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, (method, field.name, answer)


# Each field's limit (dagd/supervisor/control.py), and gRPC's 4 MiB message limit over all.
FIELD_LIMITS = {
    "job_name": 255, "tag_key": 255, "tag_value": 4096, "run_config_json": 1 << 20, "idempotency_key": 255,
    "tags": 100,
}  # fmt: skip
MAX_MESSAGE = 4 * 1024 * 1024


@pytest.mark.timeout(90)
@fuzz(10)
@given(
    field=st.sampled_from(sorted(FIELD_LIMITS)),
    size=st.sampled_from([5_000, 1_100_000, 3_000_000, 6_000_000]),
)
def test_huge_fields_in_a_submission(live: Live, field: str, size: int) -> None:
    request = pb.SubmitRunRequest(job_name="hello")
    if field == "job_name":
        request.job_name = "h" * size
    elif field == "tag_key":
        request.tags["k" * size] = "v"
    elif field == "tag_value":
        request.tags["k"] = "v" * size
    elif field == "run_config_json":
        request.run_config_json = json.dumps({"x": "y" * size})
    elif field == "idempotency_key":
        request.idempotency_key = "i" * size
    else:
        for i in range(min(size, 20_000)):
            request.tags[f"t{i}"] = "v"
    data = request.SerializeToString()
    answer = refused_changed_nothing(live, SUBMIT, data, live.run_ids())
    if len(data) > MAX_MESSAGE:
        assert answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED, answer
    elif (min(size, 20_000) if field == "tags" else size) > FIELD_LIMITS[field]:
        assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, answer
        assert (
            "longer than" in answer.details or "larger than" in answer.details or "too many" in answer.details
        )
    else:
        assert answer.code == grpc.StatusCode.OK, answer


@pytest.mark.timeout(90)
@fuzz(60)
@given(
    limit=st.integers(*INT32),
    after_seq=st.integers(*INT64),
    count=st.integers(*INT32),
    which=st.sampled_from(["runs", "logs", "ticks", "preview"]),
)
def test_negative_and_huge_limits(live: Live, limit: int, after_seq: int, count: int, which: str) -> None:
    run_id = sorted(live.run_ids())[0]
    if which == "runs":
        body = live.call_ok("/dagd.api.v1.RunService/ListRuns", pb.ListRunsRequest(limit=limit))
        assert len(pb.ListRunsResponse.FromString(body).runs) <= 1000
    elif which == "logs":
        request = pb.ReadRunLogsRequest(run_id=run_id, after_seq=after_seq, limit=limit)
        body = live.call_ok("/dagd.api.v1.RunService/ReadRunLogs", request)
        assert len(pb.ReadRunLogsResponse.FromString(body).lines) <= 10_000
    elif which == "ticks":
        request_ticks = pb.ListTicksRequest(kind="schedule", name="yearly", limit=limit)
        body = live.call_ok("/dagd.api.v1.InstigatorService/ListTicks", request_ticks)
        assert len(pb.ListTicksResponse.FromString(body).ticks) <= 1000
    else:
        request_preview = pb.PreviewScheduleRequest(name="yearly", count=count)
        body = live.call_ok("/dagd.api.v1.InstigatorService/PreviewSchedule", request_preview)
        assert 1 <= len(pb.PreviewScheduleResponse.FromString(body).ticks_utc) <= 1000


@pytest.mark.timeout(60)
@fuzz(40)
@given(
    statuses=st.lists(st.integers(*INT32), min_size=1, max_size=5),
    which=st.sampled_from(["ListRuns", "TerminateRuns"]),
)
def test_unknown_enum_values(live: Live, statuses: list[int], which: str) -> None:
    known = set(pb.RunStatus.values()) - {pb.RUN_STATUS_UNSPECIFIED}
    request_cls = pb.ListRunsRequest if which == "ListRuns" else pb.TerminateRunsRequest
    # No job matches, so an accepted TerminateRuns cancels nothing.
    payload = request_cls(statuses=statuses, job_name="no-such-job").SerializeToString()
    answer = refused_changed_nothing(live, f"/dagd.api.v1.RunService/{which}", payload, live.run_ids())
    if set(statuses) <= known:
        assert answer.code == grpc.StatusCode.OK, answer
    else:
        assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, answer
        bad = next(s for s in statuses if s not in known)
        assert str(bad) in answer.details


# -- broken definitions files ------------------------------------------------------------------

BROKEN_CODE = {
    "syntax": "def broken(:\n",
    "raises": "raise RuntimeError('broken on purpose')\n",
    "multi-line-message": "raise ValueError('first line\\nsecond line\\n  Traceback (not really)')\n",
    "system-exit": "raise SystemExit(3)\n",
    "keyboard-interrupt": "raise KeyboardInterrupt\n",
    "base-exception": "class Odd(BaseException):\n    pass\n\n\nraise Odd('odd')\n",
    "missing-import": "import no_such_module_for_dagd_fuzz\n",
    "no-definitions": "x = 1\n",
    "two-definitions": "from dagd import Definitions\n\na = Definitions()\nb = Definitions()\n",
    "null-byte": "x = 1\x00\n",
    "bad-priority": "from dagd import job\n\n\n@job(tags={'dagd/priority': '1' * 30})\ndef j(context):\n    pass\n",
    "recursion": "def f():\n    return f()\n\n\nf()\n",
}


def location(live: Live) -> pb.CodeLocation:
    """The code location as the API reports it (polled over gRPC: a dagctl per poll is slow)."""
    body = live.call_ok("/dagd.api.v1.InstanceService/GetInstanceInfo", pb.GetInstanceInfoRequest())
    return pb.InstanceInfo.FromString(body).code_locations[0]


@pytest.mark.timeout(150)
@fuzz(3)
@given(kind=st.sampled_from(sorted(BROKEN_CODE)))
def test_broken_definitions_file_reports_one_line(live: Live, kind: str) -> None:
    defs = live.proc.home.parent / "defs.py"
    good = DEFS.read_text()

    def located(ready: Any) -> Any:
        return lambda: (lambda loc: loc if ready(loc) else None)(location(live))

    before = wait_for(located(lambda loc: loc.server_healthy), 30, "a healthy code server")
    defs.write_text(BROKEN_CODE[kind])
    try:
        broken = wait_for(located(lambda loc: loc.load_error), 20, f"a load error for {kind}")
        error = broken.load_error
        assert "\n" not in error and "Traceback (most recent" not in error, error
        assert error.startswith(str(defs)), error
        assert list(broken.jobs) == list(before.jobs), "the last good definitions must be kept"
        assert broken.server_healthy, broken
        # And what a user sees: `dagctl instance info` shows it on one line, exit 0.
        shown = live.proc.ctl("instance", "info")
        assert shown.code == 0, shown.stderr
        assert any(error in line for line in shown.stdout.splitlines()), shown.stdout
    finally:
        defs.write_text(good)
        wait_for(located(lambda loc: not loc.load_error and loc.server_healthy), 30, "recovery")


# -- regressions: bugs this suite found ----------------------------------------------------------


def refused(live: Live, path: str, request: Message | bytes) -> str:
    """Send a bad request that must be refused INVALID_ARGUMENT without any change; the details."""
    data = request if isinstance(request, bytes) else request.SerializeToString()
    before = live.run_ids()
    answer = refused_changed_nothing(live, path, data, before)
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, (path, answer)
    return answer.details


@pytest.mark.timeout(30)
def test_regression_corrupt_protobuf_is_invalid_argument_not_internal(live: Live) -> None:
    # Was: INTERNAL "Exception deserializing request!" and a traceback in the supervisor's log.
    for method in METHODS:
        details = refused(live, method.path, b"\xff\xff\xff\xff")
        assert details.startswith("malformed request"), details


@pytest.mark.timeout(30)
def test_regression_invalid_utf8_tag_is_invalid_argument_not_internal(live: Live) -> None:
    entry = length_delimited(1, b"\xc3\x28") + length_delimited(2, b"v")
    details = refused(live, SUBMIT, length_delimited(1, b"hello") + length_delimited(2, entry))
    assert "UTF-8" in details


@pytest.mark.timeout(30)
def test_regression_nul_character_is_invalid_argument_not_database_error(live: Live) -> None:
    # Was (PostgreSQL): INTERNAL "internal error: DataError"; SQLite stored the NUL.
    cases: list[tuple[str, Message, str]] = [
        (SUBMIT, pb.SubmitRunRequest(job_name="hello", tags={"k\x00": "v"}), "tags"),
        (SUBMIT, pb.SubmitRunRequest(job_name="hello", tags={"k": "v\x00"}), "tags['k']"),
        (SUBMIT, pb.SubmitRunRequest(job_name="hello", idempotency_key="\x00"), "idempotency_key"),
        ("/dagd.api.v1.RunService/GetRun", pb.GetRunRequest(run_id="\x00"), "run_id"),
        ("/dagd.api.v1.RunService/ListRuns", pb.ListRunsRequest(job_name="a\x00"), "job_name"),
        ("/dagd.api.v1.RunService/TerminateRuns", pb.TerminateRunsRequest(statuses=[1], tags={"\x00": ""}), "tags"),
    ]  # fmt: skip
    for path, request, field in cases:
        details = refused(live, path, request)
        assert details.startswith(field) and "NUL" in details, details


@pytest.mark.timeout(30)
def test_regression_out_of_range_priority_is_invalid_argument_not_overflow(live: Live) -> None:
    # Was: INTERNAL "internal error: OverflowError" (SQLite) / "DataError" (PostgreSQL's int4).
    for request in (
        pb.SubmitRunRequest(job_name="hello", priority=2**31),
        pb.SubmitRunRequest(job_name="hello", priority=-(2**63)),
        pb.SubmitRunRequest(job_name="hello", tags={"dagd/priority": "9" * 30}),
    ):
        assert "dagd/priority must be between" in refused(live, SUBMIT, request)
    body = live.call_ok(SUBMIT, pb.SubmitRunRequest(job_name="hello", priority=2**31 - 1))
    assert pb.Run.FromString(body).priority == 2**31 - 1


@pytest.mark.timeout(30)
def test_regression_huge_page_token_is_invalid_argument_not_overflow(live: Live) -> None:
    # Was: INTERNAL "internal error: OverflowError" (SQLite) / "DataError" (PostgreSQL).
    for token in ("9" * 40, str(2**63), str(2**31), "-9"):
        details = refused(live, "/dagd.api.v1.RunService/ListRuns", pb.ListRunsRequest(page_token=token))
        assert "invalid page token" in details


@pytest.mark.timeout(30)
def test_regression_huge_log_cursor_is_an_empty_page_not_database_error(live: Live) -> None:
    # Was (PostgreSQL): INTERNAL "internal error: DataError" for after_seq past run_logs.id's int4.
    run_id = sorted(live.run_ids())[0]
    for after_seq in (2**31, 2**63 - 1):
        request = pb.ReadRunLogsRequest(run_id=run_id, after_seq=after_seq)
        body = live.call_ok("/dagd.api.v1.RunService/ReadRunLogs", request)
        assert not pb.ReadRunLogsResponse.FromString(body).lines


@pytest.mark.timeout(30)
def test_regression_deeply_nested_run_config_is_invalid_argument_not_recursion_error(live: Live) -> None:
    # Was: INTERNAL "internal error: RecursionError".
    nested = "[" * 100_000 + "]" * 100_000
    details = refused(live, SUBMIT, pb.SubmitRunRequest(job_name="hello", run_config_json=nested))
    assert "nested too deeply" in details


@pytest.mark.timeout(30)
def test_regression_huge_number_in_run_config_is_invalid_argument_not_internal(live: Live) -> None:
    # Was: INTERNAL "internal error: ValueError" (Python's limit on integer digits in json.loads).
    for config in ("1" * 5000, '{"a": ' + "9" * 5000 + "}"):
        request = pb.SubmitRunRequest(job_name="hello", run_config_json=config)
        assert "a number is too long" in refused(live, SUBMIT, request)


@pytest.mark.timeout(30)
def test_regression_nan_in_run_config_is_invalid_argument(live: Live) -> None:
    # Was: accepted, and `runs show --json` then printed a bare NaN that strict JSON parsers reject.
    before = live.run_ids()
    for config in ('{"a": NaN}', '{"a": [Infinity]}', '{"a": -Infinity}'):
        request = pb.SubmitRunRequest(job_name="hello", run_config_json=config)
        assert "is not allowed (JSON has no NaN or Infinity)" in refused(live, SUBMIT, request)
    assert live.run_ids() == before


@pytest.mark.timeout(30)
def test_supervisor_logged_no_unexpected_error(live: Live) -> None:
    """Last: nothing above made the supervisor log a traceback (a servicer bug or a parser failure)."""
    log = (live.proc.home.parent / "supervisor.log").read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
    assert "unexpected error" not in log
