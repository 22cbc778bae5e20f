"""A real code-server process for in-process daemon tests, always cleaned up.

The daemons find code servers through ``$DAGD_HOME/run/code_locations.json``; :func:`code_server`
starts ``python -m dagd.codeserver`` on the socket :func:`dagd.codeserver.registry.socket_for`
names, waits for its ``started`` status line, publishes it, and stops it by closing its stdin (a
code server exits on EOF there, as when its supervisor dies).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from dagd.codeserver.protocol import CodeServerClient
from dagd.codeserver.registry import publish, socket_for
from dagd.instance.instance import Instance
from dagd.workspace import target_from_file


@contextlib.contextmanager
def code_server(
    instance: Instance, defs_file: pathlib.Path, *, name: str = "defs", timeout: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """Serve ``defs_file`` as code location ``name`` for ``instance``'s daemons."""
    target = target_from_file(defs_file, name=name)
    socket_path = socket_for(instance, name)
    log = open(defs_file.with_suffix(".codeserver.log"), "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagd.codeserver", "--home", str(instance.home),
         "--target", target.to_json(), "--socket", socket_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    log.close()
    assert proc.stdout is not None and proc.stdin is not None
    try:
        first = proc.stdout.readline()  # blocks until the status pipe says "started" (or EOF)
        if not first or "started" not in json.loads(first):
            raise AssertionError(f"code server did not start: {first!r}")
        # Drain the status pipe so its progress pings never fill it and block the server.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            snapshot = CodeServerClient(socket_path).snapshot(timeout=5)
            if snapshot.generation >= 1:
                break
            if snapshot.load_error or time.monotonic() > deadline:
                raise AssertionError(f"code server did not load {defs_file}: {snapshot.load_error}")
            time.sleep(0.05)
        publish(instance, {name: target})
        yield proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def serving(home: pathlib.Path, defs_file: pathlib.Path, defs: str) -> Iterator[Instance]:
    """An instance of ``home`` whose code location is ``defs`` (written to ``defs_file``), served
    by a real code server; closed afterwards."""
    defs_file.write_text(defs)
    instance = Instance.load(home)
    try:
        with code_server(instance, defs_file):
            yield instance
    finally:
        instance.close()
