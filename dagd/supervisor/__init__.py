"""The supervisor: process table, restart policy and the gRPC server."""
