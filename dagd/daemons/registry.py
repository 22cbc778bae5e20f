"""Name -> daemon class. The names are the same in the config, the CLI, storage and process titles."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagd.daemons.base import Daemon
    from dagd.instance.instance import Instance


# name -> (module, class). Each daemon process imports only its own module: the scheduler's cron
# library or the run queue's launcher would be dead weight (memory) in the other three.
DAEMON_CLASSES: dict[str, tuple[str, str]] = {
    "scheduler": ("dagd.daemons.scheduler", "SchedulerDaemon"),
    "run_queue": ("dagd.daemons.run_queue", "RunQueueDaemon"),
    "sensor": ("dagd.daemons.sensor", "SensorDaemon"),
    "run_monitoring": ("dagd.daemons.run_monitoring", "RunMonitoringDaemon"),
}


def daemon_class(name: str) -> type[Daemon]:
    module, class_name = DAEMON_CLASSES[name]
    cls: type[Daemon] = getattr(importlib.import_module(module), class_name)
    return cls


def make_daemon(name: str, instance: Instance) -> Daemon:
    return daemon_class(name)(instance)
