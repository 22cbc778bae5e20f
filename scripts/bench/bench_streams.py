"""Streams (issue #20): change -> watcher latency, and the supervisor with 1,000 idle watchers.

    python scripts/bench/bench_streams.py [--samples 200] [--watchers 1000] [--idle-seconds 20]
                                          [--backend sqlite|postgres] [--json OUT]

1. Latency: a run status change written straight to storage by this process (as a daemon or a
   worker on another host would) -> the change received by a ``WatchRuns`` stream of the same
   process. Timed from the writer's commit returning to the message arriving, one process's
   monotonic clock. The queue is paused, so nothing else writes meanwhile.
2. 1,000 idle watchers (their filter matches nothing written) plus one that never reads: the
   supervisor's RSS and CPU (% of one core) idle, and 8-thread submission throughput with and
   without them; the latency of one more, active, watcher while they are open.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import threading
import time
from typing import Any

import grpc
import psutil

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import address, distribution, running_supervisor, write_json  # noqa: E402

from dagd.api.v1 import dagd_pb2 as pb  # noqa: E402
from dagd.api.v1 import dagd_pb2_grpc as pb_grpc  # noqa: E402
from dagd.client.client import Client  # noqa: E402
from dagd.instance.instance import Instance  # noqa: E402
from dagd.runs.model import RunStatus  # noqa: E402
from dagd.storage.runs import NewRun  # noqa: E402

CONFIG = "streams: {max_streams: 1100}\n"


class Receiver:
    """One WatchRuns stream read on a thread; arrival times by run id."""

    def __init__(self, client: Client, **filters: Any) -> None:
        self.call = client.runs.WatchRuns(pb.WatchRunsRequest(**filters), metadata=client._metadata)
        next(self.call)  # open: its starting position has arrived
        self.arrived: dict[str, float] = {}
        self.event = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.call:
                if message.HasField("change"):
                    with self.event:
                        self.arrived[message.change.run_id] = time.monotonic()
                        self.event.notify_all()
        except grpc.RpcError:
            pass

    def wait(self, run_id: str, timeout: float = 10) -> float:
        with self.event:
            self.event.wait_for(lambda: run_id in self.arrived, timeout)
        return self.arrived[run_id]


def latencies(instance: Instance, receiver: Receiver, samples: int) -> list[float]:
    store = instance.storage.runs
    out = []
    for i in range(samples):
        run = NewRun(job_name="noop", tags={"i": str(i)}, run_config={}, priority=0, status=RunStatus.QUEUED)
        created = store.create(run)
        committed = time.monotonic()
        out.append(max(receiver.wait(created.run_id) - committed, 0.0))
        time.sleep(0.01)  # one change at a time: latency, not throughput
    return out


def submit_rate(client: Client, seconds: float, threads: int = 8) -> float:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def work(k: int) -> None:
        while time.monotonic() < stop:
            client.submit("noop")
            done[k] += 1

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / seconds


def cpu_percent(proc: psutil.Process, seconds: float) -> float:
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    return 100 * ((after.user - before.user) + (after.system - before.system)) / seconds


def measure(backend: str, samples: int, watchers: int, idle_seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": backend}
    with running_supervisor(CONFIG, backend) as home:
        os.environ["DAGD_HOME"] = str(home)
        instance = Instance.load(home)
        supervisor = psutil.Process(int(json.loads((home / "supervisor.json").read_text())["pid"]))
        client = Client(address(home))
        client.set_queue_paused(True)
        receiver = Receiver(client)
        latencies(instance, receiver, 20)  # warm-up
        result["latency"] = distribution(latencies(instance, receiver, samples), 1000)
        result["submit_rate_without"] = submit_rate(client, 5)
        result["rss_mb_before"] = supervisor.memory_info().rss / 2**20
        result["cpu_idle_before"] = cpu_percent(supervisor, idle_seconds)
        # 1,000 idle watchers over 10 connections, and one with a small window that never reads.
        channels = [grpc.insecure_channel(address(home)) for _ in range(10)]
        idle = []
        for i in range(watchers):
            stub = pb_grpc.RunServiceStub(channels[i % len(channels)])
            call = stub.WatchRuns(pb.WatchRunsRequest(job_name="nothing-writes-this"))
            next(call)
            idle.append(call)
        stuck_channel = grpc.insecure_channel(address(home), options=[("grpc.http2.bdp_probe", 0)])
        stuck = pb_grpc.RunServiceStub(stuck_channel).WatchRuns(pb.WatchRunsRequest())
        next(stuck)
        time.sleep(2)
        result["rss_mb_with_watchers"] = supervisor.memory_info().rss / 2**20
        result["cpu_idle_with_watchers"] = cpu_percent(supervisor, idle_seconds)
        result["latency_with_watchers"] = distribution(latencies(instance, receiver, samples), 1000)
        result["submit_rate_with_watchers"] = submit_rate(client, 5)
        result["rss_mb_after_submits"] = supervisor.memory_info().rss / 2**20
        result["threads"] = supervisor.num_threads()
        for call in [*idle, stuck]:
            call.cancel()
        for channel in [*channels, stuck_channel]:
            channel.close()
        client.close()
        instance.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=20)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = [
        measure(b, args.samples, args.watchers, args.idle_seconds)
        for b in args.backend or ["sqlite", "postgres"]
    ]
    for r in results:
        lat, lat2 = r["latency"], r["latency_with_watchers"]
        print(
            f"{r['backend']}: change -> watcher p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms (n={lat['n']})"
        )
        print(
            f"  with {args.watchers} idle watchers + 1 stuck: p50 {lat2['p50']:.1f} ms, p99 {lat2['p99']:.1f} ms"
        )
        print(
            f"  supervisor RSS {r['rss_mb_before']:.0f} -> {r['rss_mb_with_watchers']:.0f} MiB"
            f" ({r['rss_mb_after_submits']:.0f} after submissions), {r['threads']} threads;"
            f" idle CPU {r['cpu_idle_before']:.1f}% -> {r['cpu_idle_with_watchers']:.1f}% of a core"
        )
        print(
            f"  submissions (8 threads): {r['submit_rate_without']:.0f}/s without,"
            f" {r['submit_rate_with_watchers']:.0f}/s with the watchers"
        )
    print(f"load average at start: {load:.1f}, now {os.getloadavg()[0]:.1f}")
    write_json(args.json_out, {"load_start": load, "results": results})


if __name__ == "__main__":
    main()
