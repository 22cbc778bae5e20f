"""The instance file, ``$DAGD_HOME/dagd.yaml``: its schema, defaults and validation.

Reading the file is three steps, each of which can only fail with a one-line :class:`ConfigError`
naming the file, the key path and the reason:

1. parse YAML (duplicate keys are refused; a missing or empty file means all defaults);
2. replace every ``{env: VAR}`` mapping with the variable's value;
3. validate against the pydantic models below, which refuse unknown keys, wrong types and
   out-of-range values. Pydantic's error records are translated into short human reasons here,
   in one place, so every caller reports bad configuration the same way.

``run_coordinator.config`` and ``run_launcher.config`` stay free-form dicts in
:class:`InstanceConfig` because a user-supplied class owns its own schema; such a class validates
its section with :func:`validate_section`. The sections of the built-in plug-ins
(:mod:`dagd.instance.builtins`) marked ``checked_on_load`` are also checked at load, so
``max_concurrent_runs: -5`` fails at start rather than at first dequeue.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from dagd.errors import ConfigError
from dagd.instance.builtins import CELERY_LAUNCHER, LOCAL_LAUNCHER, QUEUED_COORDINATOR, is_named
from dagd.instance.builtins import named as named_builtin
from dagd.masking import is_secret_key, mask_secrets
from dagd.runs.model import QUEUE_NAME

DAEMON_NAMES: tuple[str, ...] = ("scheduler", "run_queue", "sensor", "run_monitoring")

DEFAULT_COORDINATOR_MODULE = QUEUED_COORDINATOR.module
DEFAULT_COORDINATOR_CLASS = QUEUED_COORDINATOR.class_name
DEFAULT_LAUNCHER_MODULE = LOCAL_LAUNCHER.module
DEFAULT_LAUNCHER_CLASS = LOCAL_LAUNCHER.class_name

# Keys whose values never appear in displays or error messages.

Port = Annotated[int, Field(ge=0, le=65535)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class _KeyProblem(ValueError):
    """Raised by a cross-field check to blame one key rather than the whole section.

    Pydantic locates model-level errors at the section; the translator appends ``key`` so the
    message names the field the user has to change.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key


def _numeric_kind(annotation: Any) -> str | None:
    """'an integer' / 'a number' for int / float fields (optional or constrained), else None."""
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            return None
        annotation = members[0]
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return {int: "an integer", float: "a number"}.get(annotation)


class _Model(BaseModel):
    # frozen: one parsed config is shared by every component of a process; nobody may edit it.
    # allow_inf_nan=False: ".inf" is valid YAML but never a sensible timeout.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _blank_section_and_bool_guard(cls, data: Any) -> Any:
        # `daemons:` with every child commented out parses as null; it means "all defaults".
        if data is None and not any(f.is_required() for f in cls.model_fields.values()):
            return {}
        # Pydantic's lax mode reads `true` as 1; in a config file that is a typo, not a number.
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                key = field.alias or name
                kind = _numeric_kind(field.annotation)
                if kind and isinstance(data.get(key), bool):
                    raise _KeyProblem(key, f"expected {kind}, got {_describe(data[key])}")
        return data


# ---------------------------------------------------------------------------------------------
# storage


class SqliteStorageConfig(_Model):
    base_dir: NonEmptyStr = "storage"

    def resolve_dir(self, home: Path) -> Path:
        """The storage directory; a relative ``base_dir`` is relative to ``$DAGD_HOME``."""
        path = Path(self.base_dir).expanduser()
        return path if path.is_absolute() else home / path


class PostgresStorageConfig(_Model):
    url: NonEmptyStr

    @field_validator("url")
    @classmethod
    def _looks_like_url(cls, url: str) -> str:
        # The reason must not echo the value: it may carry a password.
        if "://" not in url:
            raise ValueError("expected a database URL such as postgresql+psycopg://user:password@host/db")
        return url


class StorageConfig(_Model):
    sqlite: SqliteStorageConfig | None = None
    postgres: PostgresStorageConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_to_sqlite(cls, data: Any) -> Any:
        if data is None:
            data = {}
        if isinstance(data, dict) and data.get("sqlite") is None and data.get("postgres") is None:
            return {**data, "sqlite": {}}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> StorageConfig:
        if self.sqlite is not None and self.postgres is not None:
            raise ValueError("give one of sqlite or postgres, not both")
        return self

    @property
    def kind(self) -> Literal["sqlite", "postgres"]:
        return "postgres" if self.postgres is not None else "sqlite"


