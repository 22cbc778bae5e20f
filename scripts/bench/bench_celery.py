"""Submit -> first line of user code through the Celery launcher, on RabbitMQ and on Redis.

    python scripts/bench/bench_celery.py [--broker rabbitmq|redis|both] [--latency-runs 30] [--json PATH]

A supervisor (PostgreSQL, a schema of its own) and one worker host (``dagctl worker run``, its own
home, concurrency 2) on a queue of their own; runs are submitted one at a time and the latency is
the job's first logged wall time minus the moment before the client's submit call (as in
bench_submit.py). The path: submit -> run queue pass -> dispatch transaction -> publish -> the
broker -> the host's Celery consumer -> a new watcher process (``python -m dagd.runs.celery.child``)
-> claim -> fork the job.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_submit import latency  # noqa: E402
from common import address, distribution, running_supervisor, stop_process, summary_ms, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402

BROKERS = {
    "rabbitmq": os.environ.get("DAGD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    "redis": os.environ.get("DAGD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}


def _delete_queue(url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(url, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(queue)


def measure(broker: str, runs: int) -> list[float]:
    url = BROKERS[broker]
    queue = f"dagd-bench-{uuid.uuid4().hex[:8]}"
    config = (
        "run_launcher:\n  module: dagd.run_launcher\n  class: CeleryRunLauncher\n"
        f"  config: {{broker_url: '{url}', queue: {queue}}}\n"
    )
    try:
        with running_supervisor(config, "postgres") as home, tempfile.TemporaryDirectory() as worker_home:
            (pathlib.Path(worker_home) / "dagd.yaml").write_text((home / "dagd.yaml").read_text())
            log = open(pathlib.Path(worker_home) / "worker.log", "w")
            worker = subprocess.Popen(
                [sys.executable, "-m", "dagd.client.cli", "worker", "run", "--concurrency", "2"],
                env={**os.environ, "DAGD_HOME": worker_home}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                latency(home, 3)  # warm-up (and waits for the host to consume)
                return latency(home, runs)
            finally:
                stop_process(worker)
                log.close()
    finally:
        _delete_queue(url, queue)


@contextlib.contextmanager
def fleet(
    broker: str, hosts: list[int], extra: str = ""
) -> Iterator[tuple[pathlib.Path, list[subprocess.Popen[bytes]]]]:
    """A supervisor and ``hosts`` worker hosts (their concurrency), on a queue of their own."""
    url = BROKERS[broker]
    queue = f"dagd-bench-{uuid.uuid4().hex[:8]}"
    config = (
        "run_launcher:\n  module: dagd.run_launcher\n  class: CeleryRunLauncher\n"
        f"  config: {{broker_url: '{url}', queue: {queue}}}\n" + extra
    )
    try:
        with running_supervisor(config, "postgres") as home, contextlib.ExitStack() as stack:
            procs = []
            for concurrency in hosts:
                worker_home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory()))
                (worker_home / "dagd.yaml").write_text((home / "dagd.yaml").read_text())
                log = stack.enter_context(open(worker_home / "worker.log", "w"))
                proc = subprocess.Popen(
                    [sys.executable, "-m", "dagd.client.cli", "worker", "run", "--concurrency", str(concurrency)],
                    env={**os.environ, "DAGD_HOME": str(worker_home)}, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
                stack.callback(_stop_tree, proc)
                procs.append(proc)
            client = Client(address(home))
            stack.callback(client.close)
            deadline = time.monotonic() + 60
            while len(client.list_workers()) < len(hosts):
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker hosts did not register")
                time.sleep(0.1)
            yield home, procs
    finally:
        _delete_queue(url, queue)


def _stop_tree(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        stop_process(proc)


def _engine(home: pathlib.Path) -> sa.Engine:
    import yaml

    url = yaml.safe_load((home / "dagd.yaml").read_text())["storage"]["postgres"]["url"]
    return sa.create_engine(url)


def throughput(broker: str, runs: int, slots: int = 8) -> dict[str, float]:
    """``runs`` no-op runs queued while the queue is paused, then let go onto two hosts of
    ``slots`` slots: runs/s dispatched (attempt committed and published) and runs/s finished.
    With many slots the run queue's own rate shows; with few, the hosts' turnover bounds it."""
    extra = (
        "run_coordinator:\n  module: dagd.run_coordinator\n  class: QueuedRunCoordinator\n"
        "  config: {max_concurrent_runs: 1000}\n"
    )
    with fleet(broker, [slots, slots], extra) as (home, _):
        client = Client(address(home))
        engine = _engine(home)
        try:
            client.set_queue_paused(True)
            for _ in range(runs):
                client.submit("noop")
            count = sa.text("SELECT count(*) FROM run_attempts")
            done = sa.text("SELECT count(*) FROM runs WHERE status IN ('SUCCESS', 'FAILURE', 'CANCELED')")
            t0 = time.monotonic()
            client.set_queue_paused(False)
            dispatched_at = finished_at = None
            deadline = t0 + 600
            while finished_at is None and time.monotonic() < deadline:
                with engine.connect() as conn:
                    n_dispatched = conn.execute(count).scalar() or 0
                    n_done = conn.execute(done).scalar() or 0
                now = time.monotonic()
                if dispatched_at is None and n_dispatched >= runs:
                    dispatched_at = now
                if n_done >= runs:
                    finished_at = now
                time.sleep(0.02)
            if dispatched_at is None or finished_at is None:
                raise RuntimeError("the runs did not all finish within 600 s")
            # Where each run's time goes, on the database's clock: dispatch -> claim (publish,
            # broker, consumer, watcher fork) and claim -> end (job fork, run, events, exit).
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT extract(epoch FROM claimed_at - dispatched_at),"
                        " extract(epoch FROM ended_at - claimed_at) FROM run_attempts"
                        " WHERE claimed_at IS NOT NULL AND ended_at IS NOT NULL"
                    )
                ).all()
            return {
                "dispatched_per_s": runs / (dispatched_at - t0),
                "finished_per_s": runs / (finished_at - t0),
                "dispatch_to_claim_ms_p50": 1000 * statistics.median(float(r[0]) for r in rows),
                "claim_to_end_ms_p50": 1000 * statistics.median(float(r[1]) for r in rows),
            }
        finally:
            engine.dispose()
            client.close()


def kill_to_attempt_2(broker: str, repeats: int) -> list[float]:
    """SIGKILL the whole tree of the host running a resumable run; seconds until attempt 2 is
    STARTED on the other host (worker_heartbeat_timeout_seconds 5, run monitoring polling every
    0.5 s). A fresh host replaces the killed one before the next round."""
    import psutil

    extra = (
        "run_monitoring:\n  worker_heartbeat_timeout_seconds: 5\n  max_resume_run_attempts: 1\n"
        "  poll_interval_seconds: 0.5\n"
    )
    samples = []
    with fleet(broker, [2, 2], extra) as (home, procs), contextlib.ExitStack() as stack:
        client = Client(address(home))
        stack.callback(client.close)
        for _ in range(repeats):
            run_id = client.submit("resumable_sleeper", run_config={"seconds": 60})["run_id"]
            watcher = _wait(functools.partial(_started, client, run_id, 1), 30)
            alive = [p for p in procs if p.poll() is None]
            victim = next(
                p for p in alive if watcher in {c.pid for c in psutil.Process(p.pid).children(True)}
            )
            tree = [psutil.Process(victim.pid), *psutil.Process(victim.pid).children(True)]
            for proc in tree:
                proc.kill()
            killed = time.monotonic()
            victim.wait(timeout=10)
            _wait(functools.partial(_started, client, run_id, 2), 60)
            samples.append(time.monotonic() - killed)
            client.terminate(run_id)
            worker_home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory()))
            (worker_home / "dagd.yaml").write_text((home / "dagd.yaml").read_text())
            log = stack.enter_context(open(worker_home / "worker.log", "w"))
            fresh = subprocess.Popen(
                [sys.executable, "-m", "dagd.client.cli", "worker", "run", "--concurrency", "2"],
                env={**os.environ, "DAGD_HOME": str(worker_home)}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            stack.callback(_stop_tree, fresh)
            procs.append(fresh)
            _wait(lambda: sum(w["healthy"] for w in client.list_workers()) >= 2, 60)
    return samples


def _started(client: Client, run_id: str, attempt: int) -> int | None:
    run, _ = client.get_run(run_id)
    if run["status"] == "STARTED" and run["attempt"] == attempt and run["attempts"][-1]["pid"]:
        return int(run["attempts"][-1]["pid"])
    return None


def _wait(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout}s")


def idle(broker: str, seconds: float) -> dict[str, float]:
    """A registered host with nothing to do: its CPU over ``seconds`` (% of one core) and RSS (MB),
    the host process alone and with its fork server."""
    import psutil

    with fleet(broker, [4]) as (_, procs):
        host = psutil.Process(procs[0].pid)
        time.sleep(5)  # settle after start-up
        tree = [host, *host.children(recursive=True)]
        before = {p.pid: sum(p.cpu_times()[:4]) for p in tree}
        time.sleep(seconds)
        after = {p.pid: sum(p.cpu_times()[:4]) for p in tree}
        return {
            "cpu_percent_host": 100 * (after[host.pid] - before[host.pid]) / seconds,
            "cpu_percent_tree": 100 * sum(after[k] - before[k] for k in before) / seconds,
            "rss_mb_host": host.memory_info().rss / 2**20,
            "rss_mb_tree": sum(p.memory_info().rss for p in tree) / 2**20,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", choices=["rabbitmq", "redis", "both"], default="both")
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--throughput-runs", type=int, default=300)
    parser.add_argument("--slots", type=int, default=8, help="slots per host in the throughput test")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILL -> attempt 2 repeats")
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--only", default="latency,throughput,kill,idle")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    brokers = ["rabbitmq", "redis"] if args.broker == "both" else [args.broker]
    results: dict[str, dict] = {}
    only = set(args.only.split(","))
    for broker in brokers:
        results[broker] = {}
        if "latency" in only:
            started = time.monotonic()
            samples = measure(broker, args.latency_runs)
            results[broker]["user_code_latency_ms"] = distribution(samples, 1000)
            print(
                f"[{broker}] submit -> first line of user code on a worker host: {summary_ms(samples)}, "
                f"p90 {results[broker]['user_code_latency_ms']['p90']:.1f} ms ({time.monotonic() - started:.0f}s)"
            )
        if "throughput" in only:
            rate = throughput(broker, args.throughput_runs, args.slots)
            results[broker]["throughput"] = rate
            print(
                f"[{broker}] {args.throughput_runs} no-op runs to 2 hosts x {args.slots} slots: dispatched"
                f" {rate['dispatched_per_s']:.1f} runs/s, finished {rate['finished_per_s']:.1f} runs/s;"
                f" per run p50: dispatch -> claim {rate['dispatch_to_claim_ms_p50']:.0f} ms,"
                f" claim -> end {rate['claim_to_end_ms_p50']:.0f} ms"
            )
        if "kill" in only:
            kills = kill_to_attempt_2(broker, args.kills)
            results[broker]["kill_to_attempt_2_s"] = distribution(kills)
            print(
                f"[{broker}] host SIGKILL -> attempt 2 STARTED: median {statistics.median(kills):.2f} s (n={len(kills)})"
            )
        if "idle" in only:
            figures = idle(broker, args.idle_seconds)
            results[broker]["idle"] = figures
            print(
                f"[{broker}] idle host over {args.idle_seconds:g}s: CPU {figures['cpu_percent_host']:.2f}% of a core"
                f" (with fork server {figures['cpu_percent_tree']:.2f}%), RSS {figures['rss_mb_host']:.0f} MB"
                f" (with fork server {figures['rss_mb_tree']:.0f} MB)"
            )
        print(f"load: {os.getloadavg()}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
