"""Processes on this host: is pid P the process that started at T, and signalling a worker's
process group or session. Only the local launcher (and the worker itself) use these: nothing
else in dagd signals a pid (the launcher is the one thing that knows where a worker lives).

A process is identified by pid *and* start time, because pids are reused.
"""

from __future__ import annotations

import functools
import os
import time

import psutil

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
    return psutil.boot_time()


def process_matches(pid: int | None, started_at: float | None) -> bool:
    """True if ``pid`` is alive (not a zombie) and is the process that started at ``started_at``."""
    if not pid:
        return False
    if os.path.isdir("/proc/self"):
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":
            return False
        return started_at is None or abs(stat[1] - started_at) < 0.05
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or abs(proc.create_time() - started_at) < 0.05
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return members


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def create_time(pid: int) -> float:
    """The process's start time as psutil reports it (now, if it is already gone)."""
    stat = _proc_stat(pid) if os.path.isdir("/proc/self") else None
    if stat is not None:
        return stat[1]
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return time.time()


def session_members(sid: int) -> list[int]:
    """Pids of the live processes of session ``sid`` (a worker is its session's leader, so this
    is the worker, its job and whatever the job started, even in process groups of their own)."""
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
