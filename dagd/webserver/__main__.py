"""``python -m dagd.webserver``: the web UI process ``dagctl dev`` starts (``dagctl webserver`` runs it in-process).

The gRPC token, if the supervisor's address needs one, comes from ``$DAGD_TOKEN`` and never from
the command line, where other users could read it.
"""

from __future__ import annotations

import argparse
import os
import sys

from dagd.errors import DagdError
from dagd.instance.instance import resolve_home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagd.webserver", description=__doc__)
    parser.add_argument("--home", default=None, help="instance directory (default $DAGD_HOME)")
    parser.add_argument("--host", default=None, help="listen address (default webserver.host)")
    parser.add_argument("--port", type=int, default=None, help="port (default webserver.port; 0 = any)")
    parser.add_argument("--address", default=os.environ.get("DAGD_ADDRESS"), help="supervisor address")
    parser.add_argument("--exit-with-parent", action="store_true", help="exit when stdin closes")
    args = parser.parse_args(argv)
    from dagd.webserver.server import configure_logging, load_settings, serve

    configure_logging()

    try:
        settings = load_settings(
            resolve_home(args.home),
            host=args.host,
            port=args.port,
            grpc_address=args.address,
            grpc_token=os.environ.get("DAGD_TOKEN") or None,
        )
        return serve(settings, exit_with_parent=args.exit_with_parent)
    except DagdError as exc:
        print(f"dagd webserver: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
