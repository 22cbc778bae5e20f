"""Issue #20, items 5 and 6: many runs in one call (SubmitRuns, ``dagctl submit --from-file``) and
typed fields a foreign client reads without parsing JSON text.

One supervisor per storage (SQLite, PostgreSQL) serves the whole module. Its queue launches
nothing (``max_concurrent_runs: 0``), so the runs the tests submit stay QUEUED and cost no
workers; each test counts only the runs of its own job tags.
"""

from __future__ import annotations

import json
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from helpers.procs import DagdProcess, assert_no_leftovers, wait_for

from dagd.client.client import Client
from dagd.errors import InvalidArgument, NotFound

DEFS = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "defs.py"
QUEUE = {
    "max_concurrent_runs": 0,
    "tag_concurrency_limits": [
        {"key": "database", "value": "redshift", "limit": 2},
        {"key": "team", "limit": 3},
        {"key": "use-case", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
    ],
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagdProcess]:
    root = tmp_path_factory.mktemp(f"batch-{request.param}")
    home = root / "home"
    home.mkdir()
    config = f"run_coordinator:\n  config: {json.dumps(QUEUE)}\n"
    schema = None
    engine: sa.Engine | None = None
    if request.param == "postgres":
        engine = request.getfixturevalue("pg_engine")
        schema = f"dagd_t_{uuid.uuid4().hex[:12]}"
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        # The session's test database (tests/conftest.py); not `import conftest`, which names
        # whichever conftest module was imported last (tests/web has its own).
        base = engine.url.render_as_string(hide_password=False)
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
        config += f"storage:\n  postgres:\n    url: '{url}'\n"
    (home / "dagd.yaml").write_text(config)
    proc = DagdProcess(home)
    try:
        proc.start("-f", str(DEFS))
        yield proc
    finally:
        proc.stop()
        assert_no_leftovers(home)
        if engine is not None and schema is not None:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def client(deployment: DagdProcess) -> Iterator[Client]:
    with Client.for_home(deployment.home) as c:
        yield c


def batch_runs(client: Client, batch: str) -> list[dict[str, Any]]:
    runs, _ = client.list_runs(tags={"batch": batch}, limit=1000)
    return runs


# -- SubmitRuns --------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_batch_stores_every_run_in_order_with_its_tags_config_and_priority(client: Client) -> None:
    batch = uuid.uuid4().hex
    entries = [
        {
            "tags": {"batch": batch, "n": str(i)},
            "run_config": {"n": i, "nested": {"x": [i]}},
            "priority": i % 5,
        }
        for i in range(300)
    ]
    runs = client.submit_many(entries, job_name="hello")
    assert [r["tags"]["n"] for r in runs] == [str(i) for i in range(300)]
    assert len({r["run_id"] for r in runs}) == 300
    assert all(r["status"] == "QUEUED" and r["job_name"] == "hello" for r in runs)
    stored = {r["run_id"]: r for r in batch_runs(client, batch)}
    assert set(stored) == {r["run_id"] for r in runs}
    for i, run in enumerate(runs):
        got = stored[run["run_id"]]
        assert got["run_config"] == {"n": i, "nested": {"x": [i]}} and got["priority"] == i % 5, got
    # The ids-only answer (for batches too big to answer in full) is in the same order.
    ids = client.submit_many([{"tags": {"batch": batch}}] * 3, job_name="hello", run_ids_only=True)
    assert len(ids) == 3 and all(isinstance(i, str) for i in ids) and len(set(ids)) == 3


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ({"job_name": "no_such_job"}, NotFound, "runs[3]: no job named 'no_such_job'"),
        ({"tags": {"": "x"}}, InvalidArgument, "runs[3]: tag key must not be empty"),
        ({"tags": {"dagd/priority": "high"}}, InvalidArgument, "runs[3]: "),
        ({"run_config_json": "[1]"}, InvalidArgument, "runs[3]: run config must be a JSON object"),
        ({"priority": 2**40}, InvalidArgument, "runs[3]: priority must be between"),
    ],
)
def test_one_bad_entry_refuses_the_whole_batch_naming_it_and_stores_nothing(
    client: Client, bad: dict[str, Any], error: type[Exception], message: str
) -> None:
    batch = uuid.uuid4().hex
    entries: list[dict[str, Any]] = [{"tags": {"batch": batch}} for _ in range(6)]
    entries[3] = {**entries[3], **bad, "tags": {"batch": batch, **bad.get("tags", {})}}
    with pytest.raises(error) as refused:
        client.submit_many(entries, job_name="hello")
    assert str(refused.value).startswith(message), refused.value
    assert refused.value.run_index == 3  # type: ignore[attr-defined]
    assert batch_runs(client, batch) == []


