"""Code servers: user code runs here, never in the supervisor or a daemon loop.

One code-server process per code location, started and supervised by the supervisor like a
daemon. It imports the location's definitions, reloads them when the files change (keeping the
last good ones when an edit breaks), and evaluates schedule and sensor functions on request with
a timeout, answering over a Unix socket with JSON lines (so daemons need no grpc). See
docs/architecture.md, "User code isolation".
"""
