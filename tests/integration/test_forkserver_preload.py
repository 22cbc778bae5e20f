"""The fork server imports, before forking, everything a run worker needs to load its instance.

Regression: when the config models became lazy imports (so daemons stay free of pydantic), the
fork server stopped having them in memory and every run worker imported pydantic and yaml after
the fork, ~0.1-0.7 s before the job's first line. The fast launch path is only fast if this holds.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from dagd.storage import open_storage
from dagd.storage.engine import sqlite_url

# What a worker may still import after the fork: the SQLite driver, opened on first use.
ALLOWED_AFTER_FORK = {"sqlite3", "_sqlite3"}

PROBE = """
import json, sys
from dagd.runs.local.forkserver import _preload
_preload()
before = set(sys.modules)
from dagd.instance.instance import Instance
instance = Instance.load(sys.argv[1], create=False)
instance.storage.runs.get("no-such-run")
print(json.dumps(sorted({m.split(".")[0] for m in set(sys.modules) - before})))
"""


@pytest.mark.timeout(120)
def test_loading_an_instance_after_the_preload_imports_no_new_package(tmp_path: pathlib.Path) -> None:
    (tmp_path / "dagd.yaml").write_text("run_coordinator:\n  config:\n    max_concurrent_runs: 3\n")
    open_storage(sqlite_url(tmp_path / "storage")).dispose()
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, timeout=100
    )
    assert result.returncode == 0, result.stderr
    new_packages = set(json.loads(result.stdout.splitlines()[-1])) - ALLOWED_AFTER_FORK
    assert {p for p in new_packages if not p.startswith("dagd")} == set()
