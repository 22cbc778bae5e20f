"""Takeover after a leader dies, and step-down on a cut link: two supervisors on two test hosts.

    python scripts/bench/bench_takeover.py [--samples 10] [--ttl 15] [--only kill|cut] [--json FILE]

Needs root and PostgreSQL. Each supervisor runs on its own test host (``tests/helpers/netns.py``: a
network namespace with its own hostname, reaching PostgreSQL only through a proxy on its link), so
the holder ids name different hosts and a takeover waits for the lease to expire, as across real
machines (on one host a provably dead holder is taken over at once). Lease ``--ttl`` seconds (the
production default, 15). Every sample starts from one leader whose renewals count the standby:

- ``kill``: SIGKILL the leader (its daemons follow) and submit a run through the standby at once.
  From the kill: the standby holds the lease (its role is ``leader``), and the run is launched (no
  longer QUEUED). The killed supervisor is started again as a standby before the next sample.
- ``cut``: cut the leader's link (packets dropped, nothing refused) and submit a run through the
  standby. From the cut: the old leader stepped down (its daemons gone), the standby holds the
  lease, the run is launched. The link is healed and the old leader rejoins as a standby by itself.

A fault strikes at a random moment of the leader's renewal cycle (a pause drawn uniformly from
zero to the renew interval, ttl / 3, after the sample is ready): the lease then has between 2/3 and
all of its time to live left, as for a crash at any moment. Roles alternate from sample to sample. :class:`bench_launchers.NoopLauncher` starts no process:
"launched" is the control plane. Prints median, p90 and max per step, and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

BENCH_DIR = pathlib.Path(__file__).resolve().parent
ROOT = BENCH_DIR.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH_DIR))

import psutil  # noqa: E402
from common import BENCH_DEFS, distribution, percentile, postgres_schema, stop_process, write_json  # noqa: E402
from helpers import netns  # noqa: E402
from helpers.tcp_proxy import proxy_to  # noqa: E402

from dagd.client.client import Client  # noqa: E402

ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))}
POLL = 0.05


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(POLL)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


class Host:
    """One supervisor on one test host."""

    def __init__(self, root: pathlib.Path, test_host: netns.NetHost, url: str, ttl: float) -> None:
        self.test_host = test_host
        self.home = root / test_host.name
        self.home.mkdir()
        (self.home / "dagd.yaml").write_text(
            f"storage:\n  postgres:\n    url: '{url}'\n"
            "run_launcher:\n  module: bench_launchers\n  class: NoopLauncher\n"
            f"daemons:\n  lease_ttl_seconds: {ttl:g}\n"
        )
        self.log_path = root / f"{test_host.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **ENV, "DAGD_HOME": str(self.home)}
        command = [
            sys.executable,
            "-m",
            "dagd.client.cli",
            "daemon",
            "run",
            "-f",
            str(BENCH_DEFS),
            "--standby",
        ]
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                self.test_host.command(*command), env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)

    def client(self) -> Client:
        return Client(f"unix:{self.home / 'run' / 'dagd.sock'}")

    def role(self) -> str | None:
        with contextlib.suppress(Exception), self.client() as client:
            return str(client.instance_info()["role"])
        return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def daemon_pids(self) -> list[int]:
        with self.client() as client:
            return [d["pid"] for d in client.daemon_status()["daemons"] if d["pid"]]


def leading(host: Host) -> bool:
    """``host`` leads with every daemon healthy."""
    with host.client() as client:
        status = client.daemon_status()
    return status["role"] == "leader" and all(d["healthy"] for d in status["daemons"])


def standby_joins(leader: Host, standby: Host, mark: int, timeout: float = 120) -> None:
    """Until ``standby`` stands by and ``leader``'s renewals count it (log after ``mark``)."""
    wait(lambda: standby.role() == "standby", timeout, f"{standby.test_host.name} to stand by")
    wait(
        lambda: "1 supervisor(s) standing by" in leader.log()[mark:], timeout, "the leader to see the standby"
    )


def launched(client: Client, run_id: str) -> bool:
    return client.get_run(run_id)[0]["status"] != "QUEUED"


