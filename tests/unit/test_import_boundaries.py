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
