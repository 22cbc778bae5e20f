"""dagd.process_protocol: the status pipe's typed messages on the wire dagd always spoke."""

from __future__ import annotations

import io
import json

import pytest

from dagd.process_protocol import (
    UNCHANGED,
    Busy,
    Degraded,
    Forked,
    ForkFailed,
    ForkRequest,
    ForkServerReady,
    Progress,
    Started,
    StatusPipe,
    WakeRequest,
    WorkerExited,
    decode,
    decode_fork_reply,
    decode_fork_request,
    encode,
    encode_fork,
)

# (message, its line as dagd's children wrote it before the messages were typed)
WIRE = [
    (Started(41), {"started": 41}),
    (Started(41, 3), {"started": 41, "generation": 3}),
    (Progress(7), {"progress": 7}),
    (Progress(7, None), {"progress": 7, "degraded": None}),
    (Progress(7, "db down"), {"progress": 7, "degraded": "db down"}),
    (Progress(7, error="boom"), {"progress": 7, "error": "boom"}),
    (Progress(2, load_error="SyntaxError"), {"progress": 2, "load_error": "SyntaxError"}),
    (Busy(7.5), {"busy": 7.5}),
    (Busy(7.5, "db down"), {"busy": 7.5, "degraded": "db down"}),
    (Degraded("db down", 4), {"degraded": "db down", "iteration": 4}),
    (Degraded(None, 4), {"degraded": None, "iteration": 4}),
    (Degraded("db down"), {"degraded": "db down"}),
    (WakeRequest("run_queue"), {"wake": "run_queue"}),
]


@pytest.mark.parametrize(("message", "wire"), WIRE)
def test_each_message_keeps_its_wire_form_both_ways(message: object, wire: dict[str, object]) -> None:
    assert json.loads(encode(message)) == wire  # type: ignore[arg-type]
    assert decode(json.dumps(wire)) == message


def test_saying_nothing_about_degraded_is_not_saying_it_is_well() -> None:
    quiet, well = decode('{"progress": 1}'), decode('{"progress": 1, "degraded": null}')
    assert isinstance(quiet, Progress) and quiet.degraded is UNCHANGED
    assert isinstance(well, Progress) and well.degraded is None


@pytest.mark.parametrize("line", [b"", b"not json", b"[1]", b'{"progress": "x"}', b'{"other": 1}', b"\xff"])
def test_a_line_that_is_no_message_is_ignored(line: bytes) -> None:
    assert decode(line) is None


def test_the_pipe_writes_one_line_per_message_and_a_closed_pipe_never_raises() -> None:
    stream = io.StringIO()
    pipe = StatusPipe(stream)
    pipe.send(Progress(1))
    pipe.send(WakeRequest("sensor"))
    assert [decode(line) for line in stream.getvalue().splitlines()] == [Progress(1), WakeRequest("sensor")]
    stream.close()
    pipe.send(Progress(2))  # ValueError inside: swallowed, the pipe goes quiet
    StatusPipe(None).send(Progress(3))


FORK_WIRE = [
    (ForkRequest("r1", 2, "tok", "r1/2/0"), {"run_id": "r1", "attempt": 2, "token": "tok", "key": "r1/2/0"}),
    (ForkServerReady(10), {"ready": 10}),
    (Forked("r1/2/0", 11), {"launched": "r1/2/0", "pid": 11}),
    (ForkFailed("r1/2/0", "fork failed: EAGAIN"), {"error": "r1/2/0", "message": "fork failed: EAGAIN"}),
    (WorkerExited(11, -9), {"exited": 11, "code": -9}),
]


@pytest.mark.parametrize(("message", "wire"), FORK_WIRE)
def test_the_fork_servers_messages_keep_their_wire_form(message: object, wire: dict[str, object]) -> None:
    assert json.loads(encode_fork(message)) == wire  # type: ignore[arg-type]
    decode = decode_fork_request if isinstance(message, ForkRequest) else decode_fork_reply
    assert decode(json.dumps(wire)) == message


@pytest.mark.parametrize(
    "line", [b"", b"junk", b"[]", b'{"run_id": "r"}', b'{"launched": "k"}', b'{"exited": "x"}']
)
def test_a_fork_server_line_that_is_no_message_is_ignored(line: bytes) -> None:
    assert decode_fork_request(line) is None and decode_fork_reply(line) is None
