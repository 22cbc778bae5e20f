"""Bad input end to end (SPEC §8): one clear line from ``dagctl``, a fitting exit code, no change.

Every refusal is checked three ways: the exit code, stderr being exactly one ``dagctl: error:``
line that names the problem, and nothing having changed (no run created, no supervisor started).
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers.procs import DAGCTL, DagdProcess, Result, assert_no_leftovers, dagctl, processes_for_home

from dagd.api.v1 import dagd_pb2 as pb
from dagd.api.v1 import dagd_pb2_grpc as pb_grpc

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE, EXIT_NOT_FOUND = 1, 2, 4, 5
FIVE_MB = 5 * 1024 * 1024


def error_line(result: Result) -> str:
    """The one line of stderr, which must be a ``dagctl: error:`` line."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr[:2000]}"
    assert lines[0].startswith("dagctl: error: "), lines[0]
    return lines[0]


def published(home: pathlib.Path) -> dict[str, Any]:
    return json.loads((home / "supervisor.json").read_text())


def unix_channel(home: pathlib.Path) -> grpc.Channel:
    return grpc.insecure_channel(published(home)["addresses"][0])


# -- a malformed dagd.yaml refuses to start ----------------------------------------------------

BAD_CONFIGS = [
    pytest.param(
        "run_coordinator:\n  config: {max_concurrent_runs: 3\n", ["invalid YAML", "line 3"], id="yaml-syntax"
    ),
    pytest.param("storage:\n  sqlite: {}\nbogus: 1\n", ["bogus", "unknown key"], id="unknown-key"),
    pytest.param(
        "run_coordinator: {config: {max_concurrent_runs: abc}}\n",
        ["run_coordinator.config.max_concurrent_runs", "integer", "'abc'"],
        id="wrong-type",
    ),
    pytest.param(
        "run_coordinator: {config: {max_concurrent_runs: -5}}\n",
        ["run_coordinator.config.max_concurrent_runs", "-1"],
        id="out-of-range",
    ),
    pytest.param("grpc: {tcp: {port: 0}}\n", ["grpc.tcp", "token"], id="tcp-without-token"),
]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("config", "mentions"), BAD_CONFIGS)
def test_malformed_instance_file_is_refused_at_start(
    home: pathlib.Path, defs_file: pathlib.Path, config: str, mentions: list[str]
) -> None:
    (home / "dagd.yaml").write_text(config)
    # Refused, not hung: a supervisor that went on to start would still be running when the
    # command's timeout ends it (subprocess.TimeoutExpired fails the test). How fast a refusal is
    # is not asserted here: on a loaded 2-core machine a bare Python start-up alone can take many
    # seconds of wall time.
    result = dagctl(home, "dev", "-f", str(defs_file), timeout=60)

    assert result.code == EXIT_BAD_INPUT, (result.code, result.stderr)
    line = error_line(result)
    assert str(home / "dagd.yaml") in line
    for text in mentions:
        assert text in line, f"{text!r} not in {line!r}"
    # Nothing started, nothing written.
    assert sorted(p.name for p in home.iterdir()) == ["dagd.yaml"]
    assert not processes_for_home(home)


# -- bad submissions to a running supervisor ---------------------------------------------------


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagdProcess]:
    """One supervisor for every test that only sends it bad requests (it must stay unchanged)."""
    home = tmp_path_factory.mktemp("bad-input") / "home"
    home.mkdir()
    proc = DagdProcess(home)
    # max_concurrent_runs 0: any run a refusal wrongly created would stay visible as QUEUED.
    proc.write_config("run_coordinator: {config: {max_concurrent_runs: 0}}\n")
    proc.start("-f", str(pathlib.Path(__file__).parents[1] / "fixtures" / "defs.py"))
    yield proc
    proc.stop()
    assert_no_leftovers(home)


def run_count(proc: DagdProcess) -> int:
    result = proc.ctl("runs", "list", "--json")
    assert result.code == 0, result.stderr
    return len(result.json())


