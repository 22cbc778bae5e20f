"""Real processes for tests: ``dagctl`` invocations and a supervisor that is always cleaned up."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

T = TypeVar("T")
DAGCTL = [sys.executable, "-m", "dagd.client.cli"]
# How long a test waits for a started supervisor to have every daemon healthy. A ceiling, not a
# measurement (scripts/bench measures start-up): on a loaded 2-core machine, five Python
# processes importing at once can take most of a minute.
START_TIMEOUT = 60.0


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; fail saying what we waited for."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error on timeout
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def dagctl(home: pathlib.Path, *args: str, timeout: float = 30, env: dict[str, str] | None = None) -> Result:
    full_env = {**os.environ, "DAGD_HOME": str(home), **(env or {})}
    proc = subprocess.run(
        [*DAGCTL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def processes_for_home(home: pathlib.Path) -> list[psutil.Process]:
    """Any live process whose command line names this home (supervisor, daemons, workers)."""
    found = []
    needle = str(home)
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info.get("environ") or {}
            if needle in cmd or env.get("DAGD_HOME") == needle:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_no_leftovers(home: pathlib.Path, timeout: float = 10) -> None:
    try:
        wait_for(lambda: not processes_for_home(home), timeout, f"every process of {home} to exit")
    except AssertionError:
        left = processes_for_home(home)
        details = [f"{p.pid} {' '.join(p.cmdline())}" for p in left]
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        raise AssertionError(f"processes left behind: {details}") from None


class DagdProcess:
    """``dagctl dev`` (or ``daemon run``) as a child process of the test."""

    def __init__(self, home: pathlib.Path) -> None:
        self.home = home
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = home.parent / "supervisor.log"

    def write_config(self, text: str) -> None:
        (self.home / "dagd.yaml").write_text(text)

    def start(
        self,
        *args: str,
        command: Sequence[str] = ("dev",),
        wait_healthy: bool = True,
        timeout: float = START_TIMEOUT,
        env: dict[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        """``wrap``: a command prefix, e.g. to run on a test host (``helpers.netns.NetHost.command()``)."""
        env = {**os.environ, "DAGD_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **(env or {})}
        if tuple(command) == ("dev",) and not {"--web-port", "--no-web"} & set(args):
            args = (*args, "--no-web")  # the web UI has its own tests (tests/web); spare the others its start
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [*wrap, *DAGCTL, *command, *args], stdout=log, stderr=subprocess.STDOUT, env=env, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        if wait_healthy:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Until every daemon is healthy (what ``dagctl daemons status`` exits 0 on) and has sent a
        heartbeat; the status."""

        def healthy() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited with {self.proc.returncode}:\n{self.log()}")
            status = self.status()
            # A standby answers too, with the leader's daemons: healthy here means this one leads.
            leads = status.get("role") in (None, "leader")
            ready = leads and all(d["healthy"] and d["last_heartbeat_at"] for d in status["daemons"])
            return status if ready else None

        try:
            return wait_for(healthy, timeout, "all daemons healthy", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- supervisor log ---\n{self.log()}") from None

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-6000:]
        except OSError:
            return ""

    def ctl(self, *args: str, timeout: float = 30) -> Result:
        return dagctl(self.home, *args, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """What ``dagctl daemons status --json`` prints, from the same API call made in-process.

        Polled in loops: a ``dagctl`` per look is a Python start-up (most of a second of CPU on a
        busy machine) competing with the very processes the test waits for. The command line
        itself is tested where it is the subject (exit codes, output).
        """
        from dagd.client.client import Client

        with Client.for_home(self.home, token=os.environ.get("DAGD_TOKEN")) as client:
            client.timeout = 5.0
            return client.daemon_status()

    def daemons(self) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for d in self.status()["daemons"]}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
