"""What a daemon process imports (issue #3: supervisor + four daemons under 200 MB of RSS).

Each daemon is started the way the supervisor starts it: the validated config on its stdin, then
one pass of its loop against real (SQLite) storage. Validation libraries (pydantic, yaml),
migrations (alembic), SQLAlchemy, gRPC and the CLI's console are the supervisor's business; any of them in a
daemon costs memory in each of the four processes.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from dagd.daemons import DAEMON_NAMES
from dagd.instance.instance import Instance

FORBIDDEN = (
    "sqlalchemy",
    "pydantic",
    "pydantic_core",
    "yaml",
    "alembic",
    "mako",
    "grpc",
    "google.protobuf",
    "rich",
    "click",
    # The Celery launcher's transport: only in processes configured with it.
    "celery",
    "kombu",
    "amqp",
    "redis",
)

# What dagd.daemons.base.main does before its loop, minus the status pipe and signal handlers.
DAEMON_PASS = """
import json, sys
from dagd.daemons.base import load_instance
from dagd.daemons.registry import make_daemon

instance = load_instance(sys.argv[2], config_from_stdin=True)
daemon = make_daemon(sys.argv[1], instance)
daemon.run_iteration()
daemon.close()
print(json.dumps(sorted(sys.modules)))
"""


def forbidden_in(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


def daemon_modules(name: str, home: pathlib.Path, config_line: bytes) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", DAEMON_PASS, name, str(home)],
        input=config_line,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    modules: list[str] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return modules


def prepared_home(tmp_path: pathlib.Path, config_yaml: str) -> tuple[pathlib.Path, bytes]:
    """A home whose storage exists (the supervisor creates it before any daemon starts)."""
    (tmp_path / "dagd.yaml").write_text(config_yaml)
    instance = Instance.load(tmp_path)
    instance.storage.dispose()
    line = instance.handoff_line()
    assert line is not None
    return tmp_path, line


@pytest.mark.parametrize("name", DAEMON_NAMES)
def test_daemon_imports_no_pydantic_alembic_or_grpc(tmp_path: pathlib.Path, name: str) -> None:
    home, line = prepared_home(
        tmp_path,
        "run_coordinator:\n  config:\n    max_concurrent_runs: 3\n"
        "    tag_concurrency_limits: [{key: team, value: {applyLimitPerUniqueValue: true}, limit: 1}]\n",
    )
    modules = daemon_modules(name, home, line)
    found = forbidden_in(modules)
    assert found == [], f"the {name} daemon imports {found}"


def test_each_daemon_imports_only_its_own_module(tmp_path: pathlib.Path) -> None:
    home, line = prepared_home(tmp_path, "")
    modules = daemon_modules("run_monitoring", home, line)
    others = [
        m for m in modules if m in ("dagd.daemons.scheduler", "dagd.daemons.sensor", "dagd.daemons.run_queue")
    ]
    assert others == []
    assert "croniter" not in modules


def test_a_plugin_with_its_own_pydantic_model_still_gets_it_validated(tmp_path: pathlib.Path) -> None:
    """pydantic is imported lazily, only for a plug-in that brings its own ``config_model``."""
    (tmp_path / "plugin_with_model.py").write_text(
        "from pydantic import BaseModel\n"
        "from dagd.run_launcher import LocalProcessRunLauncher\n"
        "class Config(BaseModel):\n"
        "    greeting: str = 'hi'\n"
        "class Launcher(LocalProcessRunLauncher):\n"
        "    config_model = Config\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        home, line = prepared_home(
            tmp_path,
            "run_launcher:\n  module: plugin_with_model\n  class: Launcher\n  config: {greeting: hello}\n",
        )
        instance = Instance.from_handoff(home, line)
        assert type(instance.launcher.config).__name__ == "Config"
        assert instance.launcher.config.greeting == "hello"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("plugin_with_model", None)


@pytest.mark.parametrize("name", ["run_queue", "run_monitoring"])
def test_daemons_with_the_celery_launcher_get_its_config_without_pydantic(
    tmp_path: pathlib.Path, pg_url: str, name: str
) -> None:
    """The launcher's section crosses the handoff as plain values; Celery itself is imported only
    to publish (nothing is published in one idle pass)."""
    home, line = prepared_home(
        tmp_path,
        f"storage:\n  postgres: {{url: '{pg_url}'}}\n"
        "run_launcher:\n  module: dagd.run_launcher\n  class: CeleryRunLauncher\n"
        "  config: {broker_url: 'amqp://guest:guest@127.0.0.1:5672//', queue: q1}\n",
    )
    modules = daemon_modules(name, home, line)
    assert "dagd.runs.celery.launcher" in modules
    found = forbidden_in(modules)
    assert found == [], f"the {name} daemon imports {found}"
