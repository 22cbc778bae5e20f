"""``python -m dagd.daemons NAME --home DIR [--incarnation N] [--config-stdin]``: one daemon process."""

from __future__ import annotations

import argparse

from dagd.daemons import DAEMON_NAMES
from dagd.daemons.base import main

parser = argparse.ArgumentParser(prog="python -m dagd.daemons")
parser.add_argument("name", choices=DAEMON_NAMES)
parser.add_argument("--home", required=True)
parser.add_argument("--incarnation", type=int, default=1)
parser.add_argument("--epoch", type=int, default=None, help="supervisor lease epoch (fences launches)")
parser.add_argument(
    "--config-stdin",
    action="store_true",
    help="read the supervisor's validated config from the first line of stdin instead of dagd.yaml",
)
args = parser.parse_args()
main(args.name, args.home, args.incarnation, args.epoch, config_from_stdin=args.config_stdin)