BAD_SUBMISSIONS = [
    pytest.param(["no_such_job"], EXIT_NOT_FOUND, ["no_such_job"], id="unknown-job"),
    pytest.param(["hello", "--tag", "novalue"], EXIT_BAD_INPUT, ["--tag", "novalue"], id="tag-without-value"),
    pytest.param(["hello", "--tag", "=v"], EXIT_BAD_INPUT, ["--tag"], id="tag-without-key"),
    pytest.param(["hello", "--config", "{bad"], EXIT_BAD_INPUT, ["--config", "JSON"], id="config-not-json"),
    pytest.param(
        ["hello", "--config", "[1]"], EXIT_BAD_INPUT, ["--config", "object"], id="config-not-object"
    ),
    pytest.param(
        ["hello", "--priority", "abc"], EXIT_BAD_INPUT, ["--priority", "abc"], id="priority-not-int"
    ),
    pytest.param(
        ["hello", "--tag", "dagd/priority=abc"],
        EXIT_BAD_INPUT,
        ["dagd/priority", "abc"],
        id="priority-tag-not-int",
    ),
    pytest.param(
        ["hello", "--tag", "dagd/max_runtime=abc"],
        EXIT_BAD_INPUT,
        ["dagd/max_runtime", "'abc'"],
        id="max-runtime-tag-not-seconds",
    ),
    pytest.param(
        ["hello", "--tag", "dagd/queue=bad queue/name"],
        EXIT_BAD_INPUT,
        ["dagd/queue", "'bad queue/name'", "queue name"],
        id="queue-tag-not-a-queue-name",
    ),
    pytest.param(
        ["hello", "--priority", "99999999999999999999"],
        EXIT_BAD_INPUT,
        ["priority", "99999999999999999999"],
        id="priority-out-of-range",
    ),
    pytest.param(["hello", "--config", '{"a": NaN}'], EXIT_BAD_INPUT, ["--config", "NaN"], id="config-nan"),
    pytest.param(
        ["hello", "--tag", "owner=\udcff"],  # the byte 0xff, as Python keeps undecodable arguments
        EXIT_BAD_INPUT,
        ["argument 4", "not valid UTF-8"],
        id="argument-not-utf8",
    ),
    pytest.param(
        ["hello", "--tag", "big=" + "x" * 100_000],
        EXIT_BAD_INPUT,
        ["big", "longer than"],
        id="tag-value-too-long",
    ),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "code", "mentions"), BAD_SUBMISSIONS)
def test_bad_submission_is_refused_and_creates_nothing(
    running: DagdProcess, args: list[str], code: int, mentions: list[str]
) -> None:
    before = run_count(running)
    result = running.ctl("submit", *args)
    assert result.code == code, (result.code, result.stderr[:2000])
    assert result.stdout == ""
    line = error_line(result)
    for text in mentions:
        assert text in line, f"{text!r} not in {line!r}"
    assert run_count(running) == before


def _big_stack() -> None:
    # ARG_MAX is a quarter of the stack limit: let the command line carry ~5 MB of tags.
    _, hard = resource.getrlimit(resource.RLIMIT_STACK)
    want = 64 * 1024 * 1024
    resource.setrlimit(
        resource.RLIMIT_STACK, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard)
    )


@pytest.mark.timeout(90)
def test_oversized_request_is_refused_and_supervisor_keeps_answering(running: DagdProcess) -> None:
    before = run_count(running)

    # Through dagctl: one argument is capped at 128 KiB by the kernel, so 5 MB comes as 42 tags.
    tags = [arg for i in range(42) for arg in ("--tag", f"k{i}=" + "x" * 125_000)]
    proc = subprocess.run(
        [*DAGCTL, "submit", "hello", *tags],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, preexec_fn=_big_stack,
        env={**os.environ, "DAGD_HOME": str(running.home)},
    )  # fmt: skip
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    assert result.code != 0
    line = error_line(result)
    assert "larger than max" in line or "longer than" in line, line

    # Straight over gRPC: a single 5 MB tag value.
    with unix_channel(running.home) as channel:
        runs = pb_grpc.RunServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            runs.SubmitRun(pb.SubmitRunRequest(job_name="hello", tags={"big": "x" * FIVE_MB}), timeout=30)
        assert caught.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
        assert "Traceback" not in (caught.value.details() or "")
        # The same channel still works afterwards.
        assert len(runs.ListRuns(pb.ListRunsRequest(), timeout=10).runs) == before

    assert running.ctl("daemons", "status").code == 0
    assert run_count(running) == before


