"""The code-server process: ``python -m dagd.codeserver --home H --target JSON --socket PATH``.

- Loads the code location; a failure leaves the last good definitions in place (none at first)
  and is reported as ``load_error`` in every snapshot.
- Watches the files it loaded (the target and every module imported from its working directory)
  and reloads within a second of an edit.
- Evaluates on a thread pool with a per-evaluation timeout, one at a time (``schedule``,
  ``sensor``) or many per request (``evaluate_many``: the answers stream back as each finishes, so
  one slow function holds up only its own answer). A function that overruns is abandoned
  (Python cannot kill a thread); after too many abandoned threads the server exits on purpose and
  the supervisor starts a fresh one.
- Speaks the daemon status protocol on stdout (readiness, progress pings) and exits when the
  supervisor goes away (EOF on stdin).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import queue
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any

from dagd.codeserver.evaluate import evaluate_schedule, evaluate_sensor, snapshot_of
from dagd.codeserver.last_good import save_last_good, target_root
from dagd.codeserver.protocol import MAX_LINE, Evaluation, LocationSnapshot
from dagd.definitions import Definitions
from dagd.errors import DefinitionError
from dagd.process_protocol import Progress, Started, StatusPipe, watch_parent_eof
from dagd.workspace import CodeLocationTarget, load_target

log = logging.getLogger("dagd.codeserver")

# Edits are picked up within about a second; polling mtimes is cheap and needs no inotify.
WATCH_SECONDS = 1.0
MAX_ABANDONED = 8
EVAL_THREADS = 32
GROUP_SECONDS = 0.05  # evaluate_many: answers finished this close together are sent as one group


def _user_modules(target: CodeLocationTarget) -> dict[str, str]:
    """Module name -> file, for every loaded module that lives under the location's directory."""
    root = target_root(target)
    out = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and os.path.realpath(path).startswith(root + os.sep) and "site-packages" not in path:
            out[name] = path
    return out


class Location:
    def __init__(self, target: CodeLocationTarget, home: str | None = None) -> None:
        self.target = target
        self.home = home  # where the last good copy of the source goes (None: nowhere)
        self.definitions: Definitions | None = None
        self.load_error: str | None = None
        self.generation = 0
        self._mtimes: dict[str, float] = {}
        self._lock = threading.Lock()
        self.snapshot = LocationSnapshot(target.name, 0)

    def _stat_all(self, files: list[str]) -> dict[str, float]:
        out = {}
        for path in files:
            try:
                out[path] = os.stat(path).st_mtime
            except OSError:
                out[path] = -1.0
        return out

    def load(self) -> None:
        # Forget our own modules first, so an edit to a helper module is seen too.
        for name in _user_modules(self.target):
            sys.modules.pop(name, None)
        try:
            definitions = load_target(self.target)
            error = None
        except DefinitionError as exc:
            definitions, error = None, str(exc)
        files = list(_user_modules(self.target).values())
        if self.target.python_file:
            files.append(self.target.python_file)
        with self._lock:
            if definitions is not None:
                self.definitions = definitions
                self.generation += 1
            self.load_error = error
            self._mtimes = self._stat_all(sorted(set(files)))
            self.snapshot = snapshot_of(self.target.name, self.generation, self.definitions, self.load_error)
        if error:
            log.error("load failed (keeping the last good definitions): %s", error)
            return
        log.info("loaded %s (generation %d)", self.target.describe(), self.generation)
        if self.home is not None:
            try:
                save_last_good(self.home, self.target, sorted(set(files)))
            except OSError as exc:  # runs fall back to nothing; the location itself is fine
                log.error("could not save the last good copy of the source: %s", exc)

    def changed(self) -> bool:
        with self._lock:
            files = list(self._mtimes)
            before = dict(self._mtimes)
        return self._stat_all(files) != before

    def schedule(self, name: str) -> Any:
        defs = self.definitions
        return next((s for s in defs.schedules if s.name == name), None) if defs else None

    def sensor(self, name: str) -> Any:
        defs = self.definitions
        return next((s for s in defs.sensors if s.name == name), None) if defs else None


