"""The supervisor's Prometheus endpoint, scraped over real HTTP from a real ``dagctl dev``."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import urllib.error
import urllib.request

import pytest
from helpers.procs import DagdProcess, wait_for
from prometheus_client.parser import text_string_to_metric_families

from dagd import __version__

# Default heartbeat settings on purpose: a 3 s timeout on a busy CI machine adds stale-heartbeat
# restarts that have nothing to do with what is measured here.
CONFIG = """
daemons:
  restart:
    initial_backoff_seconds: 0.2
metrics:
  port: 0
"""

NAMES = {"scheduler", "run_queue", "sensor", "run_monitoring"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_url(home: pathlib.Path) -> str:
    return json.loads((home / "supervisor.json").read_text())["metrics"]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def promtool_problems(url: str) -> str:
    """What ``promtool check metrics`` says about a real scrape ("" when it is clean).

    promtool is Debian's ``prometheus`` package, which scripts/test installs when it is missing.
    """
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read()
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30)
    return (
        "" if checked.returncode == 0 else f"exit {checked.returncode}: {checked.stdout!r} {checked.stderr!r}"
    )


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.mark.timeout(60)
def test_metrics_report_daemons_runs_and_restarts_and_stop_with_the_supervisor(
    dagd: DagdProcess, defs_file: pathlib.Path, home: pathlib.Path
) -> None:
    dagd.write_config(CONFIG)
    dagd.start("-f", str(defs_file))
    url = metrics_url(home)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics") and ":0/" not in url

    samples = wait_for(
        lambda: (s := scrape(url)) and all(value(s, "dagd_daemon_up", daemon=n) == 1 for n in NAMES) and s,
        10,
        "every daemon reported up",
    )
    assert value(samples, "dagd_supervisor_info", version=__version__) == 1
    assert value(samples, "dagd_storage_up") == 1
    for name in NAMES:
        assert value(samples, "dagd_daemon_degraded", daemon=name) == 0
        age = value(samples, "dagd_daemon_heartbeat_age_seconds", daemon=name)
        assert age is not None and 0 <= age < 20  # within the default heartbeat timeout
        assert value(samples, "dagd_daemon_restarts_total", daemon=name, reason="SIGNAL") == 0
    assert value(samples, "dagd_runs", status="SUCCESS") == 0

    submitted = dagd.ctl("submit", "hello", "--json")
    assert submitted.code == 0, submitted.stderr
    run_id = submitted.json()["run_id"]
    wait_for(
        lambda: dagd.ctl("runs", "show", run_id, "--json").json()["status"] == "SUCCESS",
        20,
        f"run {run_id} to succeed",
    )
    samples = scrape(url)
    assert value(samples, "dagd_runs", status="SUCCESS") == 1
    # Every family present (daemons, runs, a restart counter): promtool's lint finds nothing.
    assert promtool_problems(url) == ""
    assert sum(v for (name, _), v in samples.items() if name == "dagd_runs") == 1

    old = dagd.daemons()["run_queue"]["pid"]
    os.kill(old, signal.SIGKILL)
    last: Samples = {}

    def restarted() -> bool:
        last.update(scrape(url))
        signals = value(last, "dagd_daemon_restarts_total", daemon="run_queue", reason="SIGNAL")
        return signals == 1 and value(last, "dagd_daemon_up", daemon="run_queue") == 1

    try:
        wait_for(restarted, 20, "run_queue's SIGKILL counted as a SIGNAL restart and the daemon up again")
    except AssertionError as exc:
        seen = {k: v for k, v in last.items() if ("daemon", "run_queue") in k[1]}
        raise AssertionError(f"{exc}\nlast run_queue samples: {seen}\n{dagd.log()}") from None
    others = scrape(url)
    assert all(
        value(others, "dagd_daemon_restarts_total", daemon=n, reason="SIGNAL") == 0
        for n in NAMES - {"run_queue"}
    )

    dagd.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


@pytest.mark.timeout(60)
def test_no_metrics_endpoint_unless_configured(
    dagd: DagdProcess, defs_file: pathlib.Path, home: pathlib.Path
) -> None:
    dagd.start("-f", str(defs_file))
    assert "metrics" not in json.loads((home / "supervisor.json").read_text())
