from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    QUEUED: _ClassVar[RunStatus]
    NOT_STARTED: _ClassVar[RunStatus]
    STARTING: _ClassVar[RunStatus]
    STARTED: _ClassVar[RunStatus]
    SUCCESS: _ClassVar[RunStatus]
    FAILURE: _ClassVar[RunStatus]
    CANCELING: _ClassVar[RunStatus]
    CANCELED: _ClassVar[RunStatus]
RUN_STATUS_UNSPECIFIED: RunStatus
QUEUED: RunStatus
NOT_STARTED: RunStatus
STARTING: RunStatus
STARTED: RunStatus
SUCCESS: RunStatus
FAILURE: RunStatus
CANCELING: RunStatus
CANCELED: RunStatus

class Run(_message.Message):
    __slots__ = ("run_id", "job_name", "status", "tags", "priority", "created_at", "started_at", "ended_at", "run_config_json", "error", "worker_pid", "code_location", "attempt", "host", "run_config")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    CODE_LOCATION_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    job_name: str
    status: RunStatus
    tags: _containers.ScalarMap[str, str]
    priority: int
    created_at: str
    started_at: str
    ended_at: str
    run_config_json: str
    error: str
    worker_pid: int
    code_location: str
    attempt: int
    host: str
    run_config: _struct_pb2.Struct
    def __init__(self, run_id: _Optional[str] = ..., job_name: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., tags: _Optional[_Mapping[str, str]] = ..., priority: _Optional[int] = ..., created_at: _Optional[str] = ..., started_at: _Optional[str] = ..., ended_at: _Optional[str] = ..., run_config_json: _Optional[str] = ..., error: _Optional[str] = ..., worker_pid: _Optional[int] = ..., code_location: _Optional[str] = ..., attempt: _Optional[int] = ..., host: _Optional[str] = ..., run_config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RunAttempt(_message.Message):
    __slots__ = ("attempt", "state", "host", "pid", "worker", "queue", "dispatched_at", "claimed_at", "heartbeat_at", "ended_at", "end_reason")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    DISPATCHED_AT_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_AT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    state: str
    host: str
    pid: int
    worker: str
    queue: str
    dispatched_at: str
    claimed_at: str
    heartbeat_at: str
    ended_at: str
    end_reason: str
    def __init__(self, attempt: _Optional[int] = ..., state: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., worker: _Optional[str] = ..., queue: _Optional[str] = ..., dispatched_at: _Optional[str] = ..., claimed_at: _Optional[str] = ..., heartbeat_at: _Optional[str] = ..., ended_at: _Optional[str] = ..., end_reason: _Optional[str] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("at", "kind", "status", "message")
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    at: str
    kind: str
    status: RunStatus
    message: str
    def __init__(self, at: _Optional[str] = ..., kind: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., message: _Optional[str] = ...) -> None: ...

class SubmitRunRequest(_message.Message):
    __slots__ = ("job_name", "tags", "run_config_json", "priority", "idempotency_key", "run_config")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RUN_CONFIG_FIELD_NUMBER: _ClassVar[int]
    job_name: str
    tags: _containers.ScalarMap[str, str]
    run_config_json: str
    priority: int
    idempotency_key: str
    run_config: _struct_pb2.Struct
    def __init__(self, job_name: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., run_config_json: _Optional[str] = ..., priority: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., run_config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run", "events", "attempts")
    RUN_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    run: Run
    events: _containers.RepeatedCompositeFieldContainer[RunEvent]
    attempts: _containers.RepeatedCompositeFieldContainer[RunAttempt]
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ..., events: _Optional[_Iterable[_Union[RunEvent, _Mapping]]] = ..., attempts: _Optional[_Iterable[_Union[RunAttempt, _Mapping]]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("statuses", "job_name", "tags", "limit", "page_token")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[RunStatus]
    job_name: str
    tags: _containers.ScalarMap[str, str]
    limit: int
    page_token: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[RunStatus, str]]] = ..., job_name: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TerminateRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class TerminateRunResponse(_message.Message):
    __slots__ = ("run", "changed")
    RUN_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    run: Run
    changed: bool
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class ReadRunLogsRequest(_message.Message):
    __slots__ = ("run_id", "after_seq", "limit")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_seq: int
    limit: int
    def __init__(self, run_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("seq", "at", "stream", "level", "message")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: str
    stream: str
    level: str
    message: str
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[str] = ..., stream: _Optional[str] = ..., level: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ReadRunLogsResponse(_message.Message):
    __slots__ = ("lines", "last_seq", "run_status")
    LINES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    last_seq: int
    run_status: RunStatus
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., last_seq: _Optional[int] = ..., run_status: _Optional[_Union[RunStatus, str]] = ...) -> None: ...

class GetInstanceInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InstanceInfo(_message.Message):
    __slots__ = ("version", "home", "storage", "run_coordinator", "run_launcher", "config_json", "supervisor_pid", "addresses", "code_locations", "role", "lease", "clock_skew_seconds")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HOME_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    RUN_LAUNCHER_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_PID_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    CODE_LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_SKEW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    home: str
    storage: str
    run_coordinator: str
    run_launcher: str
    config_json: str
    supervisor_pid: int
    addresses: _containers.RepeatedScalarFieldContainer[str]
    code_locations: _containers.RepeatedCompositeFieldContainer[CodeLocation]
    role: str
    lease: Lease
    clock_skew_seconds: float
    def __init__(self, version: _Optional[str] = ..., home: _Optional[str] = ..., storage: _Optional[str] = ..., run_coordinator: _Optional[str] = ..., run_launcher: _Optional[str] = ..., config_json: _Optional[str] = ..., supervisor_pid: _Optional[int] = ..., addresses: _Optional[_Iterable[str]] = ..., code_locations: _Optional[_Iterable[_Union[CodeLocation, _Mapping]]] = ..., role: _Optional[str] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., clock_skew_seconds: _Optional[float] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("holder", "epoch", "expires_in_seconds")
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    holder: str
    epoch: int
    expires_in_seconds: float
    def __init__(self, holder: _Optional[str] = ..., epoch: _Optional[int] = ..., expires_in_seconds: _Optional[float] = ...) -> None: ...

class CodeLocation(_message.Message):
    __slots__ = ("name", "jobs", "schedules", "sensors", "load_error", "server_healthy", "server_state", "server_pid", "generation", "definition_errors", "job_details")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    LOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    SERVER_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    SERVER_STATE_FIELD_NUMBER: _ClassVar[int]
    SERVER_PID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_ERRORS_FIELD_NUMBER: _ClassVar[int]
    JOB_DETAILS_FIELD_NUMBER: _ClassVar[int]
    name: str
    jobs: _containers.RepeatedScalarFieldContainer[str]
    schedules: _containers.RepeatedScalarFieldContainer[str]
    sensors: _containers.RepeatedScalarFieldContainer[str]
    load_error: str
    server_healthy: bool
    server_state: str
    server_pid: int
    generation: int
    definition_errors: _containers.RepeatedScalarFieldContainer[str]
    job_details: _containers.RepeatedCompositeFieldContainer[JobDetail]
    def __init__(self, name: _Optional[str] = ..., jobs: _Optional[_Iterable[str]] = ..., schedules: _Optional[_Iterable[str]] = ..., sensors: _Optional[_Iterable[str]] = ..., load_error: _Optional[str] = ..., server_healthy: _Optional[bool] = ..., server_state: _Optional[str] = ..., server_pid: _Optional[int] = ..., generation: _Optional[int] = ..., definition_errors: _Optional[_Iterable[str]] = ..., job_details: _Optional[_Iterable[_Union[JobDetail, _Mapping]]] = ...) -> None: ...

class JobDetail(_message.Message):
    __slots__ = ("name", "description", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TerminateRunsRequest(_message.Message):
    __slots__ = ("statuses", "job_name", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[RunStatus]
    job_name: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, statuses: _Optional[_Iterable[_Union[RunStatus, str]]] = ..., job_name: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TerminateRunsResponse(_message.Message):
    __slots__ = ("canceled_run_ids", "canceling_run_ids")
    CANCELED_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    CANCELING_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    canceled_run_ids: _containers.RepeatedScalarFieldContainer[str]
    canceling_run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, canceled_run_ids: _Optional[_Iterable[str]] = ..., canceling_run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ExplainRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RunExplanation(_message.Message):
    __slots__ = ("run_id", "status", "summary", "reasons", "holders", "position", "queue_paused", "queue_daemon_healthy", "run_coordinator", "launchable")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    HOLDERS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_PAUSED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DAEMON_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    RUN_COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    LAUNCHABLE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: RunStatus
    summary: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    holders: _containers.RepeatedScalarFieldContainer[str]
    position: int
    queue_paused: bool
    queue_daemon_healthy: bool
    run_coordinator: str
    launchable: bool
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., summary: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., holders: _Optional[_Iterable[str]] = ..., position: _Optional[int] = ..., queue_paused: _Optional[bool] = ..., queue_daemon_healthy: _Optional[bool] = ..., run_coordinator: _Optional[str] = ..., launchable: _Optional[bool] = ...) -> None: ...

class QueueStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TagLimitUsage(_message.Message):
    __slots__ = ("limit", "in_use", "capacity", "key", "value", "per_unique_value")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PER_UNIQUE_VALUE_FIELD_NUMBER: _ClassVar[int]
    limit: str
    in_use: int
    capacity: int
    key: str
    value: str
    per_unique_value: bool
    def __init__(self, limit: _Optional[str] = ..., in_use: _Optional[int] = ..., capacity: _Optional[int] = ..., key: _Optional[str] = ..., value: _Optional[str] = ..., per_unique_value: _Optional[bool] = ...) -> None: ...

class QueueStatus(_message.Message):
    __slots__ = ("paused", "queued", "in_progress", "max_concurrent_runs", "tag_limits", "queue_daemon_healthy", "run_coordinator")
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_RUNS_FIELD_NUMBER: _ClassVar[int]
    TAG_LIMITS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DAEMON_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    RUN_COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    paused: bool
    queued: int
    in_progress: int
    max_concurrent_runs: int
    tag_limits: _containers.RepeatedCompositeFieldContainer[TagLimitUsage]
    queue_daemon_healthy: bool
    run_coordinator: str
    def __init__(self, paused: _Optional[bool] = ..., queued: _Optional[int] = ..., in_progress: _Optional[int] = ..., max_concurrent_runs: _Optional[int] = ..., tag_limits: _Optional[_Iterable[_Union[TagLimitUsage, _Mapping]]] = ..., queue_daemon_healthy: _Optional[bool] = ..., run_coordinator: _Optional[str] = ...) -> None: ...

class SetQueuePausedRequest(_message.Message):
    __slots__ = ("paused",)
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    paused: bool
    def __init__(self, paused: _Optional[bool] = ...) -> None: ...

class DaemonStatus(_message.Message):
    __slots__ = ("name", "healthy", "state", "detail", "pid", "incarnation", "uptime_seconds", "last_heartbeat_at", "iteration", "phase", "restarts", "restarts_by_reason", "last_exit", "last_errors", "degraded", "info_json", "last_exit_reason", "heartbeat_age_seconds", "info")
    class RestartsByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERRORS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_REASON_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    name: str
    healthy: bool
    state: str
    detail: str
    pid: int
    incarnation: int
    uptime_seconds: float
    last_heartbeat_at: str
    iteration: int
    phase: str
    restarts: int
    restarts_by_reason: _containers.ScalarMap[str, int]
    last_exit: str
    last_errors: _containers.RepeatedScalarFieldContainer[str]
    degraded: bool
    info_json: str
    last_exit_reason: str
    heartbeat_age_seconds: float
    info: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., healthy: _Optional[bool] = ..., state: _Optional[str] = ..., detail: _Optional[str] = ..., pid: _Optional[int] = ..., incarnation: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., last_heartbeat_at: _Optional[str] = ..., iteration: _Optional[int] = ..., phase: _Optional[str] = ..., restarts: _Optional[int] = ..., restarts_by_reason: _Optional[_Mapping[str, int]] = ..., last_exit: _Optional[str] = ..., last_errors: _Optional[_Iterable[str]] = ..., degraded: _Optional[bool] = ..., info_json: _Optional[str] = ..., last_exit_reason: _Optional[str] = ..., heartbeat_age_seconds: _Optional[float] = ..., info: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetDaemonStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDaemonStatusResponse(_message.Message):
    __slots__ = ("daemons", "draining", "role")
    DAEMONS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    daemons: _containers.RepeatedCompositeFieldContainer[DaemonStatus]
    draining: bool
    role: str
    def __init__(self, daemons: _Optional[_Iterable[_Union[DaemonStatus, _Mapping]]] = ..., draining: _Optional[bool] = ..., role: _Optional[str] = ...) -> None: ...

class RestartDaemonRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RestartDaemonResponse(_message.Message):
    __slots__ = ("daemon",)
    DAEMON_FIELD_NUMBER: _ClassVar[int]
    daemon: DaemonStatus
    def __init__(self, daemon: _Optional[_Union[DaemonStatus, _Mapping]] = ...) -> None: ...

class Tick(_message.Message):
    __slots__ = ("id", "status", "scheduled_time", "run_ids", "skip_reason", "error", "started_at", "ended_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    status: str
    scheduled_time: str
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    skip_reason: str
    error: str
    started_at: str
    ended_at: str
    def __init__(self, id: _Optional[int] = ..., status: _Optional[str] = ..., scheduled_time: _Optional[str] = ..., run_ids: _Optional[_Iterable[str]] = ..., skip_reason: _Optional[str] = ..., error: _Optional[str] = ..., started_at: _Optional[str] = ..., ended_at: _Optional[str] = ...) -> None: ...

class Instigator(_message.Message):
    __slots__ = ("name", "kind", "code_location", "status", "job_name", "cron_schedule", "execution_timezone", "minimum_interval_seconds", "next_tick_at", "definition_error", "cursor", "has_cursor", "last_tick")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CODE_LOCATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    CRON_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_TICK_AT_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_ERROR_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    HAS_CURSOR_FIELD_NUMBER: _ClassVar[int]
    LAST_TICK_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    code_location: str
    status: str
    job_name: str
    cron_schedule: str
    execution_timezone: str
    minimum_interval_seconds: float
    next_tick_at: str
    definition_error: str
    cursor: str
    has_cursor: bool
    last_tick: Tick
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., code_location: _Optional[str] = ..., status: _Optional[str] = ..., job_name: _Optional[str] = ..., cron_schedule: _Optional[str] = ..., execution_timezone: _Optional[str] = ..., minimum_interval_seconds: _Optional[float] = ..., next_tick_at: _Optional[str] = ..., definition_error: _Optional[str] = ..., cursor: _Optional[str] = ..., has_cursor: _Optional[bool] = ..., last_tick: _Optional[_Union[Tick, _Mapping]] = ...) -> None: ...

class ListInstigatorsRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    def __init__(self, kind: _Optional[str] = ...) -> None: ...

class ListInstigatorsResponse(_message.Message):
    __slots__ = ("instigators",)
    INSTIGATORS_FIELD_NUMBER: _ClassVar[int]
    instigators: _containers.RepeatedCompositeFieldContainer[Instigator]
    def __init__(self, instigators: _Optional[_Iterable[_Union[Instigator, _Mapping]]] = ...) -> None: ...

class SetInstigatorStatusRequest(_message.Message):
    __slots__ = ("kind", "name", "running")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    running: bool
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., running: _Optional[bool] = ...) -> None: ...

class ListTicksRequest(_message.Message):
    __slots__ = ("kind", "name", "limit")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    limit: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTicksResponse(_message.Message):
    __slots__ = ("ticks",)
    TICKS_FIELD_NUMBER: _ClassVar[int]
    ticks: _containers.RepeatedCompositeFieldContainer[Tick]
    def __init__(self, ticks: _Optional[_Iterable[_Union[Tick, _Mapping]]] = ...) -> None: ...

class PreviewScheduleRequest(_message.Message):
    __slots__ = ("name", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class PreviewScheduleResponse(_message.Message):
    __slots__ = ("execution_timezone", "ticks_utc", "ticks_local")
    EXECUTION_TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    TICKS_UTC_FIELD_NUMBER: _ClassVar[int]
    TICKS_LOCAL_FIELD_NUMBER: _ClassVar[int]
    execution_timezone: str
    ticks_utc: _containers.RepeatedScalarFieldContainer[str]
    ticks_local: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, execution_timezone: _Optional[str] = ..., ticks_utc: _Optional[_Iterable[str]] = ..., ticks_local: _Optional[_Iterable[str]] = ...) -> None: ...

class SetSensorCursorRequest(_message.Message):
    __slots__ = ("name", "cursor", "clear")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    cursor: str
    clear: bool
    def __init__(self, name: _Optional[str] = ..., cursor: _Optional[str] = ..., clear: _Optional[bool] = ...) -> None: ...

class DeleteRunsRequest(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteRunsResponse(_message.Message):
    __slots__ = ("deleted_run_ids",)
    DELETED_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    deleted_run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted_run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PurgeRunsRequest(_message.Message):
    __slots__ = ("older_than_days", "statuses", "limit")
    OLDER_THAN_DAYS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    older_than_days: float
    statuses: _containers.RepeatedScalarFieldContainer[RunStatus]
    limit: int
    def __init__(self, older_than_days: _Optional[float] = ..., statuses: _Optional[_Iterable[_Union[RunStatus, str]]] = ..., limit: _Optional[int] = ...) -> None: ...

class PurgeRunsResponse(_message.Message):
    __slots__ = ("deleted", "more")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    more: bool
    def __init__(self, deleted: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...

class ResolveRunIdRequest(_message.Message):
    __slots__ = ("run_id_or_prefix",)
    RUN_ID_OR_PREFIX_FIELD_NUMBER: _ClassVar[int]
    run_id_or_prefix: str
    def __init__(self, run_id_or_prefix: _Optional[str] = ...) -> None: ...

class ResolveRunIdResponse(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class SubmitRunsRequest(_message.Message):
    __slots__ = ("runs", "run_ids_only")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_ONLY_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[SubmitRunRequest]
    run_ids_only: bool
    def __init__(self, runs: _Optional[_Iterable[_Union[SubmitRunRequest, _Mapping]]] = ..., run_ids_only: _Optional[bool] = ...) -> None: ...

class SubmitRunsResponse(_message.Message):
    __slots__ = ("runs", "run_ids")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchRunsRequest(_message.Message):
    __slots__ = ("cursor", "statuses", "job_name", "tags", "from_beginning", "run_ids")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FROM_BEGINNING_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    statuses: _containers.RepeatedScalarFieldContainer[RunStatus]
    job_name: str
    tags: _containers.ScalarMap[str, str]
    from_beginning: bool
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cursor: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[RunStatus, str]]] = ..., job_name: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., from_beginning: _Optional[bool] = ..., run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RunChange(_message.Message):
    __slots__ = ("status", "at", "message", "run", "run_id", "event_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    status: RunStatus
    at: str
    message: str
    run: Run
    run_id: str
    event_id: int
    def __init__(self, status: _Optional[_Union[RunStatus, str]] = ..., at: _Optional[str] = ..., message: _Optional[str] = ..., run: _Optional[_Union[Run, _Mapping]] = ..., run_id: _Optional[str] = ..., event_id: _Optional[int] = ...) -> None: ...

class WatchRunsResponse(_message.Message):
    __slots__ = ("cursor", "change")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    change: RunChange
    def __init__(self, cursor: _Optional[str] = ..., change: _Optional[_Union[RunChange, _Mapping]] = ...) -> None: ...

class FollowRunLogsRequest(_message.Message):
    __slots__ = ("run_id", "after_seq")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_seq: int
    def __init__(self, run_id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class FollowRunLogsResponse(_message.Message):
    __slots__ = ("lines", "run_status")
    LINES_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    run_status: RunStatus
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., run_status: _Optional[_Union[RunStatus, str]] = ...) -> None: ...

class WatchDaemonsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchDaemonsResponse(_message.Message):
    __slots__ = ("daemon", "role")
    DAEMON_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    daemon: DaemonStatus
    role: str
    def __init__(self, daemon: _Optional[_Union[DaemonStatus, _Mapping]] = ..., role: _Optional[str] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerHost(_message.Message):
    __slots__ = ("name", "host", "queues", "slots", "in_use", "accepting", "last_heartbeat_at", "healthy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    IN_USE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTING_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    slots: int
    in_use: int
    accepting: bool
    last_heartbeat_at: str
    healthy: bool
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., slots: _Optional[int] = ..., in_use: _Optional[int] = ..., accepting: _Optional[bool] = ..., last_heartbeat_at: _Optional[str] = ..., healthy: _Optional[bool] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerHost]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerHost, _Mapping]]] = ...) -> None: ...
