"""The instance: a home directory, its validated config, its storage, and the pluggable classes.

``Instance.load(home)`` is the one way every process (supervisor, run workers, dagctl) turns
``$DAGD_HOME`` into something usable. Daemons use ``Instance.from_handoff`` instead: the config the
supervisor validated, without importing pydantic (:mod:`dagd.instance.handoff`). Storage is opened
lazily and per process.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pathlib
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from dagd import home as layout
from dagd.errors import ConfigError
from dagd.instance.builtins import BUILTINS
from dagd.instance.handoff import decode

if TYPE_CHECKING:
    from dagd.instance.config import InstanceConfig
    from dagd.runs.plugins import RunCoordinator, RunLauncher
    from dagd.storage.database import Database

DEFAULT_HOME = "~/.dagd"
# sun_path is 108 bytes including the NUL; stay well below it.
MAX_SOCKET_PATH = 100


def fitting_socket_path(preferred: pathlib.Path, *, key: str) -> pathlib.Path:
    """``preferred`` if it fits in sun_path, else a short path in a per-user directory (hashed ``key``)."""
    if len(str(preferred)) <= MAX_SOCKET_PATH:
        return preferred
    import hashlib  # here: dagctl imports this module for resolve_home and starts faster without them
    import tempfile

    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return pathlib.Path(tempfile.gettempdir()) / f"dagd-{os.getuid()}" / f"{digest}.sock"


def resolve_home(home: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """--home beats $DAGD_HOME beats ~/.dagd."""
    raw = home or os.environ.get("DAGD_HOME") or DEFAULT_HOME
    return pathlib.Path(raw).expanduser().resolve()


def load_class(module: str, class_name: str, *, key: str, file: pathlib.Path) -> type:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        raise ConfigError(f"{file}: {key}.module: cannot import {module!r}: {exc}") from None
    cls = getattr(mod, class_name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"{file}: {key}.class: {module} has no class {class_name!r}")
    return cls


def has_own_config_model(cls: type) -> bool:
    """True if a plug-in class declares a pydantic ``config_model`` of its own (not a built-in one).

    Built-in plug-ins name their model through :class:`BuiltinConfigModel`, which is only resolved
    (importing pydantic) when read; looking it up statically keeps daemons free of pydantic.
    """
    return isinstance(inspect.getattr_static(cls, "config_model", None), type)


def config_model(name: str) -> Any:
    """The pydantic model class ``name`` of :mod:`dagd.instance.config` (imports pydantic)."""
    from dagd.instance import config

    return getattr(config, name)


def public_config_model(module: str, name: str) -> Any:
    """For a public package's ``__getattr__``: the config model ``name`` of one of its built-ins."""
    for builtin in BUILTINS:
        if builtin.module == module and builtin.config_model == name:
            return config_model(name)
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


class BuiltinConfigModel:
    """A built-in plug-in's ``config_model``: the model :data:`dagd.instance.builtins.BUILTINS`
    gives the class it is set on, imported from :mod:`dagd.instance.config` on first access, so
    the class stays importable without pydantic. A subclass inherits its built-in parent's model."""

    def __set_name__(self, owner: type, name: str) -> None:
        models = {builtin.config_model for builtin in BUILTINS if builtin.class_name == owner.__name__}
        if len(models) != 1:
            raise TypeError(f"{owner.__qualname__} is not a built-in plug-in (dagd.instance.builtins)")
        self.name = models.pop()

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return config_model(self.name)


