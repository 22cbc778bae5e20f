"""Streams end to end (issue #20), on SQLite and PostgreSQL: ``dagctl runs watch`` sees every run
status change exactly once and in order, also when killed and resumed from its cursor and across a
supervisor restart; a reader that falls behind is ended with a clear error; streams past
``streams.max_streams`` are refused; ``runs logs --follow`` and ``submit --wait`` ride the streams.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import psutil
import pytest
from helpers.procs import DAGCTL, DagdProcess, wait_for

from dagd.api.v1 import dagd_pb2 as pb
from dagd.api.v1 import dagd_pb2_grpc as pb_grpc
from dagd.client.client import Client
from dagd.client.streams import watch_runs

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@pytest.fixture(params=["sqlite", "postgres"])
def storage_yaml(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    url = request.getfixturevalue("pg_url")
    return f"storage:\n  postgres:\n    url: '{url}'\n"


@pytest.fixture
def client(dagd: DagdProcess) -> Iterator[Client]:
    holder: list[Client] = []

    class Lazy:
        def __getattr__(self, name: str) -> Any:
            if not holder:
                holder.append(Client.for_home(dagd.home))
            return getattr(holder[0], name)

    yield Lazy()  # type: ignore[misc]
    for c in holder:
        c.close()


class Watcher:
    """``dagctl runs watch --json`` as a child process; its lines collected by a thread."""

    def __init__(self, home: pathlib.Path, *args: str) -> None:
        env = {**os.environ, "DAGD_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [*DAGCTL, "runs", "watch", "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        self.lines: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        self._thread.join(timeout=5)
        return code


def status_events(client: Any, run_ids: list[str]) -> dict[str, list[str]]:
    """What storage holds: each run's status changes in order (the oracle)."""
    out = {}
    for run_id in run_ids:
        _, events = client.get_run(run_id)
        out[run_id] = [e["status"] for e in events if e["status"]]
    return out


