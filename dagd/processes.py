"""What dagd's processes are called, and how to tell them apart.

Process titles (`ps`, `top`, /proc/PID/cmdline): a daemon is ``dagd: <name>``, a run worker (the
watcher and the job it forks) ``dagd run <run_id> <job>``, whichever way it was started (forked by
the fork server, whose own command line it would otherwise show, or spawned). The title replaces the
command line, so a process is found by its title or by ``DAGD_HOME`` in its environment, which its
parent sets for it. ``SPT_NOENV`` keeps setproctitle from moving the environment aside to make room
for a longer title: without it, /proc/PID/environ would read as empty and nothing could tell whose
process this is.

Process identity: a process is identified by pid *and* start time, because pids are reused
(``process_matches``, ``create_time``); ``signal_group`` and ``kill_session`` signal a child's
process group or a worker's whole session. The supervisor, the lease, the client and the local
launcher all ask here.

This module is at the bottom of the layers: it imports nothing from dagd, and psutil only when a
function needs it (``dagctl`` starts faster without it).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence

# setproctitle reads SPT_NOENV when a title is first set, whoever sets it (Celery retitles the worker
# host once setproctitle is installed): set here, on import, before anything can.
os.environ.setdefault("SPT_NOENV", "1")

DAEMON_TITLE_PREFIX = "dagd: "
RUN_TITLE_PREFIX = "dagd run "


def daemon_title(name: str) -> str:
    return f"{DAEMON_TITLE_PREFIX}{name}"


def run_title(run_id: str, job: str | None = None) -> str:
    """``dagd run <run_id> <job>``; without the job (not read yet) ``dagd run <run_id>``."""
    return f"{RUN_TITLE_PREFIX}{run_id} {job}" if job else f"{RUN_TITLE_PREFIX}{run_id}"


def set_title(title: str) -> bool:
    """Set this process's title; False if setproctitle is not installed (the title stays)."""
    os.environ.setdefault("SPT_NOENV", "1")  # read by setproctitle when it first sets a title
    try:
        import setproctitle  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    setproctitle.setproctitle(title)
    return True


def role_of(cmdline: Sequence[str], parent_cmdline: Sequence[str] = ()) -> str:
    """Which of dagd's processes a command line (or title) is: "daemon", "worker", "fork server",
    "code server" or "process". A child of the fork server that has not set its
    title yet still shows the fork server's command line: the parent tells them apart."""
    cmd = " ".join(cmdline)
    if cmd.startswith(RUN_TITLE_PREFIX) or "dagd.runs.worker" in cmd:
        return "worker"
    if "dagd.runs.local.forkserver" in cmd:
        return "worker" if "dagd.runs.local.forkserver" in " ".join(parent_cmdline) else "fork server"
    if cmd.startswith(DAEMON_TITLE_PREFIX) or "dagd.daemons" in cmd:
        return "daemon"
    if "dagd.codeserver" in cmd:
        return "code server"
    return "process"


def daemon_name(cmdline: Sequence[str]) -> str | None:
    """The daemon's name from its title (``dagd: scheduler``) or, before it set one, from its
    command line (``python -m dagd.daemons scheduler ...``); None for any other process."""
    cmd = " ".join(cmdline).strip()
    if cmd.startswith(DAEMON_TITLE_PREFIX):
        rest = cmd[len(DAEMON_TITLE_PREFIX) :].split()
        return rest[0] if rest else None
    parts = list(cmdline)
    if "dagd.daemons" in parts and parts.index("dagd.daemons") + 1 < len(parts):
        return parts[parts.index("dagd.daemons") + 1]
    return None


# -- identity and signals ------------------------------------------------------------------------

SAME_START_SECONDS = 0.05  # two start times closer than this are the same process's

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[str, float] | None:
    """(state, start time) from one read of /proc/PID/stat (Linux); None if there is no such process.

    Run monitoring checks every in-progress run each pass; one small read is ~4x cheaper than
    psutil's separate status and create_time lookups. The start time is computed as psutil does.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return fields[0].decode(), _boot_time() + int(fields[19]) / _CLOCK_TICKS


@functools.cache
def _boot_time() -> float:
    import psutil

    return psutil.boot_time()


def process_matches(pid: int | None, started_at: float | None) -> bool:
    """True if ``pid`` is alive (not a zombie) and is the process that started at ``started_at``."""
    if not pid:
        return False
    if os.path.isdir("/proc/self"):
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":
            return False
        return started_at is None or abs(stat[1] - started_at) < SAME_START_SECONDS
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or abs(proc.create_time() - started_at) < SAME_START_SECONDS
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def signal_group(pgid: int, sig: int) -> bool:
    """Signal process group ``pgid``; False if it is gone (or not ours)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def create_time(pid: int) -> float:
    """The process's start time as psutil reports it (now, if it is already gone)."""
    stat = _proc_stat(pid) if os.path.isdir("/proc/self") else None
    if stat is not None:
        return stat[1]
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return time.time()


def session_members(sid: int) -> list[int]:
    """Pids of the live processes of session ``sid`` (a worker is its session's leader, so this
    is the worker, its job and whatever the job started, even in process groups of their own)."""
    import psutil

    members = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid:
                stat = _proc_stat(pid)
                if stat is not None and stat[0] != "Z":
                    members.append(pid)
        except (ProcessLookupError, PermissionError, OSError):
            continue
    return members


def kill_session(sid: int, started_at: float | None) -> None:
    """SIGKILL every process of the session led by ``sid``, unless that pid now belongs to another
    process that started at another time and leads no session of ours (pids are reused)."""
    if started_at is not None and _proc_stat(sid) is not None and not process_matches(sid, started_at):
        return
    for pid in session_members(sid):
        try:
            os.kill(pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
