"""Clients of the control plane: the typed gRPC client and the ``dagctl`` command line."""