# ---------------------------------------------------------------------------------------------
# pluggable classes: run coordinator and run launcher


class _PluginConfig(_Model):
    module: str
    class_name: str = Field(alias="class")
    # Validated by the named class itself (see validate_section), since a custom class owns it.
    config: dict[str, Any] = {}

    @field_validator("module")
    @classmethod
    def _module_path(cls, module: str) -> str:
        if not all(part.isidentifier() for part in module.split(".")):
            raise ValueError(f"must be an importable module path like dagd.run_coordinator, got {module!r}")
        return module

    @field_validator("class_name")
    @classmethod
    def _class_name(cls, name: str) -> str:
        if not name.isidentifier():
            raise ValueError(f"must be a class name like QueuedRunCoordinator, got {name!r}")
        return name

    @field_validator("config", mode="before")
    @classmethod
    def _blank_config(cls, config: Any) -> Any:
        return {} if config is None else config


class RunCoordinatorConfig(_PluginConfig):
    module: str = DEFAULT_COORDINATOR_MODULE
    class_name: str = Field(default=DEFAULT_COORDINATOR_CLASS, alias="class")


class RunLauncherConfig(_PluginConfig):
    module: str = DEFAULT_LAUNCHER_MODULE
    class_name: str = Field(default=DEFAULT_LAUNCHER_CLASS, alias="class")


class PerUniqueValue(_Model):
    """``value: {applyLimitPerUniqueValue: true}``: the limit applies to each value separately."""

    apply_limit_per_unique_value: bool = Field(alias="applyLimitPerUniqueValue")


_BOOL: TypeAdapter[bool] = TypeAdapter(bool)


class TagConcurrencyLimit(_Model):
    key: NonEmptyStr
    value: str | PerUniqueValue | None = None
    limit: int = Field(ge=0)

    @field_validator("value", mode="before")
    @classmethod
    def _value_shape(cls, value: Any) -> Any:
        # Checked by hand so a bad value gets one clear reason instead of one error per union member.
        if value is None or isinstance(value, (str, PerUniqueValue)):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `value: 5` is a number in YAML; tag values are always strings
        if isinstance(value, dict) and set(value) == {"applyLimitPerUniqueValue"}:
            flag = value["applyLimitPerUniqueValue"]
            try:
                parsed = _BOOL.validate_python(flag)  # lax: accepts "true" from {env: VAR}
            except ValidationError:
                raise _KeyProblem(
                    "applyLimitPerUniqueValue", f"expected true or false, got {_describe(flag)}"
                ) from None
            return PerUniqueValue(applyLimitPerUniqueValue=parsed)
        raise ValueError(f"expected a string or {{applyLimitPerUniqueValue: true}}, got {_describe(value)}")

    @property
    def per_unique_value(self) -> bool:
        """True when each distinct value of ``key`` gets its own ``limit``."""
        return isinstance(self.value, PerUniqueValue) and self.value.apply_limit_per_unique_value

    @property
    def exact_value(self) -> str | None:
        """The one tag value this limit counts, or None when it counts any value of ``key``."""
        return self.value if isinstance(self.value, str) else None


class QueuedRunCoordinatorConfig(_Model):
    """The ``run_coordinator.config`` section of :class:`QueuedRunCoordinator`."""

    max_concurrent_runs: int = 10
    tag_concurrency_limits: list[TagConcurrencyLimit] = []
    # The run_queue daemon is woken on submission; this poll only catches missed wake-ups.
    dequeue_interval_seconds: PositiveSeconds = 5.0
    max_launch_retries: int = Field(default=0, ge=0)
    # After a failed launch, a retry waits backoff * 2^(failures-1), at most the max, with jitter
    # (between half and all of it), so a launcher that keeps failing is not hammered.
    launch_retry_backoff_seconds: PositiveSeconds = 1.0
    max_launch_retry_backoff_seconds: PositiveSeconds = 60.0

    @field_validator("max_concurrent_runs")
    @classmethod
    def _max_runs(cls, value: int) -> int:
        if value < -1:
            raise ValueError("must be -1 (no limit), 0, or a positive integer")
        return value

    @field_validator("tag_concurrency_limits", mode="before")
    @classmethod
    def _blank_limits(cls, value: Any) -> Any:
        return [] if value is None else value