def sample(leader: Host, standby: Host, how: str, ttl: float) -> dict[str, float]:
    """One fault on ``leader``; seconds from the fault to each step."""
    pids = leader.daemon_pids()
    # Ready is seen at a renewal (the leader logs the standby it counted): strike at a random phase.
    time.sleep(random.uniform(0, ttl / 3))
    out: dict[str, float] = {}
    with standby.client() as client:
        if how == "kill":
            assert leader.proc is not None
            os.kill(leader.proc.pid, signal.SIGKILL)
        else:
            leader.test_host.cut()
        t0 = time.monotonic()
        run_id = client.submit("noop")["run_id"]
        steps: dict[str, Callable[[], bool]] = {
            "lease_taken": lambda: standby.role() == "leader",
            "run_launched": lambda: launched(client, run_id),
        }
        if how == "cut":
            steps["stepped_down"] = lambda: not any(psutil.pid_exists(pid) for pid in pids)
        while steps and time.monotonic() - t0 < 120:
            for name, done in list(steps.items()):
                with contextlib.suppress(Exception):
                    if done():
                        out[name] = time.monotonic() - t0
                        del steps[name]
            time.sleep(POLL)
        if steps:
            raise RuntimeError(f"{how}: not done within 120 s: {sorted(steps)}")
    return out


def recover(old: Host, new: Host, how: str) -> None:
    """Back to one leader (``new``) whose renewals count ``old`` as a standby."""
    wait(lambda: leading(new), 120, f"{new.test_host.name} to lead with healthy daemons")
    mark = len(new.log())
    if how == "kill":
        assert old.proc is not None
        old.proc.wait(timeout=30)
        old.start()
    else:
        old.test_host.heal()
    standby_joins(new, old, mark)


def report(name: str, values: list[float]) -> str:
    return (
        f"{name:>13}: median {statistics.median(values):5.1f} s, p90 {percentile(values, 90):5.1f} s,"
        f" max {max(values):5.1f} s (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--ttl", type=float, default=15.0)
    parser.add_argument("--only", choices=["kill", "cut"], action="append")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {"ttl_seconds": args.ttl}
    with contextlib.ExitStack() as stack:
        root = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dagd-bench-takeover-")))
        url = stack.enter_context(postgres_schema())
        parsed = urllib.parse.urlparse(url.replace("postgresql+psycopg", "postgresql"))
        pg_host, pg_port = parsed.hostname or "127.0.0.1", parsed.port or 5432
        bed = stack.enter_context(netns.multi_host())
        hosts = []
        for name in ("hosta", "hostb"):
            test_host = bed.host(name)
            proxy = stack.enter_context(proxy_to(pg_host, pg_port, listen_host=test_host.local_address))
            hosts.append(
                Host(
                    root,
                    test_host,
                    url.replace(f"{pg_host}:{pg_port}", f"{test_host.local_address}:{proxy.port}"),
                    args.ttl,
                )
            )
        for host in hosts:
            stack.callback(host.stop)
        leader, standby = hosts
        leader.start()
        wait(lambda: leading(leader), 120, "the first supervisor to lead")
        mark = len(leader.log())
        standby.start()
        standby_joins(leader, standby, mark)
        for how in args.only or ["kill", "cut"]:
            loads, samples = [os.getloadavg()[0]], []
            for i in range(args.samples):
                took = sample(leader, standby, how, args.ttl)
                samples.append(took)
                print(
                    f"[{how} {i + 1}/{args.samples}] "
                    + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(took.items())),
                    flush=True,
                )
                recover(leader, standby, how)
                leader, standby = standby, leader
                loads.append(os.getloadavg()[0])
            results[how] = {name: distribution([s[name] for s in samples]) for name in samples[0]}
            results[how]["load_1min"] = loads
            print(f"== {how} (lease {args.ttl:g} s), load average (1 min) {min(loads):.1f}-{max(loads):.1f}")
            for name in ("stepped_down", "lease_taken", "run_launched"):
                if name in samples[0]:
                    print(report(name, [s[name] for s in samples]))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
