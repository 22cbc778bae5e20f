"""``python -m dagd.codeserver``: one code-server process (see server.py)."""

from dagd.codeserver.server import main

main()
