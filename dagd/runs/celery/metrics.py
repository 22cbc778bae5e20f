"""A worker host's own Prometheus endpoint (``dagctl worker run --metrics-port N``).

Read at each scrape from the host's live state, never counted ahead: its slots and slots in use,
whether it takes runs, and its consumer watchdog's counters. In its own registry (no default
process collectors), like the supervisor's (:mod:`dagd.supervisor.metrics`). The fleet as a whole
(every host's row, healthy or not) is the supervisor's ``dagctl workers status``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from dagd import __version__

if TYPE_CHECKING:
    from dagd.runs.celery.host import WorkerHost
    from dagd.runs.celery.watchdog import ConsumerWatchdog

log = logging.getLogger("dagd.worker_host")


class WorkerHostCollector(Collector):
    def __init__(self, host: WorkerHost, watchdog: ConsumerWatchdog) -> None:
        self.host = host
        self.watchdog = watchdog

    def collect(self) -> Iterator[Metric]:
        host, labels = self.host, ["worker"]
        yield InfoMetricFamily(
            "dagd_worker_host",
            "This dagd worker host.",
            value={"version": __version__, "worker": host.name, "queues": ",".join(host.queues)},
        )
        for name, text, value in (
            ("dagd_worker_slots", "Runs this host takes at once (--concurrency).", host.slots),
            ("dagd_worker_slots_in_use", "Attempts this host is running now.", host.in_use),
            ("dagd_worker_accepting", "1 while the host takes runs, 0 while it drains.", int(host.accepting)),
        ):
            gauge = GaugeMetricFamily(name, text, labels=labels)
            gauge.add_metric([host.name], float(value))
            yield gauge
        for name, text, count in (
            (
                "dagd_worker_messages_received",
                "Messages the host's consumer received.",
                self.watchdog.received_count,
            ),
            (
                "dagd_worker_consumer_restarts",
                "Consumer restarts by the watchdog (messages waited, nothing was received).",
                self.watchdog.restarts,
            ),
        ):
            counter = CounterMetricFamily(name, text, labels=labels)
            counter.add_metric([host.name], float(count))
            yield counter


def serve(host: WorkerHost, watchdog: ConsumerWatchdog, port: int, address: str) -> Any:
    """Serve ``/metrics`` on ``address:port`` in a thread; the server (``shutdown()`` stops it)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(WorkerHostCollector(host, watchdog))
    server, _thread = start_http_server(port, addr=address, registry=registry)
    log.info("metrics on http://%s:%d/metrics", address, server.server_port)
    return server