class CodeServer:
    def __init__(self, target: CodeLocationTarget, home: str | None = None) -> None:
        self.location = Location(target, home)
        self.pool = ThreadPoolExecutor(max_workers=EVAL_THREADS, thread_name_prefix="eval")
        self.abandoned = 0
        self.pipe = StatusPipe(None)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "snapshot":
            return self.location.snapshot.to_dict()
        if op not in ("schedule", "sensor"):
            return {"fatal": f"unknown op {op!r}"}
        timeout = float(request.get("timeout") or 60)
        item = {**request, "kind": op}
        future = self._start(item)
        if isinstance(future, Evaluation):
            return _as_dict(future)
        try:
            return _as_dict(future.result(timeout=timeout))
        except FutureTimeout:
            return _as_dict(self._abandon(item, timeout))

    def handle_many(self, request: dict[str, Any], write: Callable[[dict[str, Any]], None]) -> None:
        """Evaluate every item of ``request["items"]`` at once; ``write`` the answers as they are ready.

        Answers go out in groups, ``{"answers": [{"index": i, "result": <Evaluation>}, ...]}``: what
        finished within ``GROUP_SECONDS`` of the first answer of a group travels together, so a
        thousand quick functions are a few groups (and a few transactions for the daemon), while
        one quick answer is never held for a slow one. Then ``{"done": true}``. Each item's
        timeout counts from the moment its function starts (items wait for a free evaluation
        thread first), so a deep batch does not time out its tail.
        """
        timeout = float(request.get("timeout") or 60)
        items = request.get("items") or []
        started: dict[int, float] = {}
        finished: queue.SimpleQueue[tuple[int, Evaluation]] = queue.SimpleQueue()
        pending: set[int] = set()
        answers: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            future = self._start(item, on_start=functools.partial(_stamp, started, index))
            if isinstance(future, Evaluation):
                answers.append({"index": index, "result": _as_dict(future)})
                continue
            pending.add(index)
            future.add_done_callback(functools.partial(_report, finished, index))
        group_ends: float | None = None
        while pending:
            now = time.monotonic()
            deadlines = [started[i] + timeout for i in pending if i in started]
            wait_for = max(0.0, min(deadlines) - now) if deadlines else 1.0
            if group_ends is not None:
                wait_for = min(wait_for, max(0.0, group_ends - now))
            got: list[tuple[int, Evaluation]] = []
            try:
                got.append(finished.get(timeout=wait_for))
                while True:  # and whatever else is ready, without waiting
                    got.append(finished.get_nowait())
            except queue.Empty:
                pass
            for index, evaluation in got:
                if index in pending:  # not already answered as timed out
                    pending.discard(index)
                    answers.append({"index": index, "result": _as_dict(evaluation)})
            now = time.monotonic()
            for index in [i for i in pending if i in started and now - started[i] >= timeout]:
                pending.discard(index)
                answers.append({"index": index, "result": _as_dict(self._abandon(items[index], timeout))})
            if answers and group_ends is None:
                group_ends = now + GROUP_SECONDS
            if answers and pending and group_ends is not None and now >= group_ends:
                write({"answers": answers})
                answers, group_ends = [], None
        write({"answers": answers, "done": True})

    def _start(
        self, item: dict[str, Any], on_start: Callable[[], None] | None = None
    ) -> Future[Evaluation] | Evaluation:
        """Submit one evaluation; an :class:`Evaluation` with an error if it cannot even start."""
        kind, name = item.get("kind"), str(item.get("name"))
        where = self.location.target.name
        call: functools.partial[Evaluation]
        if kind == "schedule":
            schedule = self.location.schedule(name)
            if schedule is None:
                return Evaluation(error=f"no schedule named {name!r} in {where}")
            when = datetime.fromisoformat(str(item["scheduled_time"]).replace("Z", "+00:00"))
            call = functools.partial(evaluate_schedule, schedule, when)
        elif kind == "sensor":
            sensor = self.location.sensor(name)
            if sensor is None:
                return Evaluation(error=f"no sensor named {name!r} in {where}")
            call = functools.partial(evaluate_sensor, sensor, item.get("cursor"), item.get("last_tick_at"))
        else:
            return Evaluation(error=f"unknown evaluation kind {kind!r}")

        def run() -> Evaluation:
            if on_start is not None:
                on_start()
            return call()

        return self.pool.submit(run)

    def _abandon(self, item: dict[str, Any], timeout: float) -> Evaluation:
        kind, name = item.get("kind"), item.get("name")
        self.abandoned += 1
        log.error(
            "%s %s did not finish within %.0fs (abandoned threads: %d)", kind, name, timeout, self.abandoned
        )
        if self.abandoned >= MAX_ABANDONED:
            log.error("too many hung evaluations: exiting so the supervisor starts a fresh code server")
            threading.Timer(0.5, lambda: os._exit(75)).start()
        return Evaluation(error=f"{kind} {name} timed out after {timeout:.0f}s")

    def watch(self) -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                if self.location.changed():
                    self.location.load()
                self.pipe.send(Progress(self.location.generation, load_error=self.location.load_error))
            except Exception:  # the watcher must keep watching
                log.exception("watch failed")