@pytest.mark.timeout(60)
def test_the_server_names_the_entry_in_trailing_metadata(deployment: DagdProcess, client: Client) -> None:
    """A foreign client (no dagd code) learns the index from the status: message and metadata."""
    from dagd.api.v1 import dagd_pb2 as pb
    from dagd.api.v1 import dagd_pb2_grpc as pb_grpc

    request = pb.SubmitRunsRequest(
        runs=[pb.SubmitRunRequest(job_name="hello"), pb.SubmitRunRequest(job_name="nope")]
    )
    with grpc.insecure_channel(client.address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.RunServiceStub(channel).SubmitRuns(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.details().startswith("runs[1]: no job named 'nope'")
    assert ("dagd-run-index", "1") in tuple(refused.value.trailing_metadata())


@pytest.mark.timeout(120)
def test_idempotency_keys_are_honoured_per_run(client: Client) -> None:
    batch = uuid.uuid4().hex
    k = [f"{batch}-{i}" for i in range(3)]
    earlier = client.submit("hello", tags={"batch": batch}, idempotency_key=k[0])
    entries = [
        {"tags": {"batch": batch}, "idempotency_key": k[0]},  # submitted before: that run
        {"tags": {"batch": batch}, "idempotency_key": k[1]},
        {"tags": {"batch": batch}, "idempotency_key": k[1]},  # twice in one batch: one run
        {"tags": {"batch": batch}, "idempotency_key": k[2]},
        {"tags": {"batch": batch}},
    ]
    first = [r["run_id"] for r in client.submit_many(entries, job_name="hello")]
    assert first[0] == earlier["run_id"]
    assert first[1] == first[2] and len({first[0], first[1], first[3], first[4]}) == 4
    # A client's retry of the whole batch: the keyed runs come back, only the unkeyed one is new.
    again = [r["run_id"] for r in client.submit_many(entries, job_name="hello")]
    assert again[:4] == first[:4] and again[4] != first[4]
    assert len(batch_runs(client, batch)) == 5


@pytest.mark.timeout(120)
def test_a_batch_refused_at_its_last_entry_leaves_no_keyed_run_behind(client: Client) -> None:
    """All or nothing with keys too: the good entries' keys stay free for the corrected batch."""
    batch = uuid.uuid4().hex
    entries: list[dict[str, Any]] = [
        {"tags": {"batch": batch}, "idempotency_key": f"{batch}-{i}"} for i in range(20)
    ]
    with pytest.raises(NotFound):
        client.submit_many([*entries, {"job_name": "nope"}], job_name="hello")
    assert batch_runs(client, batch) == []
    runs = client.submit_many(entries, job_name="hello")
    assert len({r["run_id"] for r in runs}) == 20 == len(batch_runs(client, batch))


# -- dagctl submit --from-file -----------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_dagctl_submit_from_file_submits_one_run_a_line(
    deployment: DagdProcess, client: Client, tmp_path: pathlib.Path
) -> None:
    batch = uuid.uuid4().hex
    path = tmp_path / "runs.jsonl"
    path.write_text(
        json.dumps({"tags": {"n": "0"}, "config": {"a": 1}})
        + "\n\n"  # blank lines are skipped
        + json.dumps({"tags": {"n": "1", "who": "line"}, "priority": 4})
        + "\n"
        + json.dumps({"idempotency_key": f"{batch}-k"})
        + "\n"
    )
    done = deployment.ctl(
        "submit", "hello", "--from-file", str(path), "--tag", f"batch={batch}", "--tag", "who=cli"
    )
    assert done.code == 0, done.stderr
    ids = done.stdout.split()
    assert len(ids) == 3
    stored = {r["run_id"]: r for r in batch_runs(client, batch)}
    assert set(stored) == set(ids)
    first, second, third = (stored[i] for i in ids)
    assert first["run_config"] == {"a": 1} and first["tags"]["who"] == "cli"
    assert second["priority"] == 4 and second["tags"]["who"] == "line"
    # Submitting the same file again: the keyed line is the same run.
    again = deployment.ctl("submit", "hello", "--from-file", str(path), "--tag", f"batch={batch}")
    assert again.code == 0 and again.stdout.split()[2] == ids[2], again


@pytest.mark.timeout(120)
def test_dagctl_submit_from_stdin_with_json_prints_the_runs(deployment: DagdProcess, client: Client) -> None:
    import os
    import subprocess

    from helpers.procs import DAGCTL

    batch = uuid.uuid4().hex
    lines = "".join(json.dumps({"tags": {"batch": batch, "n": str(i)}}) + "\n" for i in range(5))
    done = subprocess.run(
        [*DAGCTL, "submit", "hello", "--from-file", "-", "--json"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DAGD_HOME": str(deployment.home)},
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    assert [r["tags"]["n"] for r in runs] == [str(i) for i in range(5)]
    assert len(batch_runs(client, batch)) == 5


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("third_line", "expected"),
    [
        ("{not json", "line 3: not valid JSON"),
        ("[1, 2]", "line 3: expected a JSON object, got list"),
        ('{"tags": {"n": 1}}', "line 3: tags must be an object of string values"),
        ('{"colour": "red"}', "line 3: unknown field 'colour'"),
        ('{"tags": {"dagd/priority": "high"}}', "line 3: "),
        ('{"priority": "high"}', "priority must be an integer"),
    ],
)
def test_dagctl_submit_from_file_refuses_a_bad_line_in_one_line_and_stores_nothing(
    deployment: DagdProcess, client: Client, tmp_path: pathlib.Path, third_line: str, expected: str
) -> None:
    batch = uuid.uuid4().hex
    path = tmp_path / "runs.jsonl"
    good = json.dumps({"tags": {"n": "1"}})
    path.write_text(f"{good}\n{good}\n{third_line}\n{good}\n")
    refused = deployment.ctl("submit", "hello", "--from-file", str(path), "--tag", f"batch={batch}")
    assert refused.code == 2, refused
    assert refused.stdout == ""
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("dagctl: error: ") and expected in line, line
    assert batch_runs(client, batch) == []


@pytest.mark.timeout(60)
def test_dagctl_submit_from_file_refuses_an_unknown_job_and_wait(
    deployment: DagdProcess, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text("{}\n")
    unknown = deployment.ctl("submit", "nope", "--from-file", str(path))
    assert unknown.code == 5 and "line 1: no job named 'nope'" in unknown.stderr, unknown
    waiting = deployment.ctl("submit", "hello", "--from-file", str(path), "--wait")
    assert waiting.code == 2 and "--wait" in waiting.stderr, waiting
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    nothing = deployment.ctl("submit", "hello", "--from-file", str(empty))
    assert nothing.code == 2 and "no runs" in nothing.stderr, nothing


@pytest.mark.timeout(60)
def test_a_foreign_client_gives_the_run_config_typed(client: Client) -> None:
    """SubmitRunRequest.run_config (a Struct) instead of JSON text; whole numbers stay integers."""
    from google.protobuf import struct_pb2

    from dagd.api.v1 import dagd_pb2 as pb
    from dagd.api.v1 import dagd_pb2_grpc as pb_grpc

    config = struct_pb2.Struct()
    config.update({"rows": 3, "ratio": 0.5, "name": "x", "nested": {"ids": [1, 2]}})
    with grpc.insecure_channel(client.address) as channel:
        stub = pb_grpc.RunServiceStub(channel)
        run = stub.SubmitRun(pb.SubmitRunRequest(job_name="hello", run_config=config), timeout=10)
        both = pb.SubmitRunRequest(job_name="hello", run_config=config, run_config_json="{}")
        with pytest.raises(grpc.RpcError) as refused:
            stub.SubmitRun(both, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "give run_config or run_config_json, not both"
        with pytest.raises(grpc.RpcError) as refused_in_batch:
            stub.SubmitRuns(
                pb.SubmitRunsRequest(runs=[pb.SubmitRunRequest(job_name="hello"), both]), timeout=10
            )
        assert refused_in_batch.value.details().startswith("runs[1]: give run_config")
    stored, _ = client.get_run(run.run_id)
    assert stored.run_config == {"rows": 3, "ratio": 0.5, "name": "x", "nested": {"ids": [1, 2]}}
    assert isinstance(stored.run_config["rows"], int)


# -- typed fields through server reflection only ----------------------------------------------------


@pytest.mark.timeout(120)
def test_a_client_built_from_server_reflection_reads_the_typed_fields(
    deployment: DagdProcess, client: Client
) -> None:
    """Run.run_config, DaemonStatus.info and TagLimitUsage's key/value/per_unique_value, read by a
    client that has no dagd code, only what the server's reflection describes."""
    from google.protobuf import descriptor_pool, json_format, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    run = client.submit(
        "hello", tags={"batch": uuid.uuid4().hex}, run_config={"rows": 3, "name": "x", "on": True}
    )
    wait_for(
        lambda: all(d["info"] for d in client.daemon_status()["daemons"] if d["name"] == "run_queue"),
        30,
        "run_queue info",
    )

    with grpc.insecure_channel(client.address) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))

        def call(service: str, method: str, fields: dict[str, Any]) -> dict[str, Any]:
            found = pool.FindServiceByName(f"dagd.api.v1.{service}").FindMethodByName(method)
            request_class = message_factory.GetMessageClass(found.input_type)
            response_class = message_factory.GetMessageClass(found.output_type)
            rpc = channel.unary_unary(
                f"/dagd.api.v1.{service}/{method}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            answer = rpc(json_format.ParseDict(fields, request_class()), timeout=10)
            return json_format.MessageToDict(answer, descriptor_pool=pool)

        got = call("RunService", "GetRun", {"runId": run["run_id"]})["run"]
        assert got["runConfig"] == {"rows": 3, "name": "x", "on": True}

        daemons = call("DaemonService", "GetDaemonStatus", {})["daemons"]
        queue_daemon = next(d for d in daemons if d["name"] == "run_queue")
        assert isinstance(queue_daemon["info"], dict) and queue_daemon["info"], queue_daemon
        assert queue_daemon["info"] == {k: v for k, v in json.loads(queue_daemon["infoJson"]).items()}

        limits = call("QueueService", "GetQueueStatus", {})["tagLimits"]
        typed = {(u["key"], u.get("value", ""), u.get("perUniqueValue", False)) for u in limits}
        assert typed == {("database", "redshift", False), ("team", "", False), ("use-case", "", True)}, limits
