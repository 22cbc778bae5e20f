"""``python -m dagd.daemons NAME --home DIR [--incarnation N]``: one daemon process."""

from __future__ import annotations

import argparse

from dagd.daemons import DAEMON_NAMES
from dagd.daemons.base import main

parser = argparse.ArgumentParser(prog="python -m dagd.daemons")
parser.add_argument("name", choices=DAEMON_NAMES)
parser.add_argument("--home", required=True)
parser.add_argument("--incarnation", type=int, default=1)
parser.add_argument("--epoch", type=int, default=None, help="supervisor lease epoch (fences launches)")
args = parser.parse_args()
main(args.name, args.home, args.incarnation, args.epoch)
