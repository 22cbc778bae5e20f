"""The supervisor's optional Prometheus endpoint (``metrics: {port: ..., host: ...}`` in dagd.yaml).

Nothing is counted ahead of time: at each scrape :class:`SupervisorCollector` reads the process
table's snapshot and one GROUP BY over the runs, so the numbers can never drift from what
``dagctl daemons status`` and ``dagctl runs list`` show. It lives in its own registry, not
prometheus_client's global one, so no library's default collectors leak into the output.

A storage outage never fails a scrape: the runs family is left out and ``dagd_storage_up`` is 0,
while the daemon families (which need no database) are still served.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from dagd import __version__
from dagd.errors import ConfigError, StorageUnavailable
from dagd.instance.instance import Instance
from dagd.runs.model import RunStatus
from dagd.storage.runs import RunStore
from dagd.supervisor.process_table import ProcessTable
from dagd.supervisor.states import ExitReason

log = logging.getLogger("dagd.supervisor")

# Every reason a restart can be counted under, so each series exists (at 0) from the first
# scrape and rate()/increase() see the first restart. SHUTDOWN never restarts anything.
RESTART_REASONS = tuple(r.value for r in ExitReason if r is not ExitReason.SHUTDOWN)


class SupervisorCollector(Collector):
    """Builds every dagd metric family from the live process table and storage, per scrape."""

    def __init__(self, table: ProcessTable, runs: RunStore, version: str = __version__) -> None:
        self.table = table
        self.runs = runs
        self.version = version

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily(
            "dagd_supervisor", "The running dagd supervisor.", value={"version": self.version}
        )
        yield from self._daemons()
        yield from self._runs()

    def _daemons(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dagd_daemon_up", "1 if the daemon is running and healthy.", labels=["daemon"])
        degraded = GaugeMetricFamily(
            "dagd_daemon_degraded", "1 if the daemon reports its storage unreachable.", labels=["daemon"]
        )
        age = GaugeMetricFamily(
            "dagd_daemon_heartbeat_age_seconds",
            "Seconds since the daemon's last sign of progress (absent while it has no process).",
            labels=["daemon"],
        )
        restarts = CounterMetricFamily(
            "dagd_daemon_restarts", "Restarts of the daemon, by why it ended.", labels=["daemon", "reason"]
        )
        for view in self.table.snapshot():
            up.add_metric([view.name], 1.0 if view.healthy else 0.0)
            degraded.add_metric([view.name], 1.0 if view.degraded else 0.0)
            if view.last_progress_age is not None:
                age.add_metric([view.name], view.last_progress_age)
            counts = {reason: 0 for reason in RESTART_REASONS} | view.restarts_by_reason
            for reason, count in sorted(counts.items()):
                restarts.add_metric([view.name, reason], float(count))
        yield from (up, degraded, age, restarts)

    def _runs(self) -> Iterator[Metric]:
        storage_up = GaugeMetricFamily("dagd_storage_up", "1 if the last scrape could read the runs.")
        try:
            counts = self.runs.count_by_status()
        except StorageUnavailable as exc:
            log.warning("metrics scrape without runs: %s", exc)
            storage_up.add_metric([], 0.0)
            yield storage_up
            return
        storage_up.add_metric([], 1.0)
        yield storage_up
        by_status = GaugeMetricFamily("dagd_runs", "Runs currently in each status.", labels=["status"])
        for status in RunStatus:
            by_status.add_metric([status.value], float(counts.get(status, 0)))
        yield by_status


@dataclass
class MetricsServer:
    """The HTTP listener serving ``/metrics``; ``url`` carries the port actually bound."""

    url: str
    server: WSGIServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()  # returns once serve_forever has left its loop (<= 0.5 s)
        self.server.server_close()
        self.thread.join(timeout=2)


def start_metrics_server(instance: Instance, table: ProcessTable) -> MetricsServer | None:
    """Serve metrics when ``metrics.port`` is set (0 picks a free port); None when it is not."""
    config = instance.config.metrics
    if config.port is None:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SupervisorCollector(table, instance.storage.runs))
    try:
        server, thread = start_http_server(config.port, addr=config.host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"{instance.config_file}: metrics: cannot listen on {config.host}:{config.port}: "
            f"{exc.strerror or exc}"
        ) from None
    host = f"[{config.host}]" if ":" in config.host else config.host
    return MetricsServer(f"http://{host}:{server.server_port}/metrics", server, thread)
