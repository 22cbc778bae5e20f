"""Issue 18, "the first hour": what a new user trips over, end to end with real ``dagctl`` processes.

Most tests share one ``dagctl dev`` (module scope) that also listens on TCP with a token; each sets
up what it asserts on. The tests that need a start or a stop of their own (a broken code location,
Ctrl-C, a second UI on a taken port, a missing module) start their own processes.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import stat
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from helpers.procs import DAGCTL, DagdProcess, assert_no_leftovers, dagctl, wait_for

from dagd.api.v1 import dagd_pb2 as pb
from dagd.runs.model import RunStatus
from dagd.storage import open_storage
from dagd.storage.runs import NewRun

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"
TOKEN = "first-hour-t0ken"
DEFS = f"""
import sys
sys.path.insert(0, {str(FIXTURES)!r})
from defs import fails, hello, sleeper
from dagd import Definitions, schedule


@schedule(cron_schedule="0 9 * * *", job=hello, execution_timezone="Europe/Paris")
def paris_morning(context):
    return None


defs = Definitions(jobs=[hello, fails, sleeper], schedules=[paris_morning])
"""
BAD_CRON = """
from dagd import Definitions, job, schedule


@job
def other(context):
    pass


@schedule(cron_schedule="61 * * * *", job=other)
def every_61st_minute(context):
    return None


defs = Definitions(jobs=[other], schedules=[every_61st_minute])
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagdProcess]:
    base = tmp_path_factory.mktemp("first-hour")
    home = base / "home"
    home.mkdir(mode=0o755)  # looser than dagd wants: it must warn, and still keep its own files private
    home.chmod(0o755)
    defs = base / "first_hour_defs.py"
    defs.write_text(DEFS)
    proc = DagdProcess(home)
    proc.write_config(f"grpc:\n  tcp: {{host: 127.0.0.1, port: 0}}\n  token: {TOKEN}\n")
    proc.start("-f", str(defs))
    yield proc
    proc.stop()
    assert_no_leftovers(home)


def ok(result: Any, what: str) -> Any:
    assert result.code == 0, f"{what}: exit {result.code}: {result.stderr}"
    return result


def run_status(dagd: DagdProcess, run_id: str) -> str:
    from dagd.client.client import Client

    with Client.for_home(dagd.home) as client:
        return str(client.get_run(run_id)[0]["status"])


def finished(dagd: DagdProcess, run_id: str) -> str:
    return wait_for(
        lambda: (s := run_status(dagd, run_id)) in ("SUCCESS", "FAILURE", "CANCELED") and s,
        30,
        f"{run_id} to end",
    )


def one_error_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


# -- 1. run ids you can paste ----------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_run_ids_are_never_cut_and_a_unique_prefix_names_a_run(deployment: DagdProcess) -> None:
    run_id = ok(deployment.ctl("submit", "hello"), "submit").stdout.strip()
    assert finished(deployment, run_id) == "SUCCESS"

    # An 80-column terminal and a pipe: the whole id, every time.
    narrow = ok(dagctl(deployment.home, "runs", "list", env={"COLUMNS": "80"}), "runs list (80 columns)")
    assert any(line.startswith(run_id) for line in narrow.stdout.splitlines()), narrow.stdout
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines()), narrow.stdout
    piped = ok(deployment.ctl("runs", "list"), "runs list | ...")
    assert run_id in [line.split()[0] for line in piped.stdout.splitlines()[1:]], piped.stdout

    # The README's flow: list, then paste the start of an id.
    shown = ok(deployment.ctl("runs", "show", run_id[:6], "--json"), "runs show PREFIX").json()
    assert shown["run_id"] == run_id
    logs = ok(deployment.ctl("runs", "logs", run_id[:8]), "runs logs PREFIX").stdout
    assert f"hello from the test job {run_id}" in logs
    assert run_id in ok(deployment.ctl("runs", "why", run_id[:10]), "runs why PREFIX").stdout

    short = deployment.ctl("runs", "show", run_id[:5])
    assert short.code == 2, short
    assert "too short" in one_error_line(short) and "at least 6 characters" in short.stderr

    # Two stored runs that share a prefix (written straight into the instance's database).
    storage = open_storage(f"sqlite:///{deployment.home}/storage/dagd.db")
    twins = ["fedcba01-0000-4000-8000-000000000001", "fedcba02-0000-4000-8000-000000000002"]
    try:
        for twin in twins:
            new = NewRun(
                job_name="hello", tags={}, run_config={}, priority=0, status=RunStatus.CANCELED, run_id=twin
            )
            storage.runs.create(new)
    finally:
        storage.dispose()
    ambiguous = deployment.ctl("runs", "show", "fedcba")
    assert ambiguous.code == 2, ambiguous
    line = one_error_line(ambiguous)
    assert "ambiguous" in line and all(twin in line for twin in twins), line
    assert ok(deployment.ctl("runs", "show", "fedcba02", "--json"), "runs show").json()["run_id"] == twins[1]