class Instance:
    def __init__(
        self, home: pathlib.Path, config: InstanceConfig, plugin_configs: dict[str, Any] | None = None
    ) -> None:
        self.home = home
        # The validated config: pydantic models, or in a daemon the same fields as read-only
        # ConfigView objects (see from_handoff).
        self.config = config
        # Plug-in configs the supervisor already validated with a built-in model (daemons only).
        self._plugin_configs = plugin_configs or {}
        # The supervisor lease epoch this process acts under; launches are fenced by it.
        self.fence_epoch: int | None = None
        # Daemons: storage on the driver's own connections, no SQLAlchemy (see ``storage``).
        self.direct_storage = False

    @classmethod
    def load(cls, home: str | os.PathLike[str] | None = None, *, create: bool = True) -> Instance:
        path = resolve_home(home)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise ConfigError(f"{path}: instance directory does not exist")
        from dagd.instance.config import load_instance_config

        return cls(path, load_instance_config(path / "dagd.yaml"))

    @classmethod
    def from_handoff(cls, home: str | os.PathLike[str], line: bytes) -> Instance:
        """The instance as the supervisor validated it (the line its ``handoff_line`` wrote)."""
        config, plugins = decode(line)
        instance = cls(resolve_home(home), cast("InstanceConfig", config), plugins)
        instance.direct_storage = True
        return instance

    def handoff_line(self) -> bytes | None:
        """This instance's validated config for a daemon's stdin (None: let it read the file).

        Call after the coordinator and launcher are built: their validated configs go along, so
        the daemon does not validate them again (which would import pydantic).
        """
        from dagd.instance.handoff import encode

        plugins = {
            key: plugin.config
            for key, plugin in (("run_coordinator", self.coordinator), ("run_launcher", self.launcher))
            if not has_own_config_model(type(plugin))
        }
        return encode(self.config, plugins)

    @property
    def config_file(self) -> pathlib.Path:
        return layout.config_file(self.home)

    # -- storage ---------------------------------------------------------------------------

    @property
    def storage_url(self) -> str:
        storage = self.config.storage
        if storage.postgres is not None:
            return storage.postgres.url
        from dagd.storage.sql import sqlite_url

        base = pathlib.Path(storage.sqlite.base_dir if storage.sqlite else "storage")
        base = base if base.is_absolute() else self.home / base
        try:
            return sqlite_url(base)
        except OSError as exc:
            raise ConfigError(
                f"{self.config_file}: storage.sqlite.base_dir: cannot create {base}: {exc.strerror or exc}"
            ) from None

    @cached_property
    def storage(self) -> Database:
        """The instance's storage. A daemon (an instance from the supervisor's handoff) opens
        driver connections itself, without SQLAlchemy (:class:`dagd.storage.database.DirectDatabase`);
        the supervisor created or checked the schema before starting it. Everything else gets the
        SQLAlchemy-backed :class:`dagd.storage.store.Storage`, which creates or checks the schema."""
        from dagd.storage.sql import storage_wait_bound

        # A daemon waiting on a lock (SQLite's, or PostgreSQL's, or a slow statement) gives up
        # (storage unavailable: degraded) well before the supervisor would take its silence for a
        # hang and kill it. The supervisor's own PostgreSQL statements have the same bound.
        bound = storage_wait_bound(self.config.daemons.heartbeat_timeout_seconds)
        if self.direct_storage:
            from dagd.storage.database import DirectDatabase

            return DirectDatabase(
                self.storage_url, sqlite_busy_timeout_seconds=bound, pg_statement_timeout_seconds=bound
            )
        from dagd.storage.engine import open_storage

        return open_storage(self.storage_url, pg_statement_timeout_seconds=bound)

    # -- pluggable classes -----------------------------------------------------------------

    def _plugin(self, key: str, section: Any, base: type[Any], *args: Any) -> Any:
        cls = load_class(section.module, section.class_name, key=key, file=self.config_file)
        if not issubclass(cls, base):
            raise ConfigError(
                f"{self.config_file}: {key}.class: {section.module}.{section.class_name} "
                f"is not a subclass of {base.__module__}.{base.__name__}"
            )
        return cls(self, self._plugin_config(key, section, cls), *args)

    def _plugin_config(self, key: str, section: Any, cls: type) -> Any:
        """The config a plug-in is built with: validated by its ``config_model`` if it has one."""
        if key in self._plugin_configs and not has_own_config_model(cls):
            return self._plugin_configs[key]  # validated by the supervisor with the same built-in model
        model = getattr(cls, "config_model", None)
        if model is None:
            return section.config
        from dagd.instance.config import validate_section

        return validate_section(model, section.config, file=str(self.config_file), prefix=f"{key}.config")

    def make_coordinator(self) -> RunCoordinator:
        from dagd.runs.plugins import RunCoordinator

        return self._plugin("run_coordinator", self.config.run_coordinator, RunCoordinator)

    def make_launcher(self) -> RunLauncher:
        from dagd.runs.plugins import RunLauncher

        return self._plugin("run_launcher", self.config.run_launcher, RunLauncher)

    @cached_property
    def coordinator(self) -> RunCoordinator:
        return self.make_coordinator()

    @cached_property
    def launcher(self) -> RunLauncher:
        return self.make_launcher()

    def close(self) -> None:
        """Stop what this process started through the instance (fork server, pooled connections)."""
        launcher = self.__dict__.get("launcher")
        if launcher is not None:
            launcher.close()
        storage = self.__dict__.get("storage")
        if storage is not None:
            storage.dispose()

    # -- files the supervisor publishes ----------------------------------------------------

    @property
    def supervisor_file(self) -> pathlib.Path:
        """JSON with the running supervisor's pid, start time and addresses."""
        return layout.supervisor_file(self.home)

    @property
    def socket_path(self) -> pathlib.Path:
        """The default Unix socket, inside an owner-only directory.

        Under the home when the path fits in sun_path; otherwise in a short per-user directory
        named after a hash of the home, so a long $DAGD_HOME still works.
        """
        configured = self.config.grpc.socket
        if configured:
            path = pathlib.Path(configured)
            return path if path.is_absolute() else self.home / path
        return fitting_socket_path(layout.default_socket(self.home), key=str(self.home))

    @property
    def logs_dir(self) -> pathlib.Path:
        return layout.logs_dir(self.home)