@pytest.mark.timeout(30)
def test_unknown_status_enum_is_invalid_argument(running: DagdProcess) -> None:
    with unix_channel(running.home) as channel:
        runs = pb_grpc.RunServiceStub(channel)
        for statuses in ([99], [pb.RUN_STATUS_UNSPECIFIED]):
            with pytest.raises(grpc.RpcError) as caught:
                runs.ListRuns(pb.ListRunsRequest(statuses=statuses), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
            assert str(statuses[0]) in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            runs.ListRuns(pb.ListRunsRequest(page_token="not-a-cursor"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
        with pytest.raises(grpc.RpcError) as caught:
            runs.GetRun(pb.GetRunRequest(run_id="no-such-run"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value


@pytest.mark.timeout(30)
def test_unknown_status_filter_on_the_command_line(running: DagdProcess) -> None:
    result = running.ctl("runs", "list", "--status", "BOGUS")
    assert result.code == EXIT_BAD_INPUT, (result.code, result.stderr)
    assert "BOGUS" in error_line(result)


@pytest.mark.timeout(30)
def test_unknown_run_is_not_found(running: DagdProcess) -> None:
    for args in (
        ["runs", "show", "no-such-run"],
        ["runs", "terminate", "no-such-run"],
        ["runs", "logs", "no-such-run"],
    ):
        result = running.ctl(*args)
        assert result.code == EXIT_NOT_FOUND, (args, result.code, result.stderr)
        assert "no-such-run" in error_line(result)


# -- no supervisor -----------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "args", [["runs", "list"], ["daemons", "status"], ["submit", "hello"], ["workers", "status"]]
)
def test_no_supervisor_running(home: pathlib.Path, args: list[str]) -> None:
    result = dagctl(home, *args)
    assert result.code == EXIT_UNREACHABLE, (result.code, result.stderr)
    assert "no supervisor is running" in error_line(result)
    assert sorted(p.name for p in home.iterdir()) == []


@pytest.mark.timeout(30)
def test_stale_published_address_means_no_supervisor(home: pathlib.Path) -> None:
    # A supervisor killed with SIGKILL leaves its file; a pid that is not that process is ignored.
    (home / "supervisor.json").write_text(
        json.dumps({"pid": os.getpid(), "started_at": 0.0, "addresses": [f"unix:{home}/run/dagd.sock"]})
    )
    result = dagctl(home, "daemons", "status")
    assert result.code == EXIT_UNREACHABLE, (result.code, result.stderr)
    assert "no supervisor is running" in error_line(result)


@pytest.mark.timeout(30)
def test_unreachable_address(home: pathlib.Path) -> None:
    result = dagctl(home, "--address", f"unix:{home}/nothing.sock", "runs", "list", timeout=30)
    assert result.code == EXIT_UNREACHABLE, (result.code, result.stderr)
    assert "cannot reach the supervisor" in error_line(result)


@pytest.mark.timeout(60)
def test_supervisor_that_does_not_answer_is_unreachable(dagd: DagdProcess, defs_file: pathlib.Path) -> None:
    # Was: exit 1 with "Deadline Exceeded". Stopped, the supervisor still accepts connections
    # (the kernel does), so only the deadline tells: `daemons status` waits 5 s.
    dagd.start("-f", str(defs_file))
    assert dagd.proc is not None
    os.kill(dagd.proc.pid, signal.SIGSTOP)
    try:
        result = dagd.ctl("daemons", "status")
    finally:
        os.kill(dagd.proc.pid, signal.SIGCONT)
    assert result.code == EXIT_UNREACHABLE, (result.code, result.stderr)
    assert "did not answer within 5s" in error_line(result)


# -- TCP listener with a token -----------------------------------------------------------------


@pytest.mark.timeout(90)
def test_tls_listener_is_reached_with_the_ca_and_refused_without_it(
    dagd: DagdProcess, defs_file: pathlib.Path, home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """grpc.tls serves the TCP listener over TLS; `dagctl --tls-ca` trusts it (was: no way to)."""
    import trustme

    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    dagd.write_config(
        "grpc:\n  tcp: {host: 127.0.0.1, port: 0}\n  token: s3cret\n"
        f"  tls: {{cert_file: {tmp_path / 'server.pem'}, key_file: {tmp_path / 'server.pem'}}}\n"
    )
    dagd.start("-f", str(defs_file))
    address = published(home)["addresses"][1]
    env = {"DAGD_TOKEN": "s3cret"}

    trusted = dagctl(
        home, "--address", address, "--tls-ca", str(tmp_path / "ca.pem"), "runs", "list", "--json", env=env
    )
    assert trusted.code == 0 and trusted.json() == [], trusted.stderr
    via_env = dagctl(
        home, "--address", address, "submit", "hello", env={**env, "DAGD_TLS_CA": str(tmp_path / "ca.pem")}
    )
    assert via_env.code == 0, via_env.stderr

    plain = dagctl(home, "--address", address, "runs", "list", env=env, timeout=60)
    assert plain.code == EXIT_UNREACHABLE, (plain.code, plain.stderr)
    other_ca = trustme.CA()
    other_ca.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    untrusted = dagctl(
        home,
        "--address",
        address,
        "--tls-ca",
        str(tmp_path / "other.pem"),
        "runs",
        "list",
        env=env,
        timeout=60,
    )
    assert untrusted.code == EXIT_UNREACHABLE, (untrusted.code, untrusted.stderr)
    missing = dagctl(
        home, "--address", address, "--tls-ca", str(tmp_path / "nope.pem"), "runs", "list", env=env
    )
    assert missing.code == EXIT_BAD_INPUT and "nope.pem" in error_line(missing), missing.stderr


@pytest.mark.timeout(90)
def test_tcp_listener_requires_the_token(
    dagd: DagdProcess, defs_file: pathlib.Path, home: pathlib.Path
) -> None:
    dagd.write_config("grpc: {tcp: {host: 127.0.0.1, port: 0}, token: s3cret}\n")
    dagd.start("-f", str(defs_file))
    addresses = published(home)["addresses"]
    assert len(addresses) == 2 and addresses[0].startswith("unix:"), addresses
    host, _, port = addresses[1].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0, f"port 0 must be published as the chosen port: {addresses}"
    address = addresses[1]
    no_token_env = {"DAGD_TOKEN": ""}

    for token_args in ([], ["--token", "wrong"], ["--token", "s3cretX"]):
        result = dagctl(home, "--address", address, *token_args, "runs", "list", env=no_token_env)
        assert result.code != 0, (token_args, result.stdout)
        line = error_line(result)
        assert "token" in line.lower() or "unauthenticated" in line.lower(), line
        assert "s3cret" not in line

    ok = dagctl(home, "--address", address, "--token", "s3cret", "runs", "list", "--json", env=no_token_env)
    assert ok.code == 0, ok.stderr
    assert ok.json() == []
    submitted = dagctl(home, "--address", address, "--token", "s3cret", "submit", "hello", env=no_token_env)
    assert submitted.code == 0, submitted.stderr
    assert dagd.ctl("runs", "show", submitted.stdout.strip()).code == 0

    # Health is exempt from the token, so load balancers can probe; the API itself is not.
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "dagd.api.v1.RunService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.RunServiceStub(channel).ListRuns(pb.ListRunsRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
