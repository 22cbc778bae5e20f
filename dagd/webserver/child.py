"""The web UI as a child process of ``dagctl dev``: started after the supervisor serves, stopped with it.

It is exec'd (``python -m dagd.webserver``), never forked, so the supervisor process neither
imports Starlette nor forks after gRPC started. It gets its own session, like the daemons, and the
write end of its stdin stays here: if ``dagctl dev`` dies, even by SIGKILL, the UI sees EOF and
exits. Its output goes to ``$DAGD_HOME/logs/webserver.log``. A UI that fails to start (a busy
port, say) is reported and the supervisor keeps running: the UI is a convenience, not the service.

Only the standard library is imported here.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from dagd import home as layout

log = logging.getLogger("dagd.webserver")

PUBLISHED_FILE = layout.WEBSERVER_FILE  # written by dagd.webserver.server


def published_url(home: pathlib.Path, pid: int) -> str | None:
    """The URL a webserver with ``pid`` published in ``home``, if it has."""
    try:
        data = json.loads((home / PUBLISHED_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("pid") != pid:
        return None
    url = data.get("url")
    return url if isinstance(url, str) else None


class WebserverChild:
    def __init__(self, home: pathlib.Path, *, host: str | None = None, port: int | None = None) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = layout.log_file(home, "webserver")

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "dagd.webserver", "--home", str(self.home), "--exit-with-parent"]
        if self.host is not None:
            cmd += ["--host", self.host]
        if self.port is not None:
            cmd += ["--port", str(self.port)]
        return cmd

    def environment(self) -> dict[str, str]:
        # This UI belongs to this supervisor: an address (and its token) from the user's shell,
        # meant for dagctl commands, must not point it elsewhere.
        env = {k: v for k, v in os.environ.items() if k not in ("DAGD_ADDRESS", "DAGD_TOKEN")}
        return {**env, "DAGD_HOME": str(self.home)}

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.environment(),
            )
        threading.Thread(target=self._report, name="webserver-report", daemon=True).start()

    def _report(self, timeout: float = 30) -> None:
        """Log the UI's URL once it is up, or why it is not."""
        proc = self.proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = published_url(self.home, proc.pid)
            if url:
                log.info("web UI on %s", url)
                return
            if proc.poll() is not None:
                log.error("web UI did not start (exit %s): %s", proc.returncode, self._last_line())
                return
            time.sleep(0.1)
        log.warning("web UI has not reported its address after %.0fs; see %s", timeout, self.log_path)

    def _last_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return lines[-1] if lines else "(no output)"

    def stop(self, timeout: float = 5) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the UI exits on EOF as well; the signal makes it immediate
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            proc.wait(timeout=5)
