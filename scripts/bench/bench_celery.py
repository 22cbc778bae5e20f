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
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_submit import latency  # noqa: E402
from common import distribution, running_supervisor, stop_process, summary_ms, write_json  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", choices=["rabbitmq", "redis", "both"], default="both")
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    brokers = ["rabbitmq", "redis"] if args.broker == "both" else [args.broker]
    results: dict[str, dict] = {}
    for broker in brokers:
        started = time.monotonic()
        samples = measure(broker, args.latency_runs)
        results[broker] = {"user_code_latency_ms": distribution(samples, 1000)}
        print(
            f"[{broker}] submit -> first line of user code on a worker host: {summary_ms(samples)}, "
            f"p90 {results[broker]['user_code_latency_ms']['p90']:.1f} ms ({time.monotonic() - started:.0f}s)"
        )
    write_json(args.json, results)


if __name__ == "__main__":
    main()
