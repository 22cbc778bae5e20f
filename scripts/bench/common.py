"""Shared pieces of the benchmarks: a throwaway instance with a running supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


# A benchmark stopped with SIGTERM (kill, a CI timeout) unwinds its context managers, which stop
# the supervisor they started; Python's default action would exit at once and leave it running.
signal.signal(signal.SIGTERM, _exit_on_sigterm)
BENCH_DEFS = pathlib.Path(__file__).with_name("bench_defs.py")
PG_BASE = os.environ.get("DAGD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def write_json(path: str | None, data: dict[str, Any]) -> None:
    """Machine-readable results for ``scripts/bench/run`` (``--json PATH``); the tables stay printed."""
    if path:
        pathlib.Path(path).write_text(json.dumps(data, indent=2, default=str))


def distribution(values: list[float], scale: float = 1.0) -> dict[str, Any]:
    """Median, p90, p99 and the raw samples (times ``scale``, e.g. 1000 for ms)."""
    scaled = [v * scale for v in values]
    return {
        "p50": statistics.median(scaled),
        "p90": percentile(scaled, 90),
        "p99": percentile(scaled, 99),
        "n": len(scaled),
        "samples": scaled,
    }


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 99):.1f} ms (n={len(ms)})"


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    schema = f"dagd_bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in PG_BASE else "?"
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextlib.contextmanager
def running_supervisor(
    config_yaml: str,
    backend: str = "sqlite",
    extra_env: dict[str, str] | None = None,
    defs: pathlib.Path = BENCH_DEFS,
    ready_timeout: float = 30,
) -> Iterator[pathlib.Path]:
    """Start `dagctl daemon run -f bench_defs.py` on a temporary home; stop it afterwards.

    ``extra_env`` is added to the supervisor's environment, which its daemons inherit (e.g. a
    PYTHONPATH under which a benchmark's own launcher module imports). ``defs`` replaces the
    default definitions file (e.g. one generated with many schedules).
    """
    with contextlib.ExitStack() as stack:
        home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dagd-bench-")))
        if backend == "postgres":
            url = stack.enter_context(postgres_schema())
            config_yaml = f"storage:\n  postgres:\n    url: '{url}'\n" + config_yaml
        (home / "dagd.yaml").write_text(config_yaml)
        env = {**os.environ, "DAGD_HOME": str(home), **(extra_env or {})}
        log = open(home / "supervisor.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagd.client.cli", "daemon", "run", "-f", str(defs)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                status = subprocess.run(
                    [sys.executable, "-m", "dagd.client.cli", "daemons", "status", "--json"],
                    env=env, capture_output=True, text=True,
                )  # fmt: skip
                if status.returncode == 0:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"supervisor did not become healthy:\n{(home / 'supervisor.log').read_text()}"
                    )
                time.sleep(0.2)
            yield home
        finally:
            stop_process(proc)
            log.close()


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM (an orderly stop), then SIGKILL if it has not exited within 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def address(home: pathlib.Path) -> str:
    return json.loads((home / "supervisor.json").read_text())["addresses"][0]