class NoConfig(BaseModel):
    """The ``config`` section of a built-in plug-in that takes none (``DefaultRunCoordinator``):
    empty or absent, so that settings meant for another class are refused instead of ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalProcessRunLauncherConfig(BaseModel):
    """The ``run_launcher.config`` section of :class:`~dagd.run_launcher.LocalProcessRunLauncher`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fork_server: bool = True


_QUEUE_NAME = QUEUE_NAME  # one rule for the config, ``--queue`` and the ``dagd/queue`` tag


def check_queue_name(name: str) -> str:
    """A Celery queue name dagd accepts (config, ``dagd/queue`` tags, ``--queue``)."""
    if not _QUEUE_NAME.match(name):
        raise ValueError(
            f"must be a queue name of letters, digits and _ . : - (at most 200), got {_describe(name)}"
        )
    return name


class CeleryRunLauncherConfig(BaseModel):
    """The ``run_launcher.config`` section of :class:`~dagd.run_launcher.CeleryRunLauncher`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker_url: NonEmptyStr
    queue: str = "dagd"  # the default queue; a run's dagd/queue tag routes it elsewhere
    # A message not received by then is dropped by the worker (the relay sends a fresh one while
    # the attempt is still unclaimed, and run monitoring fails it after start_timeout_seconds).
    message_expiry_seconds: PositiveSeconds = 60
    # A dispatched attempt no worker claimed after this long is published again (same token).
    relay_after_seconds: PositiveSeconds = 3
    # How long one publish may retry while the broker does not answer; then the relay takes over.
    publish_timeout_seconds: PositiveSeconds = 2

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, url: str) -> str:
        scheme = url.partition("://")[0]
        if scheme not in ("amqp", "amqps", "pyamqp", "redis", "rediss"):
            raise ValueError("must be an amqp:// (RabbitMQ) or redis:// URL")
        return url

    @field_validator("queue")
    @classmethod
    def _queue(cls, name: str) -> str:
        return check_queue_name(name)


# ---------------------------------------------------------------------------------------------
# run monitoring, daemons


class RunMonitoringConfig(_Model):
    enabled: bool = True
    start_timeout_seconds: PositiveSeconds = 180
    cancel_timeout_seconds: PositiveSeconds = 180
    poll_interval_seconds: PositiveSeconds = 5
    max_resume_run_attempts: int = Field(default=0, ge=0)
    max_runtime_seconds: float = Field(default=0, ge=0)  # 0 = no instance-wide limit
    # A worker whose attempt has not heartbeat for this long, by the database's clock, is dead
    # (killed, frozen or cut off): its run is resumed or failed. Workers beat every min(2 s, 1/4 of it).
    worker_heartbeat_timeout_seconds: PositiveSeconds = 30


class SchedulerConfig(_Model):
    # After downtime, run at most this many of the missed ticks (the latest ones); the rest are
    # recorded as SKIPPED. Dagster runs only the latest missed tick, hence the default.
    max_catchup_runs: int = Field(default=1, ge=1, le=1000)
    evaluation_timeout_seconds: PositiveSeconds = 60


class SensorsConfig(_Model):
    evaluation_timeout_seconds: PositiveSeconds = 60
    # Sensors evaluated at the same time; a slow sensor holds one slot, never the others' cadence.
    max_concurrent_evaluations: int = Field(default=16, ge=1, le=256)


# ---------------------------------------------------------------------------------------------
# retention (Dagster's `retention:` shape for ticks, plus finished runs)

# Days to keep, or -1 to keep forever; fractions allowed (0.5 = 12 hours).
RetentionDays = float


def _check_days(key: str, days: float) -> None:
    if days < 0 and days != -1:
        raise _KeyProblem(key, f"must be -1 (keep forever) or a number of days >= 0, got {_number(days)}")


class TickRetention(_Model):
    """Days to keep a schedule's or sensor's finished ticks, by how they ended (-1: forever)."""

    skipped: RetentionDays = -1
    success: RetentionDays = -1
    failure: RetentionDays = -1

    @model_validator(mode="after")
    def _minus_one_or_positive(self) -> TickRetention:
        for key in ("skipped", "success", "failure"):
            _check_days(key, getattr(self, key))
        return self


class InstigatorRetention(_Model):
    # `purge_after_days: 7` (every status) or `{skipped: 7, success: -1, failure: -1}`, as Dagster.
    purge_after_days: TickRetention = TickRetention()

    @field_validator("purge_after_days", mode="before")
    @classmethod
    def _one_number_for_all(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"skipped": value, "success": value, "failure": value}
        return value


class RunRetention(_Model):
    purge_after_days: RetentionDays = -1  # finished runs (SUCCESS, FAILURE, CANCELED), by ended_at

    @model_validator(mode="after")
    def _minus_one_or_positive(self) -> RunRetention:
        _check_days("purge_after_days", self.purge_after_days)
        return self


class RetentionConfig(_Model):
    """What the supervisor purges, in small batches (dagd/supervisor/retention.py). The defaults
    keep everything but skipped sensor ticks, which a sensor polling every 30 s piles up by the
    thousand a day (Dagster's default too): a week of them is kept."""

    schedule: InstigatorRetention = InstigatorRetention()
    sensor: InstigatorRetention = InstigatorRetention(purge_after_days=TickRetention(skipped=7))
    runs: RunRetention = RunRetention()
    # How often the purge looks for expired rows, and how many rows one transaction deletes.
    purge_interval_seconds: PositiveSeconds = 600
    batch_size: int = Field(default=200, ge=1, le=10_000)


class RestartConfig(_Model):
    initial_backoff_seconds: PositiveSeconds = 0.5
    max_backoff_seconds: PositiveSeconds = 30
    budget: int = Field(default=5, ge=0)  # restarts allowed per window before the cooldown
    budget_window_seconds: PositiveSeconds = 60
    cooldown_seconds: float = Field(default=60, ge=0)

    @model_validator(mode="after")
    def _backoff_order(self) -> RestartConfig:
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise _KeyProblem("max_backoff_seconds", "must be >= initial_backoff_seconds")
        return self


class DaemonsConfig(_Model):
    heartbeat_interval_seconds: PositiveSeconds = 1.0
    heartbeat_timeout_seconds: PositiveSeconds = 20.0
    restart: RestartConfig = RestartConfig()
    stop_grace_seconds: float = Field(default=5, ge=0)
    enabled: list[str] | None = None  # None = all of DAEMON_NAMES
    # The supervisor lease's time to live (several supervisors: docs/high-availability.md); the
    # leader steps down 2/3 of it after its last successful renewal, a standby takes over after it.
    lease_ttl_seconds: float = Field(default=15, ge=3, le=300)

    @model_validator(mode="after")
    def _timeout_exceeds_interval(self) -> DaemonsConfig:
        # A timeout at or below the interval would declare every healthy daemon stale.
        if self.heartbeat_timeout_seconds <= self.heartbeat_interval_seconds:
            raise _KeyProblem(
                "heartbeat_timeout_seconds",
                f"must be greater than heartbeat_interval_seconds ({self.heartbeat_interval_seconds:g})",
            )
        return self

    @field_validator("enabled")
    @classmethod
    def _known_daemons(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        for index, name in enumerate(names):
            if name not in DAEMON_NAMES:
                raise _KeyProblem(str(index), f"must be one of {', '.join(DAEMON_NAMES)}, got {name!r}")
            if name in names[:index]:
                raise _KeyProblem(str(index), f"{name!r} is listed twice")
        return names

    @property
    def enabled_daemons(self) -> tuple[str, ...]:
        return DAEMON_NAMES if self.enabled is None else tuple(n for n in DAEMON_NAMES if n in self.enabled)


# ---------------------------------------------------------------------------------------------
# listeners


class TcpListenerConfig(_Model):
    host: NonEmptyStr = "127.0.0.1"
    port: Port


class TlsConfig(_Model):
    cert_file: NonEmptyStr
    key_file: NonEmptyStr


class GrpcConfig(_Model):
    socket: NonEmptyStr | None = None  # None = the default path under $DAGD_HOME, chosen by the supervisor
    tcp: TcpListenerConfig | None = None
    token: NonEmptyStr | None = None
    token_file: NonEmptyStr | None = None
    tls: TlsConfig | None = None
    max_message_bytes: int = Field(default=4 * 1024 * 1024, gt=0)

    @model_validator(mode="after")
    def _tcp_needs_auth(self) -> GrpcConfig:
        if self.token is not None and self.token_file is not None:
            raise _KeyProblem("token_file", "give token or token_file, not both")
        # The unix socket is guarded by file permissions; a TCP port is open to anyone who can reach it.
        if self.tcp is not None and self.token is None and self.token_file is None:
            raise _KeyProblem("tcp", "a TCP listener requires token or token_file")
        if self.tls is not None and self.tcp is None:
            raise _KeyProblem("tls", "TLS applies to the TCP listener; set grpc.tcp too")
        return self


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: a listener only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname may resolve anywhere


class WebserverConfig(_Model):
    host: NonEmptyStr = "127.0.0.1"
    port: Port = 3000  # 0 = any free port (the URL is published in $DAGD_HOME/webserver.json)
    # Optional access token: the browser signs in with it once; scripts may send it as a bearer token.
    token: NonEmptyStr | None = None
    token_file: NonEmptyStr | None = None
    # How often open pages refresh their live parts (runs, daemons, banner) in the browser.
    refresh_interval_seconds: float = Field(default=2.0, ge=0.5, le=3600)

    @model_validator(mode="after")
    def _exposed_needs_token(self) -> WebserverConfig:
        if self.token is not None and self.token_file is not None:
            raise _KeyProblem("token_file", "give token or token_file, not both")
        # Like grpc.tcp: a UI reachable from other machines can terminate runs, so it needs a token.
        if not is_loopback_host(self.host) and self.token is None and self.token_file is None:
            raise _KeyProblem("host", f"{self.host!r} is not a loopback address: set token or token_file")
        return self


class MetricsConfig(_Model):
    port: Port | None = None  # None = no metrics endpoint
    host: NonEmptyStr = "127.0.0.1"


class StreamsConfig(_Model):
    """Server-streaming RPCs (issue #20): how many at once, and how far a reader may lag."""

    max_streams: int = Field(default=1000, ge=1, le=100_000)  # past it: RESOURCE_EXHAUSTED
    # Batches of changes waiting for one slow reader before it is dropped ("fell behind").
    queue_size: int = Field(default=256, ge=1, le=100_000)
    # How often the shared reader looks for changes: SQLite always; PostgreSQL between NOTIFYs.
    poll_seconds: float | None = Field(default=None, gt=0, le=10)


class RunRetriesConfig(_Model):
    """Dagster's ``run_retries``: a FAILURE is retried as a new run (never a CANCELED one)."""

    enabled: bool = False
    max_retries: int = Field(default=0, ge=0, le=100)  # the tag dagd/max_retries overrides it per run


class InstanceConfig(_Model):
    storage: StorageConfig = StorageConfig()
    run_coordinator: RunCoordinatorConfig = RunCoordinatorConfig()
    run_launcher: RunLauncherConfig = RunLauncherConfig()
    run_monitoring: RunMonitoringConfig = RunMonitoringConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    sensors: SensorsConfig = SensorsConfig()
    daemons: DaemonsConfig = DaemonsConfig()
    grpc: GrpcConfig = GrpcConfig()
    webserver: WebserverConfig = WebserverConfig()
    metrics: MetricsConfig = MetricsConfig()
    retention: RetentionConfig = RetentionConfig()
    run_retries: RunRetriesConfig = RunRetriesConfig()
    streams: StreamsConfig = StreamsConfig()

    def dump_public(self) -> dict[str, Any]:
        """The configuration with YAML key names, safe to print: tokens and passwords masked."""
        return mask_secrets(self.model_dump(mode="json", by_alias=True))


# ---------------------------------------------------------------------------------------------
# loading


def config_path(home: Path, value: str) -> Path:
    """A file named in dagd.yaml: ``~`` is the user's home directory, and a relative path is
    under ``$DAGD_HOME`` (``home``), wherever the process was started from."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else home / path


def read_token_file(home: Path, value: str, *, key: str, config_file: Path) -> str:
    """The token in the file ``key`` (``grpc.token_file``, ``webserver.token_file``) names,
    stripped; an unreadable or empty file is a ConfigError naming the key and the path."""
    path = config_path(home, value)
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{config_file}: {key}: cannot read {path}: {exc.strerror or exc}") from None
    if not token:
        raise ConfigError(f"{config_file}: {key}: {path} is empty")
    return token


def load_instance_config(
    path: Path, environ: Mapping[str, str] | None = None, *, sections: Collection[str] | None = None
) -> InstanceConfig:
    """Parse and validate ``dagd.yaml``; a missing or empty file means all defaults.

    ``sections``: read only these top-level sections (the rest get their defaults, unchecked, and
    their ``{env: VAR}`` need not be set). The web UI reads only ``webserver``: it talks to the
    supervisor, which has validated the whole file, and needs neither the database URL nor the
    launcher's secrets (issue 18).
    """
    file = str(path)
    raw = _read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of sections at the top level, got {_describe(raw)}")
    if sections is not None:
        raw = {key: value for key, value in raw.items() if key in sections}
    try:
        raw = _substitute_env(raw, os.environ if environ is None else environ, file=file, path=())
    except RecursionError:
        # `a: &a [*a]` is valid YAML: an alias to its own ancestor makes an endless structure.
        raise ConfigError(f"{file}: nested too deeply (an alias that refers to itself?)") from None
    config = validate_section(InstanceConfig, raw, file=file, prefix="")
    for key in ("run_coordinator", "run_launcher"):
        section = getattr(config, key)
        builtin = named_builtin(key, section.module, section.class_name)
        if builtin is not None and builtin.checked_on_load:
            model = globals()[builtin.config_model]  # the models are this module's classes
            validate_section(model, section.config, file=file, prefix=f"{key}.config")
    if is_named(CELERY_LAUNCHER, config.run_launcher) and config.storage.kind == "sqlite":
        raise ConfigError(f"{file}: run_launcher: {SQLITE_REFUSED}")
    return config


SQLITE_REFUSED = "CeleryRunLauncher needs storage.postgres: workers on other hosts cannot share a SQLite file"


M = TypeVar("M", bound=BaseModel)


def validate_section(model_cls: type[M], data: Any, *, file: str, prefix: str) -> M:
    """Validate ``data`` against ``model_cls``; on failure raise a one-line :class:`ConfigError`.

    ``prefix`` is the section's key path in the file (``run_coordinator.config``), prepended to
    the path of the offending key.
    """
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        # Pydantic reports fields in declaration order, then unknown keys: deterministic.
        error = exc.errors(include_url=False)[0]
        raise ConfigError(_config_message(file, prefix, error)) from exc


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys, which PyYAML would silently let the last win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: the base class reports it with its position
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: cannot read: not valid UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"{file}: invalid YAML: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(_one_line(f"{file}: invalid YAML{where}: {problem}")) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(_one_line(f"{file}: invalid YAML: {exc}")) from exc


def _substitute_env(node: Any, environ: Mapping[str, str], *, file: str, path: tuple[Any, ...]) -> Any:
    """Replace each ``{env: VAR}`` with the variable's value (a string; pydantic converts it)."""
    if isinstance(node, dict):
        if len(node) == 1 and "env" in node:
            name = node["env"]
            where = ".".join(str(p) for p in path) or "(top level)"
            if name is None or name == "":
                raise ConfigError(f"{file}: {where}: env: needs an environment variable name")
            # A non-string `env:` is left alone: a custom class's config may have its own `env` mapping.
            if isinstance(name, str):
                if name not in environ:
                    raise ConfigError(f"{file}: {where}: environment variable {name} is not set")
                return environ[name]
        return {k: _substitute_env(v, environ, file=file, path=(*path, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_env(v, environ, file=file, path=(*path, i)) for i, v in enumerate(node)]
    return node


# ---------------------------------------------------------------------------------------------
# pydantic errors -> one line for a human

_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_BOUND_CTX = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}


def _config_message(file: str, prefix: str, error: ErrorDetails) -> str:
    parts = [str(p) for p in error["loc"] if p != "[key]"]  # "[key]" marks a bad dict key
    ctx = error.get("ctx") or {}
    problem = ctx.get("error")
    if error["type"] == "value_error" and isinstance(problem, _KeyProblem):
        parts.append(problem.key)
    path = ".".join(p for p in [prefix, *parts] if p)
    secret = bool(parts) and (is_secret_key(parts[-1]) or parts[-1] == "url")
    reason = _reason(error, hide_input=secret)
    return _one_line(f"{file}: {path}: {reason}" if path else f"{file}: {reason}")


def _reason(error: ErrorDetails, *, hide_input: bool) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = _describe(value, hide=hide_input)
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "field required"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {got}"
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {_number(ctx[_BOUND_CTX[kind]])}"
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else error["msg"].lower()
    if kind == "finite_number":
        return f"must be a finite number, got {got}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {got}"
    return str(error["msg"])


def _describe(value: Any, *, hide: bool = False) -> str:
    """A value as the user wrote it in YAML, or just its kind when it must stay secret."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if hide:
        return {str: "a string", int: "an integer", float: "a number"}.get(type(value), "a value")
    if isinstance(value, (int, float)):
        return str(value)
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> str:
    """``0`` rather than ``0.0``: bounds read as the user would write them."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _one_line(message: str) -> str:
    return re.sub(r"\s*\n\s*", " ", message).strip()
