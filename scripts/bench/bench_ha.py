"""Two supervisors on one PostgreSQL: submit through the standby -> launched by the leader.

    python scripts/bench/bench_ha.py [--runs 50] [--json FILE]

A leader and a standby (``daemon run --standby``), each with its own home, on one PostgreSQL
schema. Each sample submits one run through the standby's API and polls it (through the standby)
until the leader's run_queue daemon has launched it (status no longer QUEUED). The standby wakes
the leader with PostgreSQL NOTIFY (dagd.supervisor.wakeups), so this measures the wake-up path,
not the queue daemon's poll. :class:`bench_launchers.NoopLauncher` starts no process: the figure
is the control plane, not process start-up. The same through the leader is printed for comparison.
Target (issue #16): p50 <= 100 ms through a standby.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

BENCH_DIR = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parents[1]))
sys.path.insert(0, str(BENCH_DIR))

from common import BENCH_DEFS, distribution, postgres_schema, stop_process, summary_ms, write_json  # noqa: E402

from dagd.client.client import Client  # noqa: E402

CONFIG = "run_launcher:\n  module: bench_launchers\n  class: NoopLauncher\n"
ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")]))}


@contextlib.contextmanager
def supervisor(root: pathlib.Path, name: str, url: str, *args: str) -> Iterator[pathlib.Path]:
    home = root / name
    home.mkdir()
    (home / "dagd.yaml").write_text(f"storage:\n  postgres:\n    url: '{url}'\n{CONFIG}")
    env = {**os.environ, **ENV, "DAGD_HOME": str(home)}
    with open(root / f"{name}.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagd.client.cli", "daemon", "run", "-f", str(BENCH_DEFS), *args],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        yield home
    finally:
        stop_process(proc)


def client_when(home: pathlib.Path, role: str, timeout: float = 60) -> Client:
    """A client of ``home``'s supervisor once it serves with ``role`` and (a leader) its daemons."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            address = json.loads((home / "supervisor.json").read_text())["addresses"][0]
            client = Client(address)
            status = client.daemon_status()
            if status["role"] == role and all(d["healthy"] for d in status["daemons"]):
                return client
            client.close()
        time.sleep(0.1)
    raise RuntimeError(f"{home} did not serve as {role} within {timeout}s")


def submit_to_launched(client: Client, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.monotonic()
        run_id = client.submit("noop")["run_id"]
        while client.get_run(run_id)[0]["status"] == "QUEUED":
            if time.monotonic() - t0 > 30:
                raise RuntimeError(f"run {run_id} was not launched within 30 s")
            time.sleep(0.002)
        samples.append(time.monotonic() - t0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    results = {}
    with contextlib.ExitStack() as stack:
        root = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dagd-bench-ha-")))
        url = stack.enter_context(postgres_schema())
        leader_home = stack.enter_context(supervisor(root, "leader", url))
        leader = client_when(leader_home, "leader")
        standby_home = stack.enter_context(supervisor(root, "standby", url, "--standby"))
        standby = client_when(standby_home, "standby")
        for name, client in (("standby", standby), ("leader", leader)):
            submit_to_launched(client, 3)  # warm-up
            samples = submit_to_launched(client, args.runs)
            results[f"submit_to_launched_via_{name}_ms"] = distribution(samples, 1000)
            print(f"[postgres] submit through the {name} -> launched by the leader: {summary_ms(samples)}")
        leader.close()
        standby.close()
    write_json(args.json, {"postgres": results})


if __name__ == "__main__":
    main()
