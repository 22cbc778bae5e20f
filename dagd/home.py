"""The layout of ``$DAGD_HOME``: every file and folder dagd keeps there, named in one place.

```
$DAGD_HOME/
  dagd.yaml                      the instance's configuration (the user's)
  supervisor.json                the running supervisor: pid, start time, addresses (dagctl reads it)
  webserver.json                 the running web UI: pid, URL
  logs/<name>.log                each daemon's log (``dagctl daemons logs``); webserver.log
  logs/runs/<run_id>.log         a run worker's own output (claims, fencing, crashes)
  run/dagd.sock                  the supervisor's Unix socket (owner-only folder)
  run/daemons.json               pid and start time of each child, to kill leftovers after a crash
  run/code_locations.json        the code servers and their sockets (daemons read it)
  run/code/<location>.sock       a code server's socket
  run/code/<location>/           the location's last good source (codeserver/last_good.py)
```

Everything here is a pure function of the home's path; nothing is created. ``write_json_atomic``
is how dagd publishes a file other processes read: never seen half-written.
This module is at the bottom of the layers: it imports nothing from dagd.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

PathLike = str | os.PathLike[str]

CONFIG_FILE = "dagd.yaml"
SUPERVISOR_FILE = "supervisor.json"
WEBSERVER_FILE = "webserver.json"
DAEMONS_FILE = "daemons.json"
CODE_LOCATIONS_FILE = "code_locations.json"
SOCKET_NAME = "dagd.sock"


def config_file(home: PathLike) -> pathlib.Path:
    return pathlib.Path(home) / CONFIG_FILE


def supervisor_file(home: PathLike) -> pathlib.Path:
    return pathlib.Path(home) / SUPERVISOR_FILE


def webserver_file(home: PathLike) -> pathlib.Path:
    return pathlib.Path(home) / WEBSERVER_FILE


def logs_dir(home: PathLike) -> pathlib.Path:
    return pathlib.Path(home) / "logs"


def log_file(home: PathLike, name: str) -> pathlib.Path:
    """A daemon's (or the web UI's) log: ``logs/<name>.log``."""
    return logs_dir(home) / f"{name}.log"


def run_logs_dir(home: PathLike) -> pathlib.Path:
    return logs_dir(home) / "runs"


def run_log_file(home: PathLike, run_id: str) -> pathlib.Path:
    """A run worker's own output (not the run's log lines, which are in storage)."""
    return run_logs_dir(home) / f"{run_id}.log"


def run_dir(home: PathLike) -> pathlib.Path:
    """Runtime files of the running instance (owner-only)."""
    return pathlib.Path(home) / "run"


def default_socket(home: PathLike) -> pathlib.Path:
    return run_dir(home) / SOCKET_NAME


def daemons_file(home: PathLike) -> pathlib.Path:
    return run_dir(home) / DAEMONS_FILE


def code_locations_file(home: PathLike) -> pathlib.Path:
    return run_dir(home) / CODE_LOCATIONS_FILE


def code_dir(home: PathLike) -> pathlib.Path:
    return run_dir(home) / "code"


def write_json_atomic(path: PathLike, data: Any, *, indent: int | None = 2) -> None:
    """Write ``data`` as JSON to ``path`` so that a reader sees the old file or the new one, never a
    part (a temporary file beside it, then a rename)."""
    path = pathlib.Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    os.replace(tmp, path)
