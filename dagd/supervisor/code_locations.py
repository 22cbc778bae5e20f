"""The supervisor's view of user code: one supervised code server per code location.

The supervisor never imports user code. It starts a code server per location (through its own
:class:`ProcessTable`, so they get the same restart policy as daemons), publishes where they
listen in ``$DAGD_HOME/run/code_locations.json`` for the scheduler and sensor daemons, answers
"which job is this?" from their snapshots, and re-reads ``workspace.yaml`` when it changes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from dagd import home as layout
from dagd.codeserver.protocol import CodeServerClient, JobInfo, LocationSnapshot
from dagd.codeserver.registry import publish, socket_for
from dagd.errors import DagdError, Unavailable
from dagd.instance.instance import Instance
from dagd.supervisor.process_table import DaemonView, ProcessTable
from dagd.workspace import CodeLocationTarget, targets_from_workspace_file

log = logging.getLogger("dagd.supervisor")

SNAPSHOT_TTL_SECONDS = 0.5
WATCH_SECONDS = 1.0


class CodeLocations:
    def __init__(
        self, instance: Instance, targets: list[CodeLocationTarget], workspace_file: str | None = None
    ) -> None:
        self.instance = instance
        self.targets = {t.name: t for t in targets}
        self.workspace_file = workspace_file
        self._workspace_mtime = self._mtime()
        self.table = ProcessTable(
            instance, list(self.targets), command=self._command, log_prefix="code_server."
        )
        self._cache: dict[str, tuple[float, LocationSnapshot]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.workspace_error: str | None = None

    def _mtime(self) -> float | None:
        try:
            return os.stat(self.workspace_file).st_mtime if self.workspace_file else None
        except OSError:
            return None

    def _command(self, name: str, incarnation: int) -> list[str]:
        return [
            sys.executable, "-m", "dagd.codeserver", "--home", str(self.instance.home),
            "--target", self.targets[name].to_json(), "--socket", socket_for(self.instance, name),
            "--incarnation", str(incarnation),
        ]  # fmt: skip

    def _publish(self) -> None:
        publish(self.instance, self.targets)

    def start(self, ready_timeout: float = 30.0) -> None:
        self._publish()
        self.table.start()
        deadline = time.monotonic() + ready_timeout
        for name in list(self.targets):
            while time.monotonic() < deadline:
                if (snap := self.snapshot(name, max_age=0)) is not None:
                    _log_load_problems(snap)
                    break
                time.sleep(0.05)
            else:
                log.error("code server for %s did not answer within %.0fs", name, ready_timeout)
        threading.Thread(target=self._watch_workspace, name="workspace-watch", daemon=True).start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self.table.stop_all(timeout)
        layout.code_locations_file(self.instance.home).unlink(missing_ok=True)

    # -- snapshots ------------------------------------------------------------------------------

    def snapshot(self, name: str, max_age: float = SNAPSHOT_TTL_SECONDS) -> LocationSnapshot | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and now - cached[0] <= max_age:
            return cached[1]
        try:
            snap = CodeServerClient(socket_for(self.instance, name)).snapshot(timeout=5)
        except DagdError:
            return cached[1] if cached else None  # the server is restarting: the last answer stands
        with self._lock:
            self._cache[name] = (now, snap)
        return snap

    def snapshots(self) -> dict[str, LocationSnapshot | None]:
        return {name: self.snapshot(name) for name in self.targets}

    def find_job(self, job_name: str) -> tuple[CodeLocationTarget, JobInfo] | None:
        unreachable = []
        for name, target in self.targets.items():
            snap = self.snapshot(name)
            if snap is None:
                unreachable.append(name)
                continue
            job = snap.job(job_name)
            if job is not None:
                return target, job
        if unreachable:
            raise Unavailable(f"code location(s) {', '.join(unreachable)} not loaded yet; try again shortly")
        return None

    def job_names(self) -> list[str]:
        return sorted(j.name for snap in self.snapshots().values() if snap for j in snap.jobs)

    def server_views(self) -> dict[str, DaemonView]:
        return {view.name: view for view in self.table.snapshot()}

    # -- workspace.yaml reload ------------------------------------------------------------------

    def _watch_workspace(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            mtime = self._mtime()
            if mtime == self._workspace_mtime or self.workspace_file is None:
                continue
            self._workspace_mtime = mtime
            try:
                targets = {t.name: t for t in targets_from_workspace_file(self.workspace_file)}
            except DagdError as exc:
                self.workspace_error = str(exc)
                log.error("workspace file changed but does not load (keeping the current one): %s", exc)
                continue
            self.workspace_error = None
            self._apply(targets)

    def _apply(self, targets: dict[str, CodeLocationTarget]) -> None:
        removed = [n for n in self.targets if n not in targets]
        changed = [n for n in targets if n in self.targets and targets[n] != self.targets[n]]
        added = [n for n in targets if n not in self.targets]
        for name in removed + changed:
            self.table.remove(name)
            with self._lock:
                self._cache.pop(name, None)
        self.targets = dict(targets)
        self._publish()
        for name in changed + added:
            self.table.add(name)
        if removed or changed or added:
            log.info("workspace reloaded: added %s, changed %s, removed %s", added, changed, removed)


def _log_load_problems(snap: LocationSnapshot) -> None:
    """Say at start, on the console, what did not load: a broken location is not a quiet one."""
    if snap.load_error:
        log.error(
            "code location %s did not load: %s (it is loaded again when its files change; "
            "`dagctl instance info` shows its state)",
            snap.name, snap.load_error,
        )  # fmt: skip
    for error in [s.error for s in snap.schedules] + [s.error for s in snap.sensors]:
        if error:
            log.error("code location %s: %s", snap.name, error)
