"""Import boundaries that the architecture relies on (STYLE: daemons never import grpc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

DAEMON_SIDE = [
    "dagd.daemons.registry",
    "dagd.daemons.scheduler",
    "dagd.daemons.sensor",
    "dagd.daemons.run_queue",
    "dagd.daemons.run_monitoring",
    "dagd.codeserver.server",
    "dagd.runs.worker",
    "dagd.runs.local.forkserver",
]


@pytest.mark.parametrize("module", DAEMON_SIDE)
def test_daemon_side_modules_do_not_import_grpc(module: str) -> None:
    code = (
        f"import sys, {module}; print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", f"{module} pulls in grpc: {result.stdout.strip()}"


def _imported_dagd_modules(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('dagd')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(result.stdout.split())


def test_run_plugin_contracts_sit_below_the_instance_storage_and_daemons() -> None:
    """Issue #14: the plug-in contracts import only the run model, so the instance, coordinators,
    launchers and daemons can all import them without a cycle."""
    loaded = _imported_dagd_modules("dagd.runs.plugins")
    above = sorted(
        m
        for m in loaded
        if m.startswith(("dagd.instance", "dagd.storage", "dagd.daemons", "dagd.supervisor", "dagd.client"))
    )
    assert above == [], f"dagd.runs.plugins imports {above}"


def test_the_instance_imports_no_plugin_at_import_time() -> None:
    loaded = _imported_dagd_modules("dagd.instance.instance")
    assert not {"dagd.runs.coordinators", "dagd.runs.launch", "dagd.runs.local.launcher"} & loaded, loaded