def _stamp(started: dict[int, float], index: int) -> None:
    started[index] = time.monotonic()


def _report(
    finished: queue.SimpleQueue[tuple[int, Evaluation]], index: int, future: Future[Evaluation]
) -> None:
    try:
        evaluation = future.result()
    except BaseException as exc:  # evaluate_* report user errors themselves; this is our own failure
        evaluation = Evaluation(error=f"evaluation failed: {type(exc).__name__}: {exc}")
    finished.put((index, evaluation))


def _as_dict(evaluation: Evaluation) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(evaluation)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_LINE)
        if not line:
            return
        try:
            request = json.loads(line)
            if isinstance(request, dict) and request.get("op") == "evaluate_many":
                self.server.code_server.handle_many(request, self._write_message)
                return
            response = self.server.code_server.handle(request)
        except Exception as exc:  # a bad request must not take the server down
            response = {"fatal": f"{type(exc).__name__}: {exc}"}
        self.wfile.write(json.dumps(response).encode() + b"\n")

    def _write_message(self, message: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(message).encode() + b"\n")
        self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # socketserver's default backlog is 5. Callers connect with a timeout (a non-blocking connect),
    # and on a Unix socket that fails at once with EAGAIN when the backlog is full: more than five
    # concurrent sensor evaluations would fail ticks with "Resource temporarily unavailable".
    request_queue_size = socket.SOMAXCONN
    code_server: CodeServer


def serve(home: str, target: CodeLocationTarget, socket_path: str) -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s code_server[{target.name}] %(levelname)s %(message)s",
    )
    pipe = StatusPipe(os.fdopen(os.dup(1), "w", buffering=1))
    os.dup2(2, 1)  # user code that prints must not corrupt the status pipe
    watch_parent_eof()
    server_state = CodeServer(target, home)
    server_state.pipe = pipe
    server_state.location.load()
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    os.makedirs(os.path.dirname(socket_path), mode=0o700, exist_ok=True)
    server = _Server(socket_path, _Handler)
    os.chmod(socket_path, 0o600)
    server.code_server = server_state
    threading.Thread(target=server_state.watch, name="watch", daemon=True).start()
    pipe.send(Started(os.getpid(), server_state.location.generation))
    server.serve_forever(poll_interval=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dagd.codeserver")
    parser.add_argument("--home", required=True)
    parser.add_argument("--target", required=True, help="the code location target as JSON")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--incarnation", type=int, default=1)
    args = parser.parse_args()
    serve(args.home, CodeLocationTarget.from_json(args.target), args.socket)
