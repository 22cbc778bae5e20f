"""An example service that reacts to finished runs, using ``dagd.client`` as a library.

    python examples/react_to_finished_runs/service.py --job hello --submit downstream \\
        --state /var/lib/myservice/state.json [--address HOST:PORT] [--poll-seconds 1]

Every run of ``--job`` that ends is printed as one JSON line on stdout; with ``--submit JOB``,
each one that ended SUCCESS also gets a run of ``JOB`` submitted, tagged
``upstream_run_id=<the run>``: the way a service triggers downstream work.

It polls ListRuns (dagd's streams are another way; polling needs nothing but the unary API) and
keeps a cursor in ``--state``: the newest run it has seen, and the runs it saw unfinished. A
restart (or a crash) continues from there, so no run is missed (one may be printed again if the
crash came between printing it and saving the cursor). The downstream submission carries an
idempotency key made from the upstream run id, so it is never submitted twice. On its first start it begins with the runs submitted from then on.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import sys
import time
from typing import Any

from dagd.client.client import Client, SupervisorUnreachable
from dagd.client.types import Run
from dagd.errors import DagdError, NotFound

PAGE = 200


class State:
    """The cursor: the newest run seen (id and creation time) and the runs seen unfinished."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.newest: tuple[str, str] | None = None  # (run_id, created_at)
        self.watching: set[str] = set()
        self.started = False
        if path.exists():
            data = json.loads(path.read_text())
            self.newest = tuple(data["newest"]) if data.get("newest") else None  # type: ignore[assignment]
            self.watching = set(data.get("watching", []))
            self.started = True

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"newest": self.newest, "watching": sorted(self.watching)}))
        os.replace(tmp, self.path)  # atomic: a crash leaves the old state or the new one


def new_runs(client: Client, job: str, state: State) -> list[Run]:
    """Runs of ``job`` created since the cursor, oldest first (ListRuns pages newest first)."""
    found: list[Run] = []
    token = ""
    while True:
        page, token = client.list_runs(job_name=job, limit=PAGE, page_token=token)
        for run in page:
            if state.newest and (run.run_id == state.newest[0] or (run.created_at or "") < state.newest[1]):
                return found[::-1]
            found.append(run)
        if not token:
            return found[::-1]


def react(client: Client, run: Run, downstream: str | None) -> None:
    line: dict[str, Any] = {"run_id": run.run_id, "job_name": run.job_name, "status": run.status}
    if downstream and run.status == "SUCCESS":
        submitted = client.submit(
            downstream,
            tags={"upstream_run_id": run.run_id},
            idempotency_key=f"react-to-finished-runs:{run.run_id}",
        )
        line["submitted"] = submitted.run_id
    print(json.dumps(line), flush=True)


def poll_once(client: Client, job: str, downstream: str | None, state: State) -> None:
    if not state.started:  # the first start: from now on, not the history
        page, _ = client.list_runs(job_name=job, limit=1)
        state.newest = (page[0].run_id, page[0].created_at or "") if page else None
        state.started = True
        state.save()
        return
    for run in new_runs(client, job, state):
        state.watching.add(run.run_id)
        state.newest = (run.run_id, run.created_at or "")
    for run_id in sorted(state.watching):
        try:
            run, _ = client.get_run(run_id)
        except NotFound:  # deleted (retention) before it was seen to end
            state.watching.discard(run_id)
            continue
        if run.finished:
            react(client, run, downstream)
            state.watching.discard(run_id)
    state.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="react to the runs of this job")
    parser.add_argument("--submit", default=None, help="submit a run of this job for each SUCCESS")
    parser.add_argument("--state", required=True, type=pathlib.Path, help="the cursor's file")
    parser.add_argument("--address", default=None, help="the supervisor (default: $DAGD_HOME's)")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    home = pathlib.Path(os.environ.get("DAGD_HOME", pathlib.Path.home() / ".dagd"))
    state = State(args.state)
    with Client.for_home(home, address=args.address, token=os.environ.get("DAGD_TOKEN")) as client:
        while True:
            try:
                poll_once(client, args.job, args.submit, state)
            except SupervisorUnreachable as exc:  # restarting: try again next time
                print(f"service: {exc}", file=sys.stderr, flush=True)
            except DagdError as exc:
                print(f"service: error: {exc}", file=sys.stderr, flush=True)
            time.sleep(args.poll_seconds)


if __name__ == "__main__":
    main()
