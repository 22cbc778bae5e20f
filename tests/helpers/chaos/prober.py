"""The ``daemons status`` prober: asks the supervisor for daemon status, over and over, and times it.

    python prober.py HOME OUT_FILE [INTERVAL_SECONDS]

A separate process, so the many threads of the test (clients, sampler, the database proxy's
pumps) cannot stretch what it measures. Each sample does what ``dagctl daemons status`` does
after its start-up: find the supervisor through ``$DAGD_HOME``, open a channel, one
GetDaemonStatus call (5 s deadline, as the CLI). One JSON line per sample:
``{"t": monotonic start, "latency": s, "ok": bool, "error": str, "unhealthy": [names]}``.
It exits when its stdin closes (the test ended or died).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import threading
import time


def main() -> None:
    home, out_path = pathlib.Path(sys.argv[1]), sys.argv[2]
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
    from dagd.client.client import Client

    done = threading.Event()

    def watch_stdin() -> None:
        while os.read(0, 512):
            pass
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    with open(out_path, "a", buffering=1) as out:
        while not done.is_set():
            started = time.monotonic()
            sample: dict[str, object] = {"t": started, "ok": True, "error": "", "unhealthy": []}
            try:
                with Client.for_home(home) as client:
                    client.timeout = 5.0
                    status = client.daemon_status()
                sample["unhealthy"] = [d["name"] for d in status["daemons"] if not d["healthy"]]
            except Exception as exc:
                sample["ok"] = False
                sample["error"] = f"{type(exc).__name__}: {exc}"[:300]
            sample["latency"] = time.monotonic() - started
            out.write(json.dumps(sample) + "\n")
            done.wait(max(0.0, interval - sample["latency"]))  # type: ignore[operator]


if __name__ == "__main__":
    main()