def seen(lines: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in lines:
        out.setdefault(line["run_id"], []).append(line["status"])
    return out


def submit_many(client: Any, count: int, threads: int = 4, **kwargs: Any) -> list[str]:
    """``count`` runs submitted by ``threads`` concurrent writers."""
    ids: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for _ in range(n):
            run = client.submit("hello", **kwargs)
            with lock:
                ids.append(run["run_id"])

    workers = [threading.Thread(target=work, args=(count // threads,)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    return ids


@pytest.mark.timeout(240)
def test_watch_sees_every_change_once_in_order_even_when_killed_and_resumed(
    dagd: DagdProcess, defs_file: pathlib.Path, storage_yaml: str, client: Any
) -> None:
    dagd.write_config(storage_yaml)
    dagd.start("-f", str(defs_file))
    client.set_queue_paused(True)  # the runs stay QUEUED until we cancel them or resume the queue
    first = Watcher(dagd.home, "--from-beginning")
    ran = [client.submit("hello")["run_id"] for _ in range(3)]
    queued: list[str] = []
    writers = threading.Thread(target=lambda: queued.extend(submit_many(client, 200, tags={"batch": "x"})))
    writers.start()
    wait_for(lambda: len(first.lines) >= 100, 60, "the watcher to see 100 changes")
    first.proc.kill()  # mid-way, while the writers write, without a goodbye
    first.stop()
    second = Watcher(dagd.home, "--cursor", first.lines[-1]["cursor"])
    writers.join(timeout=120)
    assert len(queued) == 200
    canceled, _ = client.terminate_runs(statuses=["QUEUED"], tags={"batch": "x"})
    assert sorted(canceled) == sorted(queued)
    client.set_queue_paused(False)
    ids = ran + queued
    wait_for(
        lambda: all(client.get_run(r)[0]["status"] in FINISHED for r in ran), 120, "the 3 runs to finish"
    )
    expected = status_events(client, ids)
    assert all(expected[r] == ["QUEUED", "CANCELED"] for r in queued)
    assert all(expected[r][-1] == "SUCCESS" for r in ran)
    wait_for(lambda: seen(first.lines + second.lines) == expected, 30, "the watchers to see every change")
    assert second.stop() == 130, "Ctrl-C ends a watch with 130"
    both = first.lines + second.lines
    keys = [(line["run_id"], line["event_id"]) for line in both]
    assert len(keys) == len(set(keys)), "no change seen twice"
    assert seen(both) == expected


@pytest.mark.timeout(180)
def test_a_reader_that_falls_behind_is_ended_with_a_clear_error_and_resumes_losing_nothing(
    dagd: DagdProcess, defs_file: pathlib.Path, storage_yaml: str, client: Any
) -> None:
    dagd.write_config(storage_yaml + "streams: {queue_size: 2}\n")
    dagd.start("-f", str(defs_file))
    client.set_queue_paused(True)
    # A reader with a plain 64 KiB HTTP/2 window (no BDP growth), the way a slow client looks.
    channel = grpc.insecure_channel(client.address, options=[("grpc.http2.bdp_probe", 0)])
    slow = pb_grpc.RunServiceStub(channel).WatchRuns(pb.WatchRunsRequest())
    start = next(slow)  # the stream is open; now it reads nothing while 60 big changes happen
    bulky = {"blob": "x" * 150_000}  # each change carries its run (and its config): the window fills
    ids = [client.submit("hello", run_config=bulky)["run_id"] for _ in range(60)]
    wait_for(lambda: all(client.get_run(r)[1] for r in ids), 30, "every run stored")
    received: list[Any] = []
    ended: list[grpc.RpcError] = []

    def read() -> None:
        try:
            for message in slow:
                received.append(message)
        except grpc.RpcError as exc:
            ended.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: ended, 30, "the slow stream to end")
    except AssertionError:
        raise AssertionError(f"received {len(received)}: {[m.change.status for m in received]}") from None
    assert ended[0].code() == grpc.StatusCode.ABORTED
    assert "fell behind" in (ended[0].details() or "") and "resume from the last cursor" in ended[0].details()
    assert len(received) < 60, "it was dropped, not buffered for"
    channel.close()
    # The client library resumes from the cursor it had: every change once, none missed.
    changes = watch_runs(client, cursor=start.cursor)
    got = [next(changes) for _ in range(60)]
    assert [c["run_id"] for c in got] == ids and {c["status"] for c in got} == {"QUEUED"}
    changes.close()


@pytest.mark.timeout(120)
def test_streams_past_max_streams_are_refused_with_one_clear_line(
    dagd: DagdProcess, defs_file: pathlib.Path, client: Any
) -> None:
    dagd.write_config("streams: {max_streams: 3}\n")
    dagd.start("-f", str(defs_file))
    open_ = [
        client.daemons.WatchDaemons(pb.WatchDaemonsRequest(), metadata=client._metadata) for _ in range(3)
    ]
    for call in open_:
        next(call)
    # Bad input first (refused before a stream opens, whatever the cap): one line, exit 2.
    for args, says in (
        (["--cursor", "v1.bm90IGEgY3Vyc29y"], "invalid stream cursor"),
        (["--cursor", "garbage"], "invalid stream cursor"),
        (["--status", "BOGUS"], "BOGUS"),
        (["--tag", "novalue"], "expected KEY=VALUE"),
    ):
        bad = dagd.ctl("runs", "watch", *args, timeout=30)
        assert bad.code == 2 and says in bad.stderr and bad.stderr.strip().count("\n") == 0, (args, bad)
    refused = dagd.ctl("runs", "watch", timeout=30)
    assert refused.code == 1, refused
    assert refused.stderr.strip().count("\n") == 0
    assert "too many open streams (3, streams.max_streams)" in refused.stderr
    for call in open_:
        call.cancel()

    def can_open() -> bool:
        try:
            call = client.runs.WatchRuns(pb.WatchRunsRequest(), metadata=client._metadata)
            next(call)
            call.cancel()
            return True
        except grpc.RpcError:
            return False

    wait_for(can_open, 30, "the cancelled streams' slots to come back")
    # Their slots come back: a new watch opens (it ends at once here: we interrupt it). From the
    # beginning: a watch "from now" may open after the submission below and rightly not show it.
    watcher = Watcher(dagd.home, "--from-beginning")
    run_id = client.submit("hello")["run_id"]
    wait_for(lambda: any(line["run_id"] == run_id for line in watcher.lines), 30, "the new watch to work")
    assert watcher.stop() == 130


@pytest.mark.timeout(120)
def test_logs_follow_prints_to_the_last_line_and_submit_wait_ends_with_the_run(
    dagd: DagdProcess, defs_file: pathlib.Path, storage_yaml: str
) -> None:
    dagd.write_config(storage_yaml)
    dagd.start("-f", str(defs_file))
    waited = dagd.ctl("submit", "hello", "--wait", timeout=60)
    assert waited.code == 0, waited
    run_id = waited.stdout.strip()
    assert f"run {run_id} ended SUCCESS" in waited.stderr
    followed = dagd.ctl("runs", "logs", "--follow", run_id, timeout=60)
    assert followed.code == 0 and f"hello from the test job {run_id}" in followed.stdout
    failed = dagd.ctl("submit", "fails", "--wait", timeout=60)
    assert failed.code == 1 and "ended FAILURE" in failed.stderr
    # Following a run still in progress: lines arrive as written, the command ends with the run.
    sleeper = dagd.ctl("submit", "sleeper", "--config", '{"seconds": 2}').stdout.strip()
    env = {**os.environ, "DAGD_HOME": str(dagd.home)}
    follow = subprocess.run(
        [*DAGCTL, "runs", "logs", "-F", sleeper], capture_output=True, text=True, env=env, timeout=60
    )
    assert follow.returncode == 0 and "worker pid" in follow.stdout, follow
    assert dagd.ctl("runs", "show", sleeper, "--json").json()["status"] == "SUCCESS"


@pytest.mark.timeout(180)
def test_a_watch_resumes_across_a_supervisor_restart_missing_nothing(
    dagd: DagdProcess, defs_file: pathlib.Path, storage_yaml: str, client: Any
) -> None:
    dagd.write_config(storage_yaml)
    dagd.start("-f", str(defs_file), command=("daemon", "run"))
    client.set_queue_paused(True)
    watcher = Watcher(dagd.home, "--from-beginning")
    before = [client.submit("hello")["run_id"] for _ in range(5)]
    wait_for(lambda: len(watcher.lines) >= 5, 30, "the watcher to see the first runs")
    dagd.stop()
    assert watcher.proc.poll() is None, "the watch waits for the supervisor to come back"
    dagd.start("-f", str(defs_file), command=("daemon", "run"))
    with Client.for_home(dagd.home) as fresh:
        after = [fresh.submit("hello")["run_id"] for _ in range(5)]
        fresh.terminate_runs(statuses=["QUEUED"])
        expected = status_events(fresh, before + after)
    wait_for(lambda: seen(watcher.lines) == expected, 60, "the watcher to see every change once")
    assert watcher.stop() == 130
    keys = [line["event_id"] for line in watcher.lines]
    assert len(keys) == len(set(keys))


@pytest.mark.timeout(180)
def test_a_standby_serves_the_watch_with_changes_made_through_the_leader(
    tmp_path: pathlib.Path, pg_url: str, defs_file: pathlib.Path
) -> None:
    procs = []
    for name in ("a", "b"):
        proc = DagdProcess(tmp_path / name / "home")
        proc.home.mkdir(parents=True)
        proc.write_config(f"storage:\n  postgres:\n    url: '{pg_url}'\n")
        procs.append(proc)
    leader, standby = procs
    try:
        leader.start("-f", str(defs_file), command=("daemon", "run"))
        standby.start("-f", str(defs_file), command=("daemon", "run", "--standby"), wait_healthy=False)
        on_standby = Client(f"unix:{standby.home / 'run' / 'dagd.sock'}")
        wait_for(lambda: _role(on_standby) == "standby", 60, "the second supervisor to stand by")
        changes = watch_runs(on_standby, from_beginning=True)
        first: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: first.extend(_until_success(changes)), daemon=True)
        reader.start()
        with Client(f"unix:{leader.home / 'run' / 'dagd.sock'}") as on_leader:
            run_id = on_leader.submit("hello")["run_id"]
            reader.join(timeout=60)
            expected = status_events(on_leader, [run_id])[run_id]
        assert [c["status"] for c in first if c["run_id"] == run_id] == expected
        assert expected[-1] == "SUCCESS"
        changes.close()
        on_standby.close()
    finally:
        for proc in procs:
            proc.stop()


def _role(client: Client) -> str | None:
    try:
        return client.instance_info()["role"]  # type: ignore[no-any-return]
    except Exception:
        return None


def _until_success(changes: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for change in changes:
        yield change
        if change["status"] == "SUCCESS":
            return


@pytest.mark.timeout(300)
def test_a_thousand_idle_watchers_and_one_that_never_reads_leave_memory_bounded(
    dagd: DagdProcess, defs_file: pathlib.Path, client: Any
) -> None:
    dagd.write_config("streams: {max_streams: 1010, queue_size: 16}\n")
    dagd.start("-f", str(defs_file), command=("daemon", "run"))
    client.set_queue_paused(True)
    supervisor = psutil.Process(json.loads((dagd.home / "supervisor.json").read_text())["pid"])
    channels = [grpc.insecure_channel(client.address) for _ in range(10)]
    idle = []
    for i in range(1000):
        call = pb_grpc.RunServiceStub(channels[i % 10]).WatchRuns(pb.WatchRunsRequest(job_name="nobody"))
        next(call)
        idle.append(call)
    stuck_channel = grpc.insecure_channel(client.address, options=[("grpc.http2.bdp_probe", 0)])
    stuck = pb_grpc.RunServiceStub(stuck_channel).WatchRuns(pb.WatchRunsRequest())
    next(stuck)
    active: list[dict[str, Any]] = []
    changes = watch_runs(client, job_name="hello", from_beginning=True)

    def read() -> None:
        with contextlib.suppress(Exception):  # the test ends: the supervisor stops, the client closes
            active.extend(changes)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    baseline = supervisor.memory_info().rss
    bulky = {"blob": "x" * 150_000}  # 400 of these is 60 MB, were they buffered for the stuck reader
    ids = [client.submit("hello", run_config=bulky)["run_id"] for _ in range(400)]
    wait_for(lambda: len(active) >= 400, 120, "the active watcher to get every change")
    grown = (supervisor.memory_info().rss - baseline) / 2**20
    assert [c["run_id"] for c in active[:400]] == ids
    assert grown < 30, f"the supervisor grew {grown:.0f} MiB"
    with pytest.raises(grpc.RpcError) as ended:
        for _ in stuck:
            pass
    assert ended.value.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED)
    for call in idle:
        call.cancel()
    for channel in [*channels, stuck_channel]:
        channel.close()
