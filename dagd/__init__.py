"""dagd: a daemon supervisor and run orchestrator for data pipelines, with a gRPC control plane.

User code imports its definitions API from here::

    from dagd import Definitions, RunRequest, SkipReason, job, schedule, sensor
"""

from dagd.definitions import (
    Definitions,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SkipReason,
    job,
    schedule,
    sensor,
)

__version__ = "0.1.0"

__all__ = [
    "Definitions",
    "JobDefinition",
    "RunRequest",
    "ScheduleDefinition",
    "SensorDefinition",
    "SkipReason",
    "job",
    "schedule",
    "sensor",
    "__version__",
]
