"""The web UI: an HTTP server that shows and drives a dagd instance through its gRPC API only.

Layout: ``server.py`` binds and runs uvicorn; ``app.py`` wires routes and middleware; ``pages/``
holds one module per area of the UI; ``gateway.py`` is the only way to the supervisor (the typed
gRPC client); ``security.py`` and ``middleware.py`` own CSRF, the access token and response headers;
``charts.py`` draws the SVG pictures; ``child.py`` runs the UI as a child process of ``dagctl dev``.

Importing this package (or ``child``) must stay cheap and never pull in Starlette: ``dagctl dev``
imports ``child`` inside the supervisor process.
"""