# -- 10. submit --wait -------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_submit_wait_prints_the_id_first_and_exits_with_the_runs_outcome(deployment: DagdProcess) -> None:
    success = deployment.ctl("submit", "hello", "--wait")
    assert success.code == 0, success
    (run_id,) = success.stdout.split()  # stdout: the id alone; the outcome goes to stderr
    assert run_status(deployment, run_id) == "SUCCESS" and "SUCCESS" in success.stderr

    failure = deployment.ctl("submit", "fails", "--wait")
    assert failure.code == 1, failure
    assert "FAILURE" in failure.stderr and "the job failed on purpose" in failure.stderr

    waiting = subprocess.Popen(
        [*DAGCTL, "submit", "sleeper", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DAGD_HOME": str(deployment.home)}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert waiting.stdout is not None
        sleeping = waiting.stdout.readline().strip()  # printed first, while the run goes on
        wait_for(lambda: run_status(deployment, sleeping) == "STARTED", 30, "the sleeper to start")
        ok(deployment.ctl("runs", "terminate", sleeping), "runs terminate")
        assert waiting.wait(timeout=30) == 6, waiting.stderr.read() if waiting.stderr else ""
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(timeout=5)


# -- 5. files are private ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_what_dagd_writes_under_its_home_is_owner_only(deployment: DagdProcess) -> None:
    run_id = ok(deployment.ctl("submit", "hello", "--wait"), "submit --wait").stdout.strip()
    home = deployment.home
    assert (home / "storage" / "dagd.db").is_file() and (home / "logs" / "runs" / f"{run_id}.log").is_file()
    loose = []
    for path in home.rglob("*"):
        if path == home / "dagd.yaml":  # written by this test, not by dagd
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            loose.append(f"{path.relative_to(home)} {mode:o}")
    assert not loose, loose
    assert "is accessible to other users (mode 755)" in deployment.log()


# -- 11. small contradictions --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_runs_why_on_a_paused_queue_says_the_pause_blocks_it(deployment: DagdProcess) -> None:
    ok(deployment.ctl("queue", "pause"), "queue pause")
    try:
        run_id = ok(deployment.ctl("submit", "hello"), "submit").stdout.strip()
        why = ok(deployment.ctl("runs", "why", run_id), "runs why").stdout
        assert "blocked: the queue is paused" in why and "nothing blocks it" not in why, why
    finally:
        ok(deployment.ctl("queue", "resume"), "queue resume")
    assert finished(deployment, run_id) == "SUCCESS"


@pytest.mark.timeout(30)
def test_schedules_preview_prints_each_time_once(deployment: DagdProcess) -> None:
    lines = ok(deployment.ctl("schedules", "preview", "paris_morning", "--count", "3"), "preview").stdout
    times = lines.split()
    assert len(times) == 3 and len(lines.splitlines()) == 3, lines
    assert all(t.endswith(("T09:00:00+01:00", "T09:00:00+02:00")) for t in times), lines


# -- 8. gRPC manners -----------------------------------------------------------------------------------


def tcp_address(dagd: DagdProcess) -> str:
    addresses = json.loads((dagd.home / "supervisor.json").read_text())["addresses"]
    return str(next(a for a in addresses if not a.startswith("unix:")))


@pytest.mark.timeout(30)
def test_the_bearer_scheme_is_case_insensitive_and_a_bad_token_is_exit_1(deployment: DagdProcess) -> None:
    address = tcp_address(deployment)
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/dagd.api.v1.DaemonService/GetDaemonStatus",
            request_serializer=pb.GetDaemonStatusRequest.SerializeToString,
            response_deserializer=pb.GetDaemonStatusResponse.FromString,
        )
        for scheme in ("Bearer", "bearer", "BEARER"):
            answer = call(
                pb.GetDaemonStatusRequest(), metadata=[("authorization", f"{scheme} {TOKEN}")], timeout=10
            )
            assert len(answer.daemons) == 4, scheme
        with pytest.raises(grpc.RpcError) as refused:
            call(pb.GetDaemonStatusRequest(), metadata=[("authorization", "bearer wrong")], timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    bad = dagctl(deployment.home, "--address", address, "--token", "wrong", "daemons", "status")
    assert bad.code == 1 and "invalid bearer token" in one_error_line(bad), bad


@pytest.mark.timeout(30)
def test_server_reflection_answers_v1_as_well_as_v1alpha(deployment: DagdProcess) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(tcp_address(deployment)) as channel:
        for version in ("v1", "v1alpha"):
            call = channel.stream_stream(
                f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            (answer,) = list(
                call(iter([request]), metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
            )
            names = {s.name for s in answer.list_services_response.service}
            assert {"dagd.api.v1.RunService", "grpc.reflection.v1.ServerReflection"} <= names, (
                version,
                names,
            )


# -- 2, 6, 9. a location that never loaded; quiet stops -----------------------------------------------


@pytest.mark.timeout(120)
def test_a_bad_cron_refuses_its_location_at_load_and_a_clean_stop_is_quiet(
    dagd: DagdProcess, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "bad_cron.py").write_text(BAD_CRON)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_file: {FIXTURES / 'defs.py'}\n  - python_file: bad_cron.py\n"
    )
    dagd.start("-w", str(workspace))

    # Said at start, on the console.
    assert "code location bad_cron did not load" in dagd.log() and "minute must be 0-59" in dagd.log()
    # And in instance info: not "ok", not "last good definitions kept" (there never were any).
    info = ok(dagd.ctl("instance", "info"), "instance info").stdout
    (line,) = [x for x in info.splitlines() if "code location" in x and "bad_cron" in x]
    assert "NOT LOADED" in line and "ok" not in line, info
    assert "load error (nothing loaded): " in info and "schedule every_61st_minute" in info, info
    loc = next(
        x
        for x in ok(dagd.ctl("instance", "info", "--json"), "info").json()["code_locations"]
        if x["name"] == "bad_cron"
    )
    assert "minute must be 0-59" in loc["load_error"] and loc["server"]["generation"] == 0

    # A commanded restart is not an error.
    old_pid = dagd.daemons()["sensor"]["pid"]
    ok(dagd.ctl("daemons", "restart", "sensor"), "daemons restart")
    sensor = wait_for(
        lambda: (d := dagd.daemons()["sensor"])["pid"] not in (None, old_pid) and d["healthy"] and d,
        30,
        "a new sensor",
    )
    assert sensor["last_error"] is None and sensor["last_exit_reason"] == "COMMANDED", sensor

    # Ctrl-C: every daemon and code server stops, each said at INFO.
    before = len(dagd.log_path.read_text())
    dagd.signal(signal.SIGINT)
    assert dagd.wait_exit(timeout=30) == 0, dagd.log()
    stopping = [x for x in dagd.log_path.read_text()[before:].splitlines() if " exited: " in x]
    assert len(stopping) >= 4, dagd.log()
    assert all(" INFO " in x and "WARNING" not in x for x in stopping), stopping


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [("dev", "--no-web"), ("daemon", "run")])
def test_a_missing_module_is_refused_at_start(home: pathlib.Path, command: tuple[str, ...]) -> None:
    refused = dagctl(home, *command, "-m", "no_such_module_for_dagd")
    assert refused.code == 2, refused
    assert "no module named 'no_such_module_for_dagd'" in one_error_line(refused)
    assert list(home.iterdir()) == []  # nothing started, nothing written


# -- 3, 11. the web UI needs only the supervisor; a taken port is explained ----------------------------


@pytest.mark.timeout(120)
def test_webserver_starts_without_the_database_variable_and_a_second_ui_is_told_who_holds_its_port(
    tmp_path: pathlib.Path, dagd: DagdProcess
) -> None:
    first = tmp_path / "first"
    first.mkdir()
    (first / "dagd.yaml").write_text("storage:\n  postgres:\n    url: {env: DAGD_TEST_FIRST_HOUR_PG_URL}\n")
    env = {k: v for k, v in os.environ.items() if k != "DAGD_TEST_FIRST_HOUR_PG_URL"}
    ui = subprocess.Popen(
        [*DAGCTL, "webserver", "--port", "0"], env={**env, "DAGD_HOME": str(first)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def published() -> dict[str, Any] | None:
            if ui.poll() is not None:
                output = ui.stdout.read().decode() if ui.stdout else ""
                raise AssertionError(f"dagctl webserver exited {ui.returncode}: {output}")
            try:
                return dict(json.loads((first / "webserver.json").read_text()))
            except (OSError, ValueError):
                return None

        port = int(
            wait_for(published, 30, "the web UI to publish its URL")["url"].rsplit(":", 1)[1].strip("/")
        )

        # A second `dagctl dev` whose UI port is taken: the console names the holder and the option.
        dagd.start("-f", str(FIXTURES / "defs.py"), "--web-port", str(port))
        said = wait_for(
            lambda: next((x for x in dagd.log().splitlines() if "web UI did not start" in x), None),
            30,
            "the console to say the web UI did not start",
        )
        assert f"taken by the dagd web UI of DAGD_HOME={first}" in said and "--web-port" in said, said
    finally:
        ui.terminate()
        ui.wait(timeout=15)
    assert_no_leftovers(first)
