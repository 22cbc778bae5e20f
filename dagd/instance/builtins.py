"""The built-in plug-ins: the run coordinators and run launchers dagd ships, and the pydantic model
each one's ``config`` section is checked against.

The one list read by :func:`dagd.instance.config.load_instance_config` (which checks some of them
when dagd.yaml is read), by the classes' ``config_model``
(:class:`dagd.instance.instance.BuiltinConfigModel`) and by the public package
:mod:`dagd.run_launcher`. Models are named, not imported: this module (which every daemon imports)
stays free of pydantic, and imports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COORDINATOR_MODULE = "dagd.run_coordinator"
LAUNCHER_MODULE = "dagd.run_launcher"


@dataclass(frozen=True)
class Builtin:
    section: str  # the dagd.yaml section that names it: run_coordinator or run_launcher
    module: str  # the public module dagd.yaml names
    class_name: str
    config_model: str  # a model class of dagd.instance.config
    # True: its config is checked when dagd.yaml is read, so every command refuses a bad one.
    # False: only when the plug-in is built (the local launcher; unchanged since it was added).
    checked_on_load: bool


QUEUED_COORDINATOR = Builtin(
    "run_coordinator", COORDINATOR_MODULE, "QueuedRunCoordinator", "QueuedRunCoordinatorConfig", True
)
DEFAULT_COORDINATOR = Builtin(
    "run_coordinator", COORDINATOR_MODULE, "DefaultRunCoordinator", "NoConfig", True
)
LOCAL_LAUNCHER = Builtin(
    "run_launcher", LAUNCHER_MODULE, "LocalProcessRunLauncher", "LocalProcessRunLauncherConfig", False
)
CELERY_LAUNCHER = Builtin(
    "run_launcher", LAUNCHER_MODULE, "CeleryRunLauncher", "CeleryRunLauncherConfig", True
)

BUILTINS: tuple[Builtin, ...] = (QUEUED_COORDINATOR, DEFAULT_COORDINATOR, LOCAL_LAUNCHER, CELERY_LAUNCHER)


def named(section: str, module: str, class_name: str) -> Builtin | None:
    """The built-in plug-in a dagd.yaml section names, or None for a custom class."""
    for builtin in BUILTINS:
        if (builtin.section, builtin.module, builtin.class_name) == (section, module, class_name):
            return builtin
    return None


def is_named(builtin: Builtin, section: Any) -> bool:
    """True if a ``run_coordinator`` / ``run_launcher`` section names ``builtin``."""
    return (section.module, section.class_name) == (builtin.module, builtin.class_name)
