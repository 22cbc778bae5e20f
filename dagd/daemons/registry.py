"""Name -> daemon class. The names are the same in the config, the CLI, storage and process titles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dagd.daemons.base import Daemon

if TYPE_CHECKING:
    from dagd.instance.instance import Instance


def make_daemon(name: str, instance: Instance) -> Daemon:
    from dagd.daemons.run_monitoring import RunMonitoringDaemon
    from dagd.daemons.run_queue import RunQueueDaemon
    from dagd.daemons.scheduler import SchedulerDaemon
    from dagd.daemons.sensor import SensorDaemon

    classes: dict[str, type[Daemon]] = {
        "scheduler": SchedulerDaemon,
        "run_queue": RunQueueDaemon,
        "sensor": SensorDaemon,
        "run_monitoring": RunMonitoringDaemon,
    }
    return classes[name](instance)
